"""Pictures of predictions (skeletons drawn on images, tiled into one JPEG) and of training
samples (augmented crops with their skeletons and target heatmaps)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np


class ImageSource(Protocol):
    def image_path(self, image_id: int) -> Path: ...


def draw_pose(image: np.ndarray, keypoints: np.ndarray, skeleton: tuple[tuple[int, int], ...],
              score_threshold: float = 0.2, colour: tuple[int, int, int] = (0, 255, 0)) -> None:
    """Draw one person in place: ``keypoints`` [K, 3] = (x, y, score) in image pixels (BGR image).

    Joints and limbs whose scores are not above ``score_threshold`` are left out.
    """
    thickness = max(1, round(max(image.shape[:2]) / 300))
    shown = keypoints[:, 2] > score_threshold
    points = np.round(keypoints[:, :2]).astype(int)
    for first, second in skeleton:
        if shown[first] and shown[second]:
            cv2.line(image, tuple(points[first]), tuple(points[second]), colour, thickness,
                     cv2.LINE_AA)
    for point in points[shown]:
        cv2.circle(image, tuple(point), thickness + 1, (0, 0, 255), -1, cv2.LINE_AA)


# Overlay colours (BGR): limbs of the first and second joint of each flip pair's side, and of
# the middle (joints in no flip pair, or limbs across the two sides).
FIRST_SIDE_COLOUR = (255, 160, 0)
SECOND_SIDE_COLOUR = (0, 140, 255)
MIDDLE_COLOUR = (80, 220, 80)


def side_colours(num_joints: int, skeleton: Sequence[Sequence[int]],
                 flip_pairs: Sequence[Sequence[int]]
                 ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """Colours of a keypoint set's joints and limbs from its flip pairs, so any set is drawn
    with its two sides told apart: ``(joint_colours [K], limb_colours [len(skeleton)])``. A limb
    takes the side of its joints (one side and the middle count as that side)."""
    side = [0] * num_joints  # 0: middle, 1: first of a flip pair, 2: second
    for first, second in flip_pairs:
        side[first], side[second] = 1, 2
    palette = (MIDDLE_COLOUR, FIRST_SIDE_COLOUR, SECOND_SIDE_COLOUR)
    limbs = []
    for first, second in skeleton:
        sides = {side[first], side[second]} - {0}
        limbs.append(palette[sides.pop()] if len(sides) == 1 else MIDDLE_COLOUR)
    return [palette[value] for value in side], limbs


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A bright BGR colour of its own for each track id (hues spread by the golden ratio)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 180)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    blue, green, red = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(blue), int(green), int(red)


def draw_person(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[Sequence[int]],
                colours: tuple[Sequence[tuple[int, int, int]], Sequence[tuple[int, int, int]]],
                score_threshold: float = 0.3, box: Sequence[float] | None = None,
                box_colour: tuple[int, int, int] = (255, 255, 255),
                label: str | None = None) -> None:
    """Draw one person in place on a BGR ``image``: ``keypoints`` [K, 3] = (x, y, score) in
    image pixels, joints and limbs at or below ``score_threshold`` left out, in ``colours``
    (:func:`side_colours`); with ``box`` (``x, y, w, h`` pixels) its rectangle and ``label``."""
    thickness = max(1, round(max(image.shape[:2]) / 400))
    shown = keypoints[:, 2] > score_threshold
    points = np.round(keypoints[:, :2]).astype(int)
    joint_colours, limb_colours = colours
    if box is not None:
        x, y, width, height = np.round(np.asarray(box, dtype=np.float64)).astype(int).tolist()
        cv2.rectangle(image, (x, y), (x + width, y + height), box_colour, thickness)
        if label:
            scale = 0.4 * thickness
            cv2.putText(image, label, (x + 2, max(y - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        box_colour, thickness, cv2.LINE_AA)
    for (first, second), colour in zip(skeleton, limb_colours, strict=True):
        if shown[first] and shown[second]:
            cv2.line(image, tuple(points[first]), tuple(points[second]), colour, thickness + 1,
                     cv2.LINE_AA)
    for joint in np.flatnonzero(shown):
        cv2.circle(image, tuple(points[joint]), thickness + 2, joint_colours[joint], -1,
                   cv2.LINE_AA)


def save_prediction_grid(dataset: ImageSource, results: list[dict[str, Any]], out_path: str | Path,
                         skeleton: tuple[tuple[int, int], ...], num_images: int = 8,
                         score_threshold: float = 0.2, min_person_score: float = 0.3,
                         tile_size: int = 320) -> Path:
    """Draw the predicted people (COCO results) on the first ``num_images`` images with
    predictions, tile them into a grid of ``tile_size`` px squares, and write ``out_path``."""
    people_by_image: dict[int, list[np.ndarray]] = defaultdict(list)
    for result in results:
        if result["score"] >= min_person_score:
            keypoints = np.asarray(result["keypoints"], dtype=np.float64).reshape(-1, 3)
            people_by_image[int(result["image_id"])].append(keypoints)
    tiles = []
    for image_id in sorted(people_by_image)[:num_images]:
        image = cv2.imread(str(dataset.image_path(image_id)), cv2.IMREAD_COLOR)
        if image is None:
            continue
        for keypoints in people_by_image[image_id]:
            draw_pose(image, keypoints, skeleton, score_threshold)
        ratio = tile_size / max(image.shape[:2])
        image = cv2.resize(image, None, fx=ratio, fy=ratio, interpolation=cv2.INTER_AREA)
        tile = np.zeros((tile_size, tile_size, 3), np.uint8)
        tile[:image.shape[0], :image.shape[1]] = image
        tiles.append(tile)
    if not tiles:
        tiles = [np.zeros((tile_size, tile_size, 3), np.uint8)]
    out_path = Path(out_path)
    cv2.imwrite(str(out_path), tile_grid(tiles, columns=4))
    return out_path


def heatmap_overlay(image: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """``image`` (RGB uint8 [H, W, 3]) with the per-pixel maximum over joints of ``heatmaps``
    ([K, h, w], any size: resized to the image) in OpenCV's JET colours, blended in proportion
    to the heat (``alpha`` where it is 1), so the picture stays visible where there is none."""
    peak = np.clip(heatmaps.max(axis=0), 0.0, 1.0)
    peak = cv2.resize(peak.astype(np.float32), (image.shape[1], image.shape[0]),
                      interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap(np.round(peak * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
    weight = alpha * peak[:, :, None]
    return np.round(image * (1 - weight) + colours * weight).astype(np.uint8)


def draw_crop_comparison(image: np.ndarray, predicted: np.ndarray, ground_truth: np.ndarray,
                         skeleton: tuple[tuple[int, int], ...],
                         score_threshold: float = 0.2) -> np.ndarray:
    """A copy of the crop ``image`` (RGB uint8) with the ground-truth skeleton in green and the
    predicted one in red. ``predicted``: [K, 3] (x, y, score), ``ground_truth``: [K, 3]
    (x, y, visibility) in crop pixels; unlabelled joints (visibility 0) are not drawn."""
    canvas = np.ascontiguousarray(image.copy())
    draw_pose(canvas, ground_truth, skeleton, score_threshold=0.0, colour=(0, 255, 0))
    draw_pose(canvas, predicted, skeleton, score_threshold=score_threshold, colour=(255, 0, 0))
    return canvas


def tile_grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Tiles of one size [h, w, 3] in rows of ``columns`` (the last row padded with black)."""
    columns = max(1, min(columns, len(tiles)))
    tiles = tiles + [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    return np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])


def denormalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Network inputs back to pictures: float [..., 3, h, w] RGB normalised with ``mean`` and
    ``std`` (``(rgb / 255 - mean) / std``) -> uint8 [..., h, w, 3] RGB."""
    rgb = np.moveaxis(np.asarray(images, dtype=np.float32), -3, -1)
    rgb = (rgb * np.asarray(std, np.float32) + np.asarray(mean, np.float32)) * 255
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def training_sample_tiles(image: np.ndarray, joints: np.ndarray, target: np.ndarray,
                          target_weight: np.ndarray, skeleton: tuple[tuple[int, int], ...],
                          mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """What the model sees for one training sample: [h, 2w, 3] BGR uint8, the crop with the
    skeleton of its weighted joints (left), and with the target heatmaps overlaid (right).

    Args:
        image: the network input, float32 [3, h, w] RGB normalised with ``mean`` and ``std``.
        joints: [K, 2+] joint positions in crop pixels.
        target: [K, hh, hw] heatmaps; target_weight: [K] loss weights (0: not trained on).
    """
    crop = np.ascontiguousarray(denormalize(image, mean, std)[:, :, ::-1])  # BGR, as drawn
    with_skeleton = crop.copy()
    keypoints = np.concatenate([joints[:, :2], target_weight[:, None]], axis=1)
    draw_pose(with_skeleton, keypoints, skeleton, score_threshold=0.5)
    heatmaps = target if len(target) else np.zeros((1, *target.shape[1:]), np.float32)
    with_heatmaps = heatmap_overlay(crop[:, :, ::-1], heatmaps)[:, :, ::-1]
    return np.hstack([with_skeleton, with_heatmaps])
