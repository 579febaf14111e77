"""Pictures of predictions: skeletons land where the keypoints are, low scores are left out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pose.data.keypoints import COCO_KEYPOINTS
from pose.visualize import draw_pose, save_prediction_grid


def test_draw_pose_marks_confident_joints_only():
    image = np.zeros((100, 100, 3), np.uint8)
    keypoints = np.zeros((17, 3))
    keypoints[5] = (20, 30, 0.9)  # left shoulder
    keypoints[7] = (20, 70, 0.9)  # left elbow: the limb 5-7 is drawn
    keypoints[6] = (80, 30, 0.1)  # right shoulder below the threshold: not drawn
    draw_pose(image, keypoints, COCO_KEYPOINTS.skeleton, score_threshold=0.2)
    assert image[30, 20].any() and image[70, 20].any() and image[50, 20].any()  # joints and limb
    assert not image[30, 80].any()
    assert not image[50, 50].any()


class _Images:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def image_path(self, image_id: int) -> Path:
        return self.folder / f"{image_id}.jpg"


def test_prediction_grid_tiles_the_images(tmp_path):
    for image_id in (1, 2, 3):
        cv2.imwrite(str(tmp_path / f"{image_id}.jpg"), np.full((60, 80, 3), 128, np.uint8))
    person = np.zeros((17, 3))
    person[:, :2] = 30
    person[:, 2] = 0.9
    results = [{"image_id": image_id, "keypoints": person.ravel().tolist(), "score": 0.8}
               for image_id in (1, 2, 3)]
    results.append({"image_id": 9, "keypoints": person.ravel().tolist(), "score": 0.1})  # too low
    out = save_prediction_grid(_Images(tmp_path), results, tmp_path / "grid.jpg",
                               COCO_KEYPOINTS.skeleton, num_images=8, tile_size=64)
    grid = cv2.imread(str(out))
    assert grid.shape == (64, 3 * 64, 3)  # three images in one row, the low-score one left out
