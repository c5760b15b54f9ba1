"""Search spaces: an initial architecture, per-block limits and mutation steps, from YAML.

A space fixes the block classes and strides of its initial architecture; mutation changes
out channels, bottlenecks, depths and kernels inside per-block limits and re-chains the
``in`` channels, so every neighbour is a valid architecture of the same space.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .arch import MAX_CHANNELS, MAX_DEPTH, MAX_KERNEL, Arch, BlockSpec, arch_from_dicts
from .config import read_section, setting, unknown_key
from .errors import UserError
from .fileio import read_yaml
from .runfolder import plain_name

DEFAULT_MULTIPLIERS = (2.0, 1.5, 1.25, 0.8, 0.6, 0.5)
DEFAULT_DEPTH_STEPS = (-2, -1, 1, 2)
LIMIT_KEYS = ("out", "L", "btn_ratio", "kernels")


@dataclass(frozen=True)
class BlockLimits:
    """What one block position may become."""

    out: tuple[int, int]
    depth: tuple[int, int]
    btn_ratio: tuple[float, float]
    kernels: tuple[int, ...]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    initial: Arch
    limits: tuple[BlockLimits, ...]
    resolution: int = 320
    channel_divisor: int = 8
    channel_multipliers: tuple[float, ...] = DEFAULT_MULTIPLIERS
    depth_steps: tuple[int, ...] = DEFAULT_DEPTH_STEPS
    nondecreasing_channels: bool = True
    description: str = ""
    source: str = field(default="", compare=False)

    @property
    def in_channels(self) -> int:
        return self.initial.in_channels

    # ----------------------------------------------------------------- membership
    def problems(self, arch: Arch) -> Iterator[tuple[str, str]]:
        """Yield (field, reason) for every way ``arch`` lies outside this space."""
        if len(arch.blocks) != len(self.initial.blocks):
            yield "blocks", f"expected {len(self.initial.blocks)} blocks, got {len(arch.blocks)}"
            return
        if arch.in_channels != self.in_channels:
            yield "blocks[0].in", f"the space's input has {self.in_channels} channels, got {arch.in_channels}"
        for i, (block, ref, lim) in enumerate(zip(arch.blocks, self.initial.blocks, self.limits)):
            where = f"blocks[{i}]"
            if block.cls != ref.cls:
                yield f"{where}.class", f"the space fixes {ref.cls} here, got {block.cls}"
            if block.stride != ref.stride:
                yield f"{where}.s", f"the space fixes stride {ref.stride} here, got {block.stride}"
            if not lim.out[0] <= block.out_channels <= lim.out[1]:
                yield f"{where}.out", f"{block.out_channels} outside [{lim.out[0]}, {lim.out[1]}]"
            if block.kernel not in lim.kernels:
                yield f"{where}.k", f"kernel {block.kernel} not among {list(lim.kernels)}"
            if block.kind.has_bottleneck:
                if not lim.depth[0] <= block.depth <= lim.depth[1]:
                    yield f"{where}.L", f"depth {block.depth} outside [{lim.depth[0]}, {lim.depth[1]}]"
                lo, hi = _btn_bounds(block.out_channels, lim.btn_ratio)
                if not lo <= block.bottleneck <= hi:
                    yield f"{where}.btn", (f"bottleneck {block.bottleneck} outside [{lo}, {hi}] "
                                           f"(btn/out in [{lim.btn_ratio[0]}, {lim.btn_ratio[1]}])")
            if self.nondecreasing_channels and block.out_channels < block.in_channels:
                yield f"{where}.out", (f"the space keeps channels non-decreasing: out "
                                       f"{block.out_channels} < in {block.in_channels}")

    def check(self, arch: Arch, source: str = "<arch>") -> Arch:
        """Return ``arch`` or raise a ``UserError`` for its first problem in this space."""
        for field_name, reason in self.problems(arch):
            raise UserError(source, field_name, reason)
        return arch

    def contains(self, arch: Arch) -> bool:
        return next(self.problems(arch), None) is None

    # ----------------------------------------------------------------- mutation
    def mutate(self, arch: Arch, rng: random.Random | int, blocks: int = 1,
               max_tries: int = 100) -> Arch:
        """A valid neighbour of ``arch`` that differs from it in up to ``blocks`` blocks."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        n = len(arch.blocks)
        count = max(1, min(blocks, n))
        for _ in range(max_tries):
            specs = list(arch.blocks)
            for index in rng.sample(range(n), count):
                self._mutate_block(specs, index, rng)
            if tuple(specs) == arch.blocks:
                continue
            child = Arch(tuple(specs))
            if self.contains(child):
                return child
        raise UserError(self.source, "limits", f"no valid neighbour found in {max_tries} tries: "
                        "the space leaves nothing to mutate")

    def random_arch(self, rng: random.Random | int, steps: int = 30) -> Arch:
        """A random member: ``steps`` mutations away from the initial architecture."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        arch = self.initial
        for _ in range(steps):
            arch = self.mutate(arch, rng)
        return arch

    def _methods(self, spec: BlockSpec, lim: BlockLimits) -> list[str]:
        methods = ["out"]
        if spec.kind.has_bottleneck:
            methods.append("btn")
            if lim.depth[0] < lim.depth[1]:
                methods.append("L")
        if len(lim.kernels) > 1:
            methods.append("k")
        return methods

    def _mutate_block(self, specs: list[BlockSpec], i: int, rng: random.Random) -> None:
        spec, lim = specs[i], self.limits[i]
        method = rng.choice(self._methods(spec, lim))
        if method == "out":
            lo, hi = lim.out
            if self.nondecreasing_channels:
                lo = max(lo, spec.in_channels)
                if i + 1 < len(specs):
                    hi = min(hi, specs[i + 1].out_channels)
            if lo > hi:
                return
            out = _clamp(self._round(spec.out_channels * rng.choice(self.channel_multipliers)), lo, hi)
            changes = {"out_channels": out}
            if spec.kind.has_bottleneck:
                changes["bottleneck"] = self._fit_btn(spec.bottleneck, out, lim)
            specs[i] = spec.replace(**changes)
            if i + 1 < len(specs):
                specs[i + 1] = specs[i + 1].replace(in_channels=out)
        elif method == "btn":
            btn = self._round(spec.bottleneck * rng.choice(self.channel_multipliers))
            specs[i] = spec.replace(bottleneck=self._fit_btn(btn, spec.out_channels, lim))
        elif method == "L":
            depth = _clamp(spec.depth + rng.choice(self.depth_steps), *lim.depth)
            specs[i] = spec.replace(depth=depth)
        else:
            choices = [k for k in lim.kernels if k != spec.kernel]
            specs[i] = spec.replace(kernel=rng.choice(choices))

    def _round(self, value: float) -> int:
        d = self.channel_divisor
        return max(d, int(round(value / d)) * d)

    def _fit_btn(self, btn: int, out: int, lim: BlockLimits) -> int:
        lo, hi = _btn_bounds(out, lim.btn_ratio)
        # Prefer multiples of the divisor: hardware-friendly, and a finite latency grid.
        d = self.channel_divisor
        lo_d, hi_d = -(-lo // d) * d, hi // d * d
        if lo_d <= hi_d:
            lo, hi = lo_d, hi_d
        return _clamp(btn, lo, hi)


def _clamp(value: int, lo: int, hi: int) -> int:
    return lo if value < lo else hi if value > hi else value


def _btn_bounds(out: int, ratio: tuple[float, float]) -> tuple[int, int]:
    # A small epsilon keeps exact ratios (out * 0.1 == 6.4000000001) on the inclusive side.
    return max(1, math.ceil(out * ratio[0] - 1e-9)), max(1, math.floor(out * ratio[1] + 1e-9))


# --------------------------------------------------------------------- loading
def _pair(value: object, source: str, where: str, kind: type) -> tuple:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise UserError(source, where, f"expected [min, max], got {value!r}")
    lo, hi = value
    if kind is int and not (float(lo).is_integer() and float(hi).is_integer()):
        raise UserError(source, where, f"expected integers, got {value!r}")
    if lo <= 0 or lo > hi:
        raise UserError(source, where, f"need 0 < min <= max, got {value!r}")
    return kind(lo), kind(hi)


def _limits(raw: object, defaults: dict, source: str, where: str) -> BlockLimits:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(source, where, f"expected a mapping of limits, got {raw!r}")
    for key in raw:
        if key not in LIMIT_KEYS:
            raise UserError(source, f"{where}.{key}", unknown_key("limit", key, LIMIT_KEYS))
    merged = {**defaults, **raw}
    for key in ("out", "L", "btn_ratio", "kernels"):
        if key not in merged:
            raise UserError(source, f"{where}.{key}", "missing (set it here or under defaults)")
    kernels = merged["kernels"]
    if (not isinstance(kernels, list) or not kernels
            or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 and k % 2 for k in kernels)):
        raise UserError(source, f"{where}.kernels", f"expected a list of odd positive kernels, got {kernels!r}")
    limits = BlockLimits(
        out=_pair(merged["out"], source, f"{where}.out", int),
        depth=_pair(merged["L"], source, f"{where}.L", int),
        btn_ratio=_pair(merged["btn_ratio"], source, f"{where}.btn_ratio", float),
        kernels=tuple(sorted(set(kernels))),
    )
    # A space must not breed architectures that architecture files themselves refuse.
    for key, high, most in (("out", limits.out[1], MAX_CHANNELS), ("L", limits.depth[1], MAX_DEPTH),
                            ("kernels", max(limits.kernels), MAX_KERNEL)):
        if high > most:
            raise UserError(source, f"{where}.{key}", f"at most {most}, got {high}")
    return limits


@dataclass(frozen=True)
class MutationSettings:
    """How a mutation moves: the ``mutation`` section of a space file."""

    channel_multipliers: tuple[float, ...] = setting(DEFAULT_MULTIPLIERS, bounds="(0, inf)",
                                                     help="factors a mutation scales channels by")
    depth_steps: tuple[int, ...] = setting(DEFAULT_DEPTH_STEPS, help="steps a mutation adds to a depth")
    nondecreasing_channels: bool = setting(True, help="no block narrower than the one before it")


@dataclass(frozen=True)
class SpaceSettings:
    """The scalar fields of a space file (``initial``, ``defaults`` and ``blocks`` have their own readers)."""

    name: str = setting(help="the space's name; also names its run folders")
    description: str = ""
    resolution: int = setting(320, bounds="[1, inf)", unit="pixels", help="the input size searched for")
    in_channels: int | None = setting(None, bounds="[1, inf)", help="default: what the initial stem reads")
    channel_divisor: int = setting(8, bounds="[1, inf)", help="channels are rounded to multiples of it")
    mutation: MutationSettings = setting(factory=MutationSettings)


BLOCK_KEYS = ("initial", "defaults", "blocks")


def space_from_dict(doc: object, source: str = "<space>") -> SearchSpace:
    """Build and validate a ``SearchSpace`` from its YAML document."""
    if not isinstance(doc, dict):
        raise UserError(source, "", "a search space must be a YAML mapping")
    settings = read_section(SpaceSettings, doc, source, read_elsewhere=BLOCK_KEYS)
    if doc.get("initial") is None:
        raise UserError(source, "initial", "missing")
    initial = arch_from_dicts(doc["initial"], source)
    n = len(initial.blocks)
    if settings.in_channels not in (None, initial.in_channels):
        raise UserError(source, "in_channels",
                        f"{settings.in_channels} differs from initial[0].in = {initial.in_channels}")

    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise UserError(source, "defaults", "expected a mapping of limits")
    for key in defaults:
        if key not in LIMIT_KEYS:
            raise UserError(source, f"defaults.{key}", unknown_key("limit", key, LIMIT_KEYS))
    raw_blocks = doc.get("blocks") or [None] * n
    if not isinstance(raw_blocks, list) or len(raw_blocks) != n:
        raise UserError(source, "blocks", f"expected {n} entries of limits, one per initial block")
    limits = tuple(_limits(raw, defaults, source, f"blocks[{i}]") for i, raw in enumerate(raw_blocks))

    mutation = settings.mutation
    space = SearchSpace(
        name=plain_name(settings.name, source, "name"), initial=initial, limits=limits,
        resolution=settings.resolution, channel_divisor=settings.channel_divisor,
        channel_multipliers=mutation.channel_multipliers, depth_steps=mutation.depth_steps,
        nondecreasing_channels=mutation.nondecreasing_channels, description=settings.description,
        source=source,
    )
    for field_name, reason in space.problems(initial):
        raise UserError(source, f"initial: {field_name}", f"the initial architecture breaks the space's limits: {reason}")
    return space


def load_space(path: str | Path) -> SearchSpace:
    """Read a search-space YAML file."""
    return space_from_dict(read_yaml(path), str(path))
