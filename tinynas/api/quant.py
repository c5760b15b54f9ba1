"""``tinynas quant sensitivity``: which convolutions int8 hurts most (``deploy/sensitivity.py``)."""

from __future__ import annotations

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
    force: bool = setting(False, help="replace the files in out")


def quant_sensitivity(weights: str | os.PathLike, calib: str | os.PathLike, calib_images: int = 32,
                      calib_method: str = "minmax", activations: str = "uint8", size: int | None = None,
                      progress=None):
    """Every convolution of the checkpoint's export quantized alone, most sensitive first
    (``deploy.sensitivity.LayerSensitivity`` each)."""
    from ..deploy.sensitivity import layer_sensitivity
    from .detect import calibrated_float_export

    with calibrated_float_export(weights, size, calib, calib_images) as (_, float_path, inputs):
        return layer_sensitivity(float_path, inputs, calib_method, activations, progress=progress)


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
    rows = quant_sensitivity(s.weights, s.calib, s.calib_images, s.calib_method, s.activations, s.size, progress)
    out.mkdir(parents=True, exist_ok=True)
    return rows, write_sensitivity(rows, out)
