"""``tinynas cfg COMMAND ...``: the settings a command would run with, and who set each one.

It takes the very arguments the command takes (``tinynas cfg search recipe.yaml seed=3
--population 64``), reads them with that command's own parser and recipe reader, and prints
every setting with its value and its origin: the command line (which flag, or ``key=value``),
the recipe file, the model recipe a train recipe names, or the default. Nothing is run and
nothing is written; a bad argument or file fails as the command itself would.
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Mapping

from ..api import DEFAULT_ORIGIN as DEFAULT
from ..config import COMMAND_LINE, Overrides
from ..errors import UserError
from .format import table



def register(sub) -> None:
    p = sub.add_parser("cfg", help="print a command's resolved settings and where each one came from",
                       description="Read COMMAND's arguments as COMMAND would (recipe, key=value settings, "
                                   "flags) and print every setting, its value and its origin: the command line, "
                                   "the recipe file, or the default. Runs nothing.")
    p.add_argument("target", metavar="COMMAND", help="the command, e.g. search, train, eval, design, predict")
    p.add_argument("arguments", nargs=argparse.REMAINDER, help="its arguments, as you would give them")
    p.set_defaults(func=partial(run_cfg, sub.choices))


def run_cfg(commands: Mapping[str, argparse.ArgumentParser], args) -> int:
    if args.target not in commands or args.target == "cfg":
        known = ", ".join(name for name in commands if name != "cfg")
        raise UserError("cfg", "COMMAND", f"unknown command {args.target!r} (known: {known})")
    rows = settings_rows(commands[args.target], args.target, list(args.arguments))
    print(table(["setting", "value", "from"], [[key, _shown(value), origin] for key, value, origin in rows]))
    return 0


def settings_rows(parser: argparse.ArgumentParser, command: str, argv: list[str]) -> list[tuple[str, object, str]]:
    """(setting, value, origin) for every setting of ``command`` run with ``argv``."""
    parsed, given = _parse(parser, command, argv)
    rows = []
    if command == "search":
        rows += _search_rows(parsed)
    elif command in ("train", "eval") and getattr(parsed, "recipe", None):
        rows += _train_rows(parsed)
    elif command == "design" or settings_of(command, parsed) is not None:
        rows += _flag_settings_rows(command, parsed)
    settings_keys = {key for key, _, _ in rows}
    for dest, flag in _flags(parser, parsed):
        if dest in settings_keys or dest in ("func", "overrides", "command"):
            continue
        rows.append((flag, getattr(parsed, dest), f"{COMMAND_LINE} ({flag})" if dest in given else DEFAULT))
    return rows


def _parse(parser: argparse.ArgumentParser, command: str, argv: list[str]) -> tuple[argparse.Namespace, set[str]]:
    """The namespace ``parser`` gives ``argv``, and the dests the command line itself set."""
    parsed, extra = parser.parse_known_args(argv)
    if extra and not (hasattr(parsed, "overrides") and all("=" in e and not e.startswith("-") for e in extra)):
        raise UserError(command, " ".join(extra), "not an argument of this command")
    if extra:
        parsed.overrides = list(parsed.overrides or []) + extra
    # Parsed again with every default suppressed: what remains is what argv said.
    actions = _chosen_actions(parser, parsed)
    saved = [(a, a.default) for a in actions]
    try:
        for action in actions:
            action.default = argparse.SUPPRESS
        given = set(vars(parser.parse_known_args(argv)[0]))
    finally:
        for action, default in saved:
            action.default = default
    return parsed, given


def _chosen_actions(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> list[argparse.Action]:
    """The arguments of the (sub)command ``parsed`` came from: ``latency calibrate``'s, not build's."""
    actions = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            actions += _chosen_actions(action.choices[getattr(parsed, action.dest)], parsed)
        elif not isinstance(action, argparse._HelpAction):
            actions.append(action)
    return actions


def _flags(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> list[tuple[str, str]]:
    """(dest, spelling) of each argument of the (sub)command that ``parsed`` came from, once each."""
    seen, out = set(), []
    for action in _chosen_actions(parser, parsed):
        if action.dest in seen or action.help == argparse.SUPPRESS:
            continue
        seen.add(action.dest)
        out.append((action.dest, action.option_strings[0] if action.option_strings else action.dest.upper()))
    return out


# ---------------------------------------------------------------------------- recipe commands
def _search_rows(parsed) -> list[tuple[str, object, str]]:
    from ..api import search_settings
    from .search_commands import command_line_settings

    path, overrides = command_line_settings(parsed)
    return search_settings(path, overrides, parsed.budget or [])


def settings_of(command: str, parsed) -> tuple[type, tuple] | None:
    """The settings dataclass and flags of a command whose flags are generated from one."""
    from .. import api
    from . import (arch_commands, calibrate_commands, data_commands, detect_commands, latency_commands, quant_commands,
                   time_commands)

    table = {("predict", None): (api.PredictSettings, detect_commands.PREDICT_FLAGS),
             ("info", None): (api.InfoSettings, arch_commands.INFO_FLAGS),
             ("score", None): (api.ScoreSettings, arch_commands.SCORE_FLAGS),
             ("convert", None): (api.ConvertSettings, arch_commands.CONVERT_FLAGS),
             ("export", None): (api.ExportSettings, detect_commands.EXPORT_FLAGS),
             ("latency", "build"): (api.LatencyBuildSettings, latency_commands.BUILD_FLAGS),
             ("latency", "predict"): (api.LatencyPredictSettings, latency_commands.PREDICT_FLAGS),
             ("latency", "validate"): (api.LatencyValidateSettings, latency_commands.VALIDATE_FLAGS),
             ("latency", "time"): (api.LatencyTimeSettings, time_commands.FLAGS),
             ("latency", "calibrate"): (api.LatencyCalibrateSettings, calibrate_commands.FLAGS),
             ("latency", "merge"): (api.LatencyMergeSettings, latency_commands.MERGE_FLAGS),
             ("latency", "import-tinynas"): (api.LatencyImportSettings, latency_commands.IMPORT_FLAGS),
             ("latency", "rehash"): (api.LatencyRehashSettings, latency_commands.REHASH_FLAGS),
             ("data", "check"): (api.DataCheckSettings, data_commands.CHECK_FLAGS),
             ("data", "convert"): (api.DataConvertSettings, data_commands.CONVERT_FLAGS),
             ("data", "synth"): (api.DataSynthSettings, data_commands.SYNTH_FLAGS),
             ("model", "info"): (api.ModelInfoSettings, detect_commands.INFO_FLAGS),
             ("quant", "sensitivity"): (api.QuantSensitivitySettings, quant_commands.SENSITIVITY_FLAGS)}
    action = next((getattr(parsed, name) for name in ("latency_command", "data_command", "model_command", "quant_command")
                   if getattr(parsed, name, None)), None)
    return table.get((command, action))


def _flag_settings_rows(command: str, parsed) -> list[tuple[str, object, str]]:
    """The rows of a command whose settings are a dataclass with generated flags."""
    from ..api import design_settings, settings_rows
    from . import design_commands
    from .settings_flags import given_settings, read_settings

    if command == "design":
        return design_settings(parsed.data, given_settings(parsed, design_commands.FLAGS))
    cls, flags = settings_of(command, parsed)
    settings = given_settings(parsed, flags)
    return settings_rows(read_settings(cls, settings, flags), settings)


def _train_rows(parsed) -> list[tuple[str, object, str]]:
    from ..api import train_settings

    return train_settings(parsed.recipe, Overrides.parse(parsed.overrides or []))


def _shown(value: object) -> str:
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, Mapping) for v in value):
            return f"[{len(value)} entries]"
        return ",".join(_shown(v) for v in value) if value else "-"
    if value is None or value == "":
        return "-"
    if hasattr(value, "text"):  # a budget
        return value.text
    return f"{value:g}" if isinstance(value, float) else str(value)
