"""Evaluation: heatmap decoding, flip test, OKS-NMS, rescoring, COCO keypoint AP, MPII PCKh, PCK
and EPE for any keypoint set."""

from __future__ import annotations

from pose.evaluation.coco import (
    coco_result_entries,
    format_metrics_table,
    rescore_and_nms,
)
from pose.evaluation.coco_eval import (
    METRIC_NAMES,
    CocoKeypointGroundTruth,
    evaluate_coco_keypoints,
    evaluate_coco_keypoints_tensors,
    load_coco_keypoint_ground_truth,
)
from pose.evaluation.decode import (
    POST_PROCESSES,
    decode_heatmaps,
    default_shift_heatmap,
    flip_back,
    flip_test_average,
    gaussian_blur,
    heatmap_maxima,
    heatmap_to_image_coords,
    refine_dark,
    refine_dark_udp,
    refine_quarter_offset,
    udp_blur_kernel_size,
    udp_gaussian_blur,
    udp_heatmap_to_image_coords,
)
from pose.evaluation.nms import (
    batched_oks_nms,
    batched_soft_oks_nms,
    grouped_score_order,
    oks_iou,
    oks_matrix,
    oks_nms,
    rescore,
    score_order,
    soft_oks_nms,
)
from pose.evaluation.pck import PCK_NAMES, PersonGroundTruth, epe, pck
from pose.evaluation.pckh import OFFICIAL_MEAN_AT_01, PCKH_NAMES, pckh, pckh_per_joint

__all__ = [
    "METRIC_NAMES",
    "OFFICIAL_MEAN_AT_01",
    "PCKH_NAMES",
    "PCK_NAMES",
    "POST_PROCESSES",
    "CocoKeypointGroundTruth",
    "PersonGroundTruth",
    "batched_oks_nms",
    "batched_soft_oks_nms",
    "coco_result_entries",
    "decode_heatmaps",
    "default_shift_heatmap",
    "epe",
    "evaluate_coco_keypoints",
    "evaluate_coco_keypoints_tensors",
    "flip_back",
    "flip_test_average",
    "format_metrics_table",
    "gaussian_blur",
    "grouped_score_order",
    "heatmap_maxima",
    "heatmap_to_image_coords",
    "load_coco_keypoint_ground_truth",
    "oks_iou",
    "oks_matrix",
    "oks_nms",
    "pck",
    "pckh",
    "pckh_per_joint",
    "refine_dark",
    "refine_dark_udp",
    "refine_quarter_offset",
    "rescore",
    "rescore_and_nms",
    "score_order",
    "soft_oks_nms",
    "udp_blur_kernel_size",
    "udp_gaussian_blur",
    "udp_heatmap_to_image_coords",
]
