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
