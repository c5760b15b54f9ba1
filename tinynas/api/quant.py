"""``tinynas quant sensitivity``: which convolutions int8 hurts most (``deploy/sensitivity.py``)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import setting
from ..errors import UserError


@dataclass(frozen=True)
class QuantSensitivitySettings:
    """``tinynas quant sensitivity``'s settings (each a flag and a ``key=value``)."""

    weights: str = setting(help="tinynas detector checkpoint")
    calib: str = setting(help="a folder of calibration images (e.g. the training images)")
    calib_images: int = setting(32, bounds="[1, inf)", help="calibration images drawn from calib (seeded); the "
                                                           "outputs are compared on the same images")
    calib_method: Literal["minmax", "entropy", "percentile"] = setting("minmax", help="activation ranges")
    activations: Literal["uint8", "int8"] = setting("uint8", help="int8 activations' form (as export's)")
    size: int | None = setting(None, bounds="[1, inf)", unit="pixels",
                               help="square input size; default: the size the checkpoint was trained at")
    out: str = setting("", help="folder for sensitivity.csv and sensitivity.png; default: beside the checkpoint, "
                                "quant-sensitivity/")
    top: int = setting(10, bounds="[1, inf)", help="layers printed")
    val_images: str = setting("", help="with val_annotations: the AP on val of the float export and of each of "
                                       "the ap_top most sensitive layers alone in int8")
    val_annotations: str = setting("", help="the COCO file of val_images")
    ap_top: int = setting(10, bounds="[0, inf)", help="layers scored on val (the most sensitive first); 0: none")
    force: bool = setting(False, help="replace the files in out")


def quant_sensitivity(weights: str | os.PathLike, calib: str | os.PathLike, calib_images: int = 32,
                      calib_method: str = "minmax", activations: str = "uint8", size: int | None = None,
                      progress=None, val_images: str | os.PathLike = "", val_annotations: str | os.PathLike = "",
                      ap_top: int = 10):
    """Every convolution of the checkpoint's export quantized alone, most sensitive first
    (``deploy.sensitivity.LayerSensitivity`` each); with ``val_images`` and ``val_annotations``,
    the ``ap_top`` first also carry their AP on val alone in int8 and the drop from float."""
    from ..deploy.sensitivity import layer_sensitivity
    from .detect import _val_ap, calibrated_float_export

    if bool(val_images) != bool(val_annotations):
        raise UserError("--val-annotations" if val_images else "--val-images", "",
                        "give val_images and val_annotations together (the AP of each layer alone in int8)")
    with calibrated_float_export(weights, size, calib, calib_images) as (work, float_path, inputs):
        runs = itertools.count()

        def score(model) -> float:
            return _val_ap(model, val_images, val_annotations, work / f"val-{next(runs)}")

        return layer_sensitivity(float_path, inputs, calib_method, activations, progress=progress,
                                 score=score if val_images else None, score_top=ap_top)


def sensitivity_with(settings: QuantSensitivitySettings, progress=None):
    """``quant_sensitivity`` with the command's settings, its table and plot written; returns
    the rows and the two files."""
    from ..deploy.sensitivity import write_sensitivity
    from ..runfolder import check_new_file

    s = settings
    out = Path(s.out) if s.out else Path(s.weights).parent / "quant-sensitivity"
    for name in ("sensitivity.csv", "sensitivity.png"):
        check_new_file(out / name, "--out", s.force)
    if out.exists() and not out.is_dir():
        raise UserError(str(out), "", "--out: expected a folder")
    rows = quant_sensitivity(s.weights, s.calib, s.calib_images, s.calib_method, s.activations, s.size, progress,
                             s.val_images, s.val_annotations, s.ap_top)
    out.mkdir(parents=True, exist_ok=True)
    return rows, write_sensitivity(rows, out)
