"""A torch-free runtime for exported pose models (numpy, OpenCV, onnxruntime).

``OnnxPoseModel("model.onnx").predict(image_bgr, boxes_xywh)`` runs the top-down step of an
ONNX file written by ``python -m pose.export``: person boxes -> crops -> network -> (flip test)
-> decoding -> keypoints in image pixels, configured by the file's metadata
(:class:`PoseMetadata`). Nothing here imports torch, ``pose.data``, ``pose.models`` or
``pose.evaluation``; ``tests/test_runtime.py`` checks it against them.
"""

from __future__ import annotations

from pose.runtime.metadata import METADATA_KEYS, MetadataError, PoseMetadata
from pose.runtime.model import CropBatch, OnnxPoseModel

__all__ = ["METADATA_KEYS", "CropBatch", "MetadataError", "OnnxPoseModel", "PoseMetadata"]
