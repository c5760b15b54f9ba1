"""The front door: one Python function per ``tinynas`` command, and the CLI calls only these.

| command | function |
|---|---|
| ``info``, ``score``, ``convert`` | ``arch_report``, ``score_arch``, ``convert_arch`` (``load_any_arch``) |
| ``model info`` | ``model_info`` (``ModelInfoSettings``) |
| ``search`` | ``run_search``, ``resume_search`` |
| ``train``, ``eval`` | ``train_detector``, ``resume_training``, ``evaluate_checkpoint`` |
| ``distill-chain`` | ``run_distill_chain`` |
| ``predict``, ``export`` (``--int8``) | ``predict_images``, ``export_checkpoint`` (``export_int8``; ``predict_with``, ``export_with`` take the settings) |
| ``design`` | ``design`` with a ``DesignSpec`` |
| ``data check``, ``data convert``, ``data synth`` | ``check_dataset``, ``convert_dataset``, ``make_synthetic_dataset`` (``convert_with``, ``synth_with``) |
| ``latency build`` (``--dry-run``), ``merge`` | ``build_latency_table`` (``plan_latency_build``), ``merge_latency_shards`` (``build_with``, ``merge_with``) |
| ``latency predict`` | ``predict_backbone_latency``, ``predict_detector_latency`` |
| ``latency validate`` | ``validate_latency_table``, ``validate_detector_latency`` |
| ``latency import-tinynas``, ``rehash``, ``list`` | ``import_tinynas_table``, ``rehash_latency_table``, ``list_latency_tables`` (``import_with``, ``rehash_with``) |
| ``latency calibrate``, ``latency time`` | ``calibrate_latency_table``, ``time_onnx_files`` |
| ``quant sensitivity`` | ``quant_sensitivity`` (``sensitivity_with``) |
| ``cfg`` | ``search_settings``, ``train_settings``, ``design_settings`` |

Each command's settings are a frozen dataclass (``PredictSettings``, ``LatencyMergeSettings``, ...) and
its ``*_with`` function runs the command with them.

Heavy packages (torch, scipy, onnxruntime) are imported inside the functions, so importing this
package (and ``tinynas --help``) stays fast.
"""

from .arch import (DEFAULT_STAGE_WEIGHTS, SCORER_NAMES, ConvertSettings, InfoSettings, ScoreSettings, arch_report,
                   convert_arch, load_any_arch, parse_stage_weights, score_arch, score_with)
from .data import (DataCheckSettings, DataConvertSettings, DataSynthSettings, check_dataset, convert_dataset,
                   convert_with, make_synthetic_dataset, synth_with, synthetic_classes)
from .design import design, design_spec
from .detect import (ExportSettings, ModelInfoSettings, PredictSettings, describe_parts, export_checkpoint, export_int8,
                     export_with, format_bytes,
                     model_info, predict_images, predict_with, predictions_file, skipped_image_files)
from .latency import (build_latency_table, calibrate_latency_table, import_tinynas_table, list_latency_tables,
                      merge_latency_shards, model_recipe, plan_latency_build, predict_backbone_latency,
                      predict_detector_latency, rehash_latency_table, table_sidecar, time_onnx_files,
                      validate_detector_latency, validate_latency_table)
from .latency_settings import (LatencyBuildSettings, LatencyCalibrateSettings, LatencyImportSettings,
                               LatencyMergeSettings, LatencyPredictSettings, LatencyRehashSettings,
                               LatencyTimeSettings, LatencyValidateSettings, build_with, calibrate_with, import_with,
                               merge_with, rehash_with, time_with)
from .quant import QuantSensitivitySettings, quant_sensitivity, sensitivity_with
from .search import SearchRecipe, resolved_search_recipe, resume_search, run_search, search_backends
from .settings import DEFAULT as DEFAULT_ORIGIN
from .settings import design_settings, search_settings, settings_rows, train_settings
from .train import (evaluate_checkpoint, is_training_run, load_train_recipe, resume_training, run_distill_chain,
                    train_detector)



def __getattr__(name: str):
    # The design's result type lives with its stages, which import torch: loaded on first use.
    if name in ("DesignSpec", "DesignResult"):
        from .. import design as package

        return getattr(package, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "arch_report", "build_latency_table", "build_with", "calibrate_latency_table", "calibrate_with", "check_dataset",
    "convert_arch", "convert_dataset", "convert_with", "ConvertSettings", "DataCheckSettings", "DataConvertSettings",
    "DataSynthSettings", "DEFAULT_ORIGIN", "DEFAULT_STAGE_WEIGHTS", "describe_parts", "design", "design_settings",
    "design_spec", "DesignResult", "DesignSpec", "evaluate_checkpoint", "export_checkpoint", "export_int8", "export_with",
    "ExportSettings", "format_bytes", "import_tinynas_table", "import_with", "InfoSettings", "is_training_run",
    "LatencyBuildSettings", "LatencyCalibrateSettings", "LatencyImportSettings", "LatencyMergeSettings",
    "LatencyPredictSettings", "LatencyRehashSettings", "LatencyTimeSettings", "LatencyValidateSettings",
    "list_latency_tables", "load_any_arch", "load_train_recipe", "make_synthetic_dataset", "merge_latency_shards",
    "merge_with", "model_info", "model_recipe", "ModelInfoSettings", "parse_stage_weights", "plan_latency_build",
    "predict_backbone_latency", "predict_detector_latency", "predict_images", "predict_with", "predictions_file",
    "PredictSettings", "quant_sensitivity", "QuantSensitivitySettings", "rehash_latency_table", "rehash_with", "resolved_search_recipe", "resume_search",
    "resume_training", "run_distill_chain", "run_search", "score_arch", "score_with", "SCORER_NAMES", "ScoreSettings",
    "search_backends", "search_settings", "SearchRecipe", "sensitivity_with", "settings_rows", "skipped_image_files", "synth_with",
    "synthetic_classes", "table_sidecar", "time_onnx_files", "time_with", "train_detector", "train_settings",
    "validate_detector_latency", "validate_latency_table",
]
