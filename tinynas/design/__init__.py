"""One command from a latency budget and a dataset to a deployed detector (``tinynas design``).

``DesignSpec`` (the settings) is light; the stages behind ``design`` import torch and the
latency tables, so they load on first use and ``tinynas --help`` stays fast.
"""

from .spec import DesignSpec

__all__ = ["DesignResult", "DesignSpec", "design"]


def __getattr__(name: str):
    if name in ("design", "DesignResult"):
        from . import stages

        return getattr(stages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
