"""Datasets, geometry, augmentation and heatmap targets for top-down pose estimation."""

from __future__ import annotations

from pose.data.coco import CocoKeypoints, CorruptImageWarning, ImageReadError, collate_skip_none
from pose.data.keypoints import COCO_KEYPOINTS, MPII_KEYPOINTS, KeypointSpec
from pose.data.mpii import MpiiKeypoints
from pose.data.transforms import AugmentationParams

__all__ = [
    "COCO_KEYPOINTS",
    "MPII_KEYPOINTS",
    "AugmentationParams",
    "CocoKeypoints",
    "CorruptImageWarning",
    "ImageReadError",
    "KeypointSpec",
    "MpiiKeypoints",
    "collate_skip_none",
]
