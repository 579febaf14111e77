"""Datasets, geometry, augmentation and heatmap targets for top-down pose estimation."""

from __future__ import annotations

from pose.data.coco import ANNOTATION_SKIPS, CocoKeypoints
from pose.data.device import DeviceAugmentation
from pose.data.keypoints import COCO_KEYPOINTS, MPII_KEYPOINTS, KeypointSpec
from pose.data.loading import (
    LoaderWorkerError,
    build_loader,
    collate_skip_none,
    init_worker,
    worker_death,
)
from pose.data.mpii import MpiiKeypoints
from pose.data.topdown import LOADING_EVENTS, CorruptImageWarning, ImageReadError, TopDownDataset
from pose.data.transforms import AugmentationParams

__all__ = [
    "ANNOTATION_SKIPS",
    "COCO_KEYPOINTS",
    "LOADING_EVENTS",
    "MPII_KEYPOINTS",
    "AugmentationParams",
    "CocoKeypoints",
    "CorruptImageWarning",
    "DeviceAugmentation",
    "ImageReadError",
    "KeypointSpec",
    "LoaderWorkerError",
    "MpiiKeypoints",
    "TopDownDataset",
    "build_loader",
    "collate_skip_none",
    "init_worker",
    "worker_death",
]
