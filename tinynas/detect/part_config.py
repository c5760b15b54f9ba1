"""Reading a ``neck`` or ``head`` section whose keys depend on its ``type``.

A part's options are its class's own keywords (``PartRegistry.options``), so the keys a
recipe may give follow the registered classes without a second list to keep in step: a key
is accepted when every type takes it (``out_channels``; ``num_classes``, ``reg_max``,
``strides``) or when the chosen type's class does (``hidden_ratio`` only for ``giraffe``).
An option left out takes the class's default (``act`` is ``relu`` for giraffe and reppan,
``silu`` for the others). Options that are fields of the section itself (``depth``, ``act``)
are read with the section's ranges; the rest are read with the type their class's
signature declares and kept in the section's ``options`` where they differ from the class's
defaults, so two sections that build the same part are equal.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Mapping, TypeVar, get_type_hints

from ..arch import ACTIVATIONS
from ..config import Setting, Source, file_keys, read_section, read_value, unknown_key
from .registry import PartRegistry

Section = TypeVar("Section")
TYPE_KEY, OPTIONS_KEY = "type", "options"

# What a signature cannot say about an option's values. TOOD's norms are those its
# ``conv_norm_act`` builds.
OPTION_SETTINGS = {
    "act": Setting(choices=ACTIVATIONS),
    "norm": Setting(choices=("gn", "bn")),
    "prior_prob": Setting(bounds="(0, 1)", help="the initial class score"),
}
COUNT, POSITIVE = "[1, inf)", "(0, inf)"


def _option_setting(name: str, hint) -> Setting:
    if name in OPTION_SETTINGS:
        return OPTION_SETTINGS[name]
    return Setting(bounds=POSITIVE if hint is float else COUNT)


def _all_options(registry: PartRegistry) -> set[str]:
    return {key for name in registry.names() for key in registry.options(name)}


def read_part_section(cls: type[Section], registry: PartRegistry, raw: object, source: Source, where: str,
                      default_type: str) -> Section:
    """Section ``cls`` (with ``type`` and ``options`` fields) for the part type ``raw`` names."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise source.error(where, "expected a mapping")
    type_name = read_value(raw.get(TYPE_KEY) or default_type, str, Setting(choices=registry.names()),
                           source, f"{where}.{TYPE_KEY}")
    own = registry.options(type_name)
    section_fields = [key for key in file_keys(cls) if key not in (TYPE_KEY, OPTIONS_KEY)]
    shared = [key for key in section_fields if key not in _all_options(registry)]
    known = shared + list(own)
    for key in raw:
        if key != TYPE_KEY and key not in known:
            raise source.error(f"{where}.{key}", f"{unknown_key('option', key, known)} of the "
                                                 f"{type_name} {registry.kind}; {TYPE_KEY} chooses another: "
                                                 f"{', '.join(registry.names())}")
    # The section's own fields, with the type's defaults where they differ from the section's.
    defaults = {f.name: f.default for f in fields(cls)}
    values = {key: raw[key] for key in section_fields if raw.get(key) is not None}
    for key in own:
        if key in section_fields and key not in values and own[key] != defaults[key]:
            values[key] = own[key]
    hints = get_type_hints(registry.get(type_name).__init__)
    options = []
    for key, default in own.items():
        if key in section_fields:
            continue
        value = raw.get(key)
        if value is not None:
            value = read_value(value, hints[key], _option_setting(key, hints[key]), source, f"{where}.{key}")
            if key.endswith("kernel") and value % 2 == 0:
                raise source.error(f"{where}.{key}", f"a kernel must be odd to keep the map's size, got {value}")
        if value is not None and value != default:
            options.append((key, value))
    return read_section(cls, values, source, where, extra={TYPE_KEY: type_name, OPTIONS_KEY: tuple(options)})


def part_options(section, registry: PartRegistry) -> dict[str, object]:
    """The keywords to build ``section``'s part with: its fields the type takes, then ``options``."""
    own = registry.options(section.type)
    chosen = {key: getattr(section, key) for key in own if hasattr(section, key) and key != OPTIONS_KEY}
    chosen.update(dict(section.options))
    return chosen


def part_to_dict(section, registry: PartRegistry, shared: Mapping[str, object]) -> dict:
    """``shared`` fields, ``type``, then the type's options: what ``read_part_section`` reads back."""
    return {**shared, TYPE_KEY: section.type, **part_options(section, registry)}
