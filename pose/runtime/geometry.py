"""Top-down crops and their inverse in numpy and OpenCV, equal to ``pose.data.transforms``.

The runtime cannot import ``pose.data`` (it imports torch), so the few steps it needs are here
again, at rotation 0: person box -> (center, scale) -> the official affine crop, and heatmap
cells -> image pixels. ``tests/test_runtime.py`` checks them bit for bit against
``pose.data.transforms`` and ``pose.evaluation.decode``. Pixels are 0-based, sizes (w, h).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def box_to_center_scale(box_xywh: Sequence[float], aspect_ratio: float, padding: float,
                        pixel_std: float) -> tuple[np.ndarray, np.ndarray]:
    """``[x, y, w, h]`` px -> ``center`` float32 [2] (px) and ``scale`` float32 [2] (box size
    / ``pixel_std``, the short side grown to ``aspect_ratio`` = w / h, times ``padding``), in
    the official float32 order (``pose.data.transforms.box_to_center_scale``)."""
    x, y, width, height = (float(value) for value in box_xywh)
    center = np.array([x + width * 0.5, y + height * 0.5], dtype=np.float32)
    if width > aspect_ratio * height:
        height = width / aspect_ratio
    elif width < aspect_ratio * height:
        width = height * aspect_ratio
    scale = np.array([width / pixel_std, height / pixel_std], dtype=np.float32)
    if center[0] != -1:  # the official "no box" marker stays unpadded
        scale = scale * np.float32(padding)
    return center, scale


def crop_matrix(center: np.ndarray, scale: np.ndarray, output_size: Sequence[int],
                pixel_std: float) -> np.ndarray:
    """The [2, 3] float64 map from image px to crop px at rotation 0: the box of width
    ``scale[0] * pixel_std`` around ``center`` onto the crop width (quirk P1: ``scale[1]`` is
    not used). Built from the same three float32 points as the official
    ``get_affine_transform``, so it is bit-equal to it."""
    output_width, output_height = (int(value) for value in output_size)
    half_up = (scale * pixel_std)[0] * -0.5
    source = np.zeros((3, 2), dtype=np.float32)
    target = np.zeros((3, 2), dtype=np.float32)
    source[0] = center
    source[1] = center + np.asarray([0 - half_up * 0.0, 0 * 0.0 + half_up * 1.0])
    target[0] = [output_width * 0.5, output_height * 0.5]
    target[1] = (np.array([output_width * 0.5, output_height * 0.5])
                 + np.array([0, output_width * -0.5], dtype=np.float32))
    for points in (source, target):  # the third point turns the first about the second by 90°
        direction = points[0] - points[1]
        points[2] = points[1] + np.array([-direction[1], direction[0]], dtype=np.float32)
    return cv2.getAffineTransform(source, target)


def crop_image(image: np.ndarray, matrix: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """Warp ``image`` [H, W, C] into the crop [h, w, C]: bilinear, 0 outside (quirk P12)."""
    return cv2.warpAffine(image, matrix, (int(output_size[0]), int(output_size[1])),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def heatmap_to_image(coords: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                     heatmap_size: Sequence[int], pixel_std: float) -> np.ndarray:
    """Heatmap cells [N, K, 2] -> image px [N, K, 2] float64 for crops of ``centers`` [N, 2] px
    and ``scales`` [N, 2] (the official ``transform_preds`` at rotation 0, quirk P1), computed
    as ``pose.evaluation.decode.heatmap_to_image_coords`` does."""
    heatmap_width, heatmap_height = heatmap_size
    coords = np.asarray(coords, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    pixels_per_cell = scales[:, 0] * pixel_std / heatmap_width
    origin_x = centers[:, 0] - scales[:, 0] * pixel_std * 0.5
    origin_y = centers[:, 1] - heatmap_height * pixels_per_cell * 0.5
    image_x = coords[..., 0] * pixels_per_cell[:, None] + origin_x[:, None]
    image_y = coords[..., 1] * pixels_per_cell[:, None] + origin_y[:, None]
    return np.stack([image_x, image_y], axis=2)


def normalisation_table(value_range: Sequence[float], mean: Sequence[float],
                        std: Sequence[float]) -> np.ndarray:
    """[3, 256] float32: ``(level / value_range[1] - mean) / std`` of every uint8 level per
    channel, rounded after each step in float32 as torch's ``normalise`` does."""
    if tuple(value_range) != (0, 255):
        raise ValueError(f"value_range {tuple(value_range)}: the runtime normalises uint8 "
                         "images, so the model must expect values in (0, 255)")
    levels = np.arange(256, dtype=np.float32)
    mean32 = np.asarray(mean, dtype=np.float32)[:, None]
    std32 = np.asarray(std, dtype=np.float32)[:, None]
    return ((levels / np.float32(255) - mean32) / std32).astype(np.float32)


def normalise_crop(crop_bgr: np.ndarray, table: np.ndarray, channel_order: str) -> np.ndarray:
    """A uint8 BGR crop [h, w, 3] -> the float32 network input [3, h, w] in ``channel_order``."""
    normalised = np.empty((3, *crop_bgr.shape[:2]), dtype=np.float32)
    for channel in range(3):
        source = 2 - channel if channel_order == "RGB" else channel
        np.take(table[channel], crop_bgr[:, :, source], out=normalised[channel], mode="clip")
    return normalised
