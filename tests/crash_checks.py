"""What the crash tests compare: a killed-and-finished job's files against an uninterrupted run's."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def metrics(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def same_values(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            same_values(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_values(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def same_checkpoint(got: Path, want: Path) -> None:
    same_values(torch.load(got, weights_only=True), torch.load(want, weights_only=True), got.name)


def valid_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes().startswith(PNG_SIGNATURE), path
    with Image.open(path) as image:
        image.verify()


def no_temporaries(folder: Path) -> None:
    left = [p for p in folder.rglob(".*.tmp*")]
    assert left == [], f"temporaries of killed writes left: {left}"
