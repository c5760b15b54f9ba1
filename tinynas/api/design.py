"""``tinynas design``: from a latency budget and a dataset to a deployed detector.

``tinynas.design`` pulls in the latency tables, search and training, so it is imported when a
design runs (``DesignSpec`` and ``DesignResult`` are looked up on first use, see ``__init__``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..design import DesignResult, DesignSpec


def design(spec: DesignSpec, out: str | os.PathLike, progress: bool = True, log: Callable[[str], None] = print,
           force: bool = False, calibrate: bool = True) -> DesignResult:
    """Run (or finish) the design ``spec`` in the folder ``out`` (``tinynas.design.design``)."""
    from ..design import design as run

    return run(spec, out, progress=progress, log=log, force=force, calibrate=calibrate)


def design_spec(data: str | os.PathLike, settings=None) -> DesignSpec:
    """A ``DesignSpec`` for the dataset file ``data`` from ``key=value`` settings (``Overrides``,
    e.g. ``Overrides.parse(["budget=latency=22ms", "epochs=30"])``): each value read and checked
    as the field's type, an error naming the flag or key that set it."""
    from ..config import COMMAND_LINE, Overrides, Source, read_section
    from ..design import DesignSpec

    settings = settings or Overrides()
    return read_section(DesignSpec, settings.apply({"data": str(data)}), Source(COMMAND_LINE, settings))
