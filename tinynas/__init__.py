"""tinynas: zero-shot search of real-time object detectors for a chip and a latency budget."""

from .arch import Arch, BlockSpec, arch_from_dicts
from .archio import format_structure_text, load_arch, parse_arch, save_arch
from .costs import Costs, arch_costs, costs_by_block
from .errors import UserError
from .ops import ConvOp, conv_op_counts, conv_ops
from . import search  # the package, callable as the search itself (search/__init__.py)
from .version import __version__

__all__ = [
    "Arch", "BlockSpec", "ConvOp", "Costs", "UserError", "arch_costs", "arch_from_dicts",
    "conv_op_counts", "conv_ops", "costs_by_block", "format_structure_text", "load_arch",
    "parse_arch", "save_arch", "search",
]
