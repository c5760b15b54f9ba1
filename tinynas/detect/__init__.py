"""Detection: a recipe -> wrapped backbone, Efficient RepGFPN neck, ZeroHead; decoding and NMS."""

from .anchors import anchor_points
from .decode import decode_boxes, dfl_integral, distance_to_box
from .detector import Detector, build_backbone, build_detector
from .head import ZeroHead
from .neck import GiraffeNeckV2
from .nms import Detections, batched_nms, box_iou, multiclass_nms, nms
from .model_recipe import (BackboneConfig, HeadConfig, ModelRecipe, NeckConfig, check_input_size, load_model_recipe,
                     parse_model_recipe)

__all__ = [
    "BackboneConfig", "Detections", "Detector", "GiraffeNeckV2", "HeadConfig", "ModelRecipe", "NeckConfig",
    "ZeroHead", "anchor_points", "batched_nms", "box_iou", "build_backbone", "build_detector", "check_input_size",
    "decode_boxes", "dfl_integral", "distance_to_box", "load_model_recipe", "multiclass_nms", "nms",
    "parse_model_recipe",
]
