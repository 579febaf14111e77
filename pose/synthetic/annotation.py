"""Labels of a rendered scene: COCO keypoint annotations read off the part buffer, and a
simulated person detector's boxes.

A joint is *visible* (COCO ``v = 2``) if the pixel at the joint still shows one of the parts
that the joint belongs to (:attr:`pose.synthetic.figures.PersonFigure.joint_parts`), *labelled
but occluded* (``v = 1``) if something else is drawn there (an occluder, another person, the
torso over the far shoulder, the head over the far eye), and *not labelled* (``v = 0``, stored
as ``0, 0, 0`` as in COCO) if it lies outside the image.

Coordinates follow the rest of ``pose``: 0-based pixels whose centres are at integer coordinates
(OpenCV's convention), so a joint at ``(x, y)`` lies in pixel ``(round(x), round(y))``; the image
holds the joints with ``0 <= x <= width - 1`` and ``0 <= y <= height - 1``. A box
``[x, y, w, h]`` covers the pixel columns ``x .. x + w - 1`` and rows ``y .. y + h - 1`` (as the
official HRNet box cleaning reads it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from pose.synthetic.human import NUM_PARTS
from pose.synthetic.scenes import Scene


def annotate_scene(scene: Scene, part_buffer: np.ndarray) -> list[dict[str, Any]]:
    """COCO annotations (without ids) of the people (figures) in ``scene``, from its
    ``part_buffer``.

    Each is ``{"keypoints": [x, y, v] * K, "num_keypoints", "bbox": [x, y, w, h], "area",
    "segmentation": [polygon, ...]}``: coordinates in pixels rounded to 0.01 (joints outside the
    image stored as 0, 0, 0), the box tight around the person's visible pixels and extended to
    its labelled joints, the area its visible pixel count.
    """
    width, height = scene.image_size
    annotations = []
    for index, person in enumerate(scene.people):
        first_id = 1 + index * NUM_PARTS
        mask = ((part_buffer >= first_id) & (part_buffer < first_id + NUM_PARTS)).astype(np.uint8)
        coordinates = np.round(person.keypoints, 2)
        inside = ((coordinates[:, 0] >= 0) & (coordinates[:, 0] <= width - 1)
                  & (coordinates[:, 1] >= 0) & (coordinates[:, 1] <= height - 1))
        keypoints = []
        box_x, box_y, box_w, box_h = cv2.boundingRect(mask)
        left, top, right, bottom = box_x, box_y, box_x + box_w - 1, box_y + box_h - 1
        for joint, (x, y) in enumerate(coordinates):
            if not inside[joint]:
                keypoints.extend([0, 0, 0])
                continue
            column, row = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            owner = int(part_buffer[row, column]) - first_id
            visible = 2 if owner in person.joint_parts[joint] else 1
            keypoints.extend([float(x), float(y), visible])
            left, right = min(left, column), max(right, column)
            top, bottom = min(top, row), max(bottom, row)
        # The outline as polygons, simplified to within a pixel to keep the JSON small.
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        segmentation = []
        for contour in contours:
            polygon = cv2.approxPolyDP(contour, 1.0, True)
            if len(polygon) >= 3:
                segmentation.append(polygon.reshape(-1).astype(float).tolist())
        annotations.append({
            "keypoints": keypoints,
            "num_keypoints": int(sum(1 for value in keypoints[2::3] if value > 0)),
            "bbox": [float(left), float(top), float(right - left + 1), float(bottom - top + 1)],
            "area": float(np.count_nonzero(mask)),
            "segmentation": segmentation,
        })
    return annotations


def box_iou(first: Sequence[float], second: Sequence[float]) -> float:
    """The intersection over union of two boxes [x, y, w, h] in pixels (0 if both are empty)."""
    ax, ay, aw, ah = first
    bx, by, bw, bh = second
    overlap_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    overlap_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    overlap = overlap_w * overlap_h
    union = aw * ah + bw * bh - overlap
    return overlap / union if union > 0 else 0.0


def simulate_detections(
    rng: np.random.Generator,
    image_id: int,
    annotations: Sequence[dict[str, Any]],
    image_size: tuple[int, int],
    miss_rate: float = 0.03,
    false_positive_rate: float = 0.25,
    category_id: int = 1,
) -> list[dict[str, Any]]:
    """A detector's output for one image, in COCO results format (boxes of ``category_id``).

    Each ground-truth box is found with probability ``1 - miss_rate`` (at least one per image),
    its position jittered by about 4% and its size by about 5%; the score is higher for boxes
    that overlap their person better (0.4 to 1.0). On average ``false_positive_rate`` boxes per
    image land on the background with low scores (0.02 to 0.35). Sorted by decreasing score.
    """
    width, height = image_size
    detections = []
    found = rng.random(len(annotations)) >= miss_rate
    if len(annotations) and not found.any():
        found[int(rng.integers(len(annotations)))] = True
    for annotation, kept in zip(annotations, found, strict=True):
        x, y, w, h = annotation["bbox"]
        new_w = w * math.exp(rng.normal(0, 0.05))
        new_h = h * math.exp(rng.normal(0, 0.05))
        centre_x = x + w / 2 + rng.normal(0, 0.04) * w
        centre_y = y + h / 2 + rng.normal(0, 0.04) * h
        x1 = float(np.clip(centre_x - new_w / 2, 0, width - 1))
        y1 = float(np.clip(centre_y - new_h / 2, 0, height - 1))
        x2 = float(np.clip(centre_x + new_w / 2, x1 + 1, width))
        y2 = float(np.clip(centre_y + new_h / 2, y1 + 1, height))
        box = [x1, y1, x2 - x1, y2 - y1]
        score = 0.4 + 0.6 * box_iou(box, annotation["bbox"]) ** 2 + rng.normal(0, 0.03)
        if kept:
            detections.append({"image_id": image_id, "category_id": category_id,
                                "bbox": [round(value, 2) for value in box],
                                "score": round(float(np.clip(score, 0.3, 1.0)), 4)})
    for _ in range(int(rng.poisson(false_positive_rate))):
        for _attempt in range(10):
            box_h = rng.uniform(0.1, 0.6) * height
            box_w = box_h * rng.uniform(0.3, 0.9)
            x1, y1 = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
            box = [float(x1), float(y1), float(box_w), float(box_h)]
            if all(box_iou(box, annotation["bbox"]) < 0.2 for annotation in annotations):
                detections.append({"image_id": image_id, "category_id": category_id,
                                   "bbox": [round(value, 2) for value in box],
                                   "score": round(float(rng.uniform(0.02, 0.35)), 4)})
                break
    detections.sort(key=lambda detection: -detection["score"])
    return detections
