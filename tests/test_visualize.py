"""Pictures of predictions: skeletons land where the keypoints are, low scores are left out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose.data.keypoints import COCO_KEYPOINTS
from pose.synthetic import generate_coco_dataset
from pose.visualize import draw_pose, save_prediction_grid, tile_grid, training_sample_tiles


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


def test_training_sample_tiles_show_skeleton_and_heatmaps():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    grey = ((np.full((3, 64, 48), 100 / 255) - np.array(mean)[:, None, None])
            / np.array(std)[:, None, None]).astype(np.float32)
    joints = np.zeros((17, 2))
    joints[5], joints[7] = (10, 10), (10, 50)  # left shoulder, left elbow: one limb
    joints[6] = (40, 10)  # right shoulder, weight 0: not drawn
    weight = np.zeros(17, np.float32)
    weight[[5, 7]] = 1
    target = np.zeros((17, 16, 12), np.float32)
    target[5, 2, 2] = 1.0  # heatmap peak at cell (2, 2) = crop pixel (8..11, 8..11)
    tiles = training_sample_tiles(grey, joints, target, weight, COCO_KEYPOINTS.skeleton, mean,
                                  std)
    assert tiles.shape == (64, 96, 3) and tiles.dtype == np.uint8
    left, right = tiles[:, :48].astype(int), tiles[:, 48:].astype(int)
    assert (left[60, 40] == 100).all()  # the crop itself, denormalised
    assert (left[30, 10] != 100).any()  # the limb from (10, 10) to (10, 50)
    assert (left[10, 40] == 100).all()  # the unweighted joint is not drawn
    assert (right[10, 10] != 100).any() and (right[40, 30] == 100).all()  # heat only at the peak
    grid = tile_grid([tiles] * 3, columns=2)
    assert grid.shape == (128, 192, 3) and not grid[64:, 96:].any()


@pytest.mark.slow
def test_show_batch_writes_a_grid(tmp_path):
    root = tmp_path / "coco"
    generate_coco_dataset(root, num_train_images=6, num_val_images=1, seed=2,
                          image_size=(128, 128))
    out = tmp_path / "batch.png"
    command = [sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" /
                                   "show_batch.py"),
               "experiment=demo", f"data.root={root}", "data.device_augmentation=true",
               "data.brightness=0.5", "--num", "5", "--columns", "2", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    grid = cv2.imread(str(out))
    assert grid.shape == (3 * 192, 2 * 2 * 128, 3)  # demo crops are 128 x 192
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
