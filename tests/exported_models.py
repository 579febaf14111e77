"""What the export and runtime tests share: the COCO sample's people, models with weights whose
heatmaps are not ~0, and exporting one of them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from conftest import TEST_DATA
from torch import nn

from pose.data.keypoints import COCO_KEYPOINTS, MPII_KEYPOINTS
from pose.data.transforms import (
    box_to_center_scale,
    get_affine_transform,
    normalise_bgr,
    warp_image,
)
from pose.engine.export import export_metadata, export_onnx
from pose.models import create_model

COCO_SAMPLE = TEST_DATA / "coco_sample"
INPUT_SIZE = (192, 256)  # (w, h) px
MIN_BOX_SCORE = 0.5  # the sample's detections above this: 18 people in 4 images


def sample_people() -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image of the COCO sample: the BGR image [H, W, 3] uint8 (read as the evaluation reads
    it) and its detector boxes [n, 4] (x, y, w, h px) scoring above ``MIN_BOX_SCORE``."""
    detections = json.loads((COCO_SAMPLE / "test_coco_det_AP_H_56.json").read_text())
    people = []
    for image_id in sorted({entry["image_id"] for entry in detections}):
        boxes = [entry["bbox"] for entry in detections
                 if entry["image_id"] == image_id and entry["score"] > MIN_BOX_SCORE]
        image = cv2.imread(str(COCO_SAMPLE / f"{image_id:012d}.jpg"),
                           cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        people.append((image, np.array(boxes, dtype=np.float64)))
    return people


def torch_crops(image: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int] = INPUT_SIZE
                ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """``pose.data``'s evaluation crops of ``boxes``: images [n, 3, h, w], centers and scales
    [n, 2]."""
    width, height = input_size
    crops, centers, scales = [], [], []
    for box in boxes:
        center, scale = box_to_center_scale(box, width / height)
        matrix = get_affine_transform(center, scale, 0.0, input_size)
        crops.append(normalise_bgr(warp_image(image, matrix, input_size)))
        centers.append(center)
        scales.append(scale)
    return torch.from_numpy(np.stack(crops)), np.stack(centers), np.stack(scales)


def sample_crops(input_size: tuple[int, int] = INPUT_SIZE) -> torch.Tensor:
    """Every sample person's crop: [18, 3, h, w] float32."""
    return torch.cat([torch_crops(image, boxes, input_size)[0]
                      for image, boxes in sample_people()])


def randomised_model(name: str, crops: torch.Tensor, num_joints: int = 17,
                     shift_batch_norm: bool = False) -> nn.Module:
    """Model ``name`` in eval mode with its seeded initial weights and the last convolution scaled
    so that the largest |heatmap value| on ``crops`` is 1, as a trained model's peaks are. Most
    maxima then lie inside the heatmap, where the quarter offset applies.

    ``shift_batch_norm``: BN shifts from U(-1, 1) as well, so that activations are of order 1
    throughout (float16 would flush the initial weights' tiny activations to 0), at the price
    of maxima crowding on the heatmap border."""
    torch.manual_seed(0)
    model = create_model(name, num_joints=num_joints).eval()
    for module in model.modules():
        if shift_batch_norm and isinstance(module, nn.BatchNorm2d):
            module.bias.data.uniform_(-1.0, 1.0)
    final = [module for module in model.head.modules() if isinstance(module, nn.Conv2d)][-1]
    with torch.no_grad():
        peak = model(crops).abs().max()
        final.weight.div_(peak)
        final.bias.div_(peak)
    return model


def export_model(model: nn.Module, path: Path, input_size: tuple[int, int] = INPUT_SIZE,
                 checkpoint_sha256: str = "0" * 64, **options) -> Path:
    """Export ``model`` (COCO keypoints, or MPII's for 16 joints; the official decoding and flip
    test) to ``path``; ``options``: batch, decode, half, opset."""
    keypoints = MPII_KEYPOINTS if model.num_joints == MPII_KEYPOINTS.num_joints else COCO_KEYPOINTS
    metadata = export_metadata(
        type(model).__name__, checkpoint_sha256, keypoints,
        input_size, model.heatmap_stride, decoding="quarter_offset", target_sigma=2.0,
        flip_test=True, shift_heatmap=True, decode=options.get("decode", True),
        half=options.get("half", False), batch=options.get("batch"))
    export_onnx(model, path, input_size, metadata=metadata, **options)
    return path
