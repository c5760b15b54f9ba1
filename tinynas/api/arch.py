"""Commands on one architecture: ``info``, ``score``, ``convert``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Sequence

from ..arch import Arch
from ..config import setting
from ..archio import load_arch, save_arch
from ..costs import arch_costs, costs_by_block
from ..errors import UserError
from ..resources import resolve_arch_path
from ..runfolder import check_new_file
from ..scores import DEFAULT_STAGE_WEIGHTS, SCORERS, create_scorer, parse_weights
from ..scores.madnas import MadnasScore, block_log_std

SCORER_NAMES = tuple(sorted(SCORERS))


def parse_stage_weights(text: str | Sequence[float], flag: str = "--stage-weights") -> tuple[float, ...]:
    """``"0,0,1,1,6"`` as stage weights; a one-line error naming ``flag`` otherwise."""
    return parse_weights(text, flag, "stage_weights")


def load_any_arch(text: str) -> Arch:
    """An architecture from a file path or a shipped name such as ``damoyolo-s``."""
    return load_arch(resolve_arch_path(text))


def score_arch(arch: Arch, method: str = "madnas", source: str = "", **options) -> tuple[float, list[float]]:
    """The weighted score and the unweighted stage scores of ``arch``.

    ``source`` names the file ``arch`` came from in errors that have no file of their own
    (a forward pass too large for this machine, a wrong number of stage weights).
    """
    try:
        scorer = create_scorer(method, **options)
        stages = scorer.stage_scores(arch)
        return scorer.weighted(arch, stages), stages
    except UserError as err:
        if source and not err.source:
            raise UserError(source, err.field, err.reason) from None
        raise


def arch_report(arch: Arch, resolution: int, weights: Sequence[float] = DEFAULT_STAGE_WEIGHTS) -> dict:
    """Everything ``tinynas info`` prints, as plain data."""
    per_block = costs_by_block(arch, resolution)
    ends = arch.stage_ends()
    scorer = MadnasScore(weights)
    stages = scorer.stage_scores(arch)
    rows = []
    for i, (spec, cost) in enumerate(zip(arch.blocks, per_block)):
        rows.append({
            "index": i, "class": spec.cls, "in": spec.in_channels, "out": spec.out_channels,
            "s": spec.stride, "k": spec.kernel, "L": spec.depth if spec.kind.has_bottleneck else None,
            "btn": spec.bottleneck, "size": cost.out_size, "macs": cost.macs, "params": cost.params,
            "params_fused": cost.params_fused, "layers": cost.layers,
            "stage": ends.index(i) if i in ends else None, "log_std": block_log_std(spec),
        })
    total = arch_costs(arch, resolution)
    return {
        "blocks": rows,
        "total": {"macs": total.macs, "flops": total.flops, "params": total.params,
                  "params_fused": total.params_fused, "layers": total.layers, "size": total.out_size},
        "stage_scores": stages,
        "score": scorer.weighted(arch, stages),
    }


def convert_arch(arch: str, out: str | os.PathLike, family: str | None = None, force: bool = False) -> Arch:
    """``tinynas convert``: the architecture ``arch`` (file or shipped name) written to ``out`` in
    the format its suffix names; an existing ``out`` only with ``force``."""
    check_new_file(out, "OUT", force)
    loaded = load_any_arch(arch)
    save_arch(loaded, out, family=family)
    return loaded


@dataclass(frozen=True)
class InfoSettings:
    """``tinynas info``'s settings besides the ARCH it describes."""

    resolution: int = setting(320, bounds="[1, inf)", unit="pixels", help="input size")
    stage_weights: tuple[float, ...] = setting(DEFAULT_STAGE_WEIGHTS, help="stage weights of the MAE score")


@dataclass(frozen=True)
class ScoreSettings:
    """``tinynas score``'s settings besides the ARCH it scores."""

    method: str = setting("madnas", choices=SCORER_NAMES,
                          help="madnas: closed form; entropy: forward pass with Gaussian weights")
    resolution: int = setting(320, bounds="[1, inf)", unit="pixels", help="input size of entropy")
    stage_weights: tuple[float, ...] = setting(DEFAULT_STAGE_WEIGHTS, help="stage weights")
    seed: int = setting(0, help="random seed of entropy")
    batch_size: int = setting(8, bounds="[1, inf)", help="images per draw of entropy")
    repeats: int = setting(1, bounds="[1, inf)", help="draws averaged by entropy")
    stages: bool = setting(False, help="also print each stage's unweighted score")


def score_with(arch: str, settings: ScoreSettings) -> tuple[float, list[float]]:
    """``score_arch`` of the architecture ``arch`` (file or shipped name) with the command's settings."""
    s = settings
    options = {"weights": s.stage_weights}
    if s.method == "entropy":
        options.update(resolution=s.resolution, batch=s.batch_size, repeats=s.repeats, seed=s.seed)
    return score_arch(load_any_arch(arch), s.method, source=arch, **options)


@dataclass(frozen=True)
class ConvertSettings:
    """``tinynas convert``'s settings besides ARCH and OUT."""

    family: Literal["damoyolo", "tinynas"] | None = setting(
        None, help="class names to write; default: damoyolo for .txt, tinynas otherwise")
    force: bool = setting(False, help="replace OUT if it exists")
