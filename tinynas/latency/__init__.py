"""Per-chip latency: measure a space's convolutions into a table, predict networks from it.

    grid.py            every ConvOp a search space can produce
    runtimes.py        onnxruntime / OpenVINO / TensorRT sessions that time ONNX graphs
    onnx_graphs.py     each op, backbone and detector as the static-shape ONNX graph deployed
    measure.py         timing ops and whole networks on a device, as deployed
    build.py           grid + measure -> table, resumable; one shard of the grid per board
    fleet.py           splitting a grid into shards of equal measuring time; running them on Ray
    merge.py           shards measured on identical boards -> one table, checked to cover the grid once
    table.py           CSV rows + JSON sidecar: load, check, save, rehash
    interpolate.py     latency of unmeasured ops from measured neighbours
    predictor.py       LatencyPredictor: Arch -> ms per image, cached for the search loop
    detector_model.py  DetectorLatencyModel: a candidate priced as the whole detector around it
    validate.py        random networks measured end to end vs predicted; fits the overhead
    validate_models.py whole detectors exported and timed end to end vs predicted
    tinynas_import.py  TinyNAS op-profiler tables in and out
"""

from .build import build_table
from .fleet import run_shards_with_ray
from .shards import split_ops
from .grid import covered, space_grid, space_groups
from .merge import merge_shards
from .predictor import LatencyPredictor, load_predictor
from .table import LatencyTable, load_table, rehash_table, resolve_table_path, save_table
from .tinynas_import import export_tinynas, import_tinynas, parse_tinynas
from .validate import Validation, random_archs, validate_table

__all__ = [
    "LatencyPredictor", "LatencyTable", "Validation", "build_table", "covered", "export_tinynas",
    "import_tinynas", "load_predictor", "load_table", "merge_shards", "parse_tinynas", "random_archs",
    "rehash_table", "resolve_table_path", "run_shards_with_ray", "save_table", "space_grid", "space_groups",
    "split_ops", "validate_table",
]
