"""One command from a latency budget and a dataset to a deployed detector (``tinynas design``)."""

from .spec import DesignSpec
from .stages import DesignResult, design

__all__ = ["DesignResult", "DesignSpec", "design"]
