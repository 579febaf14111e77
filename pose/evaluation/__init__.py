"""Evaluation: heatmap decoding, flip test, OKS-NMS, rescoring, COCO results, pycocotools."""

from __future__ import annotations

from pose.evaluation.coco import (
    METRIC_NAMES,
    KeypointEvalResult,
    coco_results,
    format_metrics_table,
    pycocotools_keypoint_eval,
    pycocotools_keypoint_stats,
)
from pose.evaluation.decode import (
    POST_PROCESSES,
    decode_heatmaps,
    flip_back,
    flip_test_average,
    gaussian_blur,
    heatmap_maxima,
    heatmap_to_image_coords,
    refine_dark,
    refine_quarter_offset,
)
from pose.evaluation.nms import oks_iou, oks_matrix, oks_nms, rescore, score_order, soft_oks_nms

__all__ = [
    "METRIC_NAMES",
    "POST_PROCESSES",
    "KeypointEvalResult",
    "coco_results",
    "decode_heatmaps",
    "flip_back",
    "flip_test_average",
    "format_metrics_table",
    "gaussian_blur",
    "heatmap_maxima",
    "heatmap_to_image_coords",
    "oks_iou",
    "oks_matrix",
    "oks_nms",
    "pycocotools_keypoint_eval",
    "pycocotools_keypoint_stats",
    "refine_dark",
    "refine_quarter_offset",
    "rescore",
    "score_order",
    "soft_oks_nms",
]
