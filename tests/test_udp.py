"""UDP (unbiased data processing, Huang et al. CVPR 2020): warp, targets, decoding, flip test.

The independent references are hand-worked numbers and numpy/OpenCV transcriptions of the
definitions in mmpose 1.x (``get_udp_warp_matrix``, ``generate_udp_gaussian_heatmaps``,
``gaussian_blur``, ``refine_keypoints_dark_udp``, ``UDPHeatmap.decode`` and the top-down
estimator's back-projection), written in this file from their published formulas.
"""

from __future__ import annotations

import json
import math
import shutil

import cv2
import numpy as np
import pytest
import torch

from pose.data import CocoKeypoints, MpiiKeypoints, collate_skip_none
from pose.data.keypoints import COCO_KEYPOINTS
from pose.data.targets import (
    gaussian_heatmaps,
    heatmap_targets,
    udp_gaussian_heatmaps,
    udp_heatmap_targets,
)
from pose.data.transforms import (
    affine_transform_points,
    box_to_center_scale,
    compose_affine,
    crop_affine_transform,
    get_affine_transform,
    get_udp_affine_transform,
    horizontal_flip_matrix,
)
from pose.evaluation import (
    decode_heatmaps,
    default_shift_heatmap,
    flip_back,
    flip_test_average,
    refine_dark_udp,
    udp_blur_kernel_size,
    udp_gaussian_blur,
)

COCO_256 = ((192, 256), (48, 64), 2.0)  # input (w, h) px, heatmap (w, h) cells, sigma cells
COCO_384 = ((288, 384), (72, 96), 3.0)
# Box centre (px) and scale (box / 200) of a 150x300 person box at (100, 50), aspect-fixed.
CENTER, SCALE = box_to_center_scale([100.0, 50.0, 150.0, 300.0], 192 / 256)


def _mmpose_udp_warp(center, box_size, rotation_deg, output_size) -> np.ndarray:
    """mmpose's get_udp_warp_matrix (float64 here), box_size = scale * 200 in pixels."""
    center, box_size = np.asarray(center, np.float64), np.asarray(box_size, np.float64)
    theta = math.radians(rotation_deg)
    scale_x = (output_size[0] - 1) / box_size[0]
    scale_y = (output_size[1] - 1) / box_size[1]
    cx2, cy2 = 2 * center[0], 2 * center[1]
    return np.array([
        [math.cos(theta) * scale_x, -math.sin(theta) * scale_x,
         scale_x * (-0.5 * cx2 * math.cos(theta) + 0.5 * cy2 * math.sin(theta)
                    + 0.5 * box_size[0])],
        [math.sin(theta) * scale_y, math.cos(theta) * scale_y,
         scale_y * (-0.5 * cx2 * math.sin(theta) - 0.5 * cy2 * math.cos(theta)
                    + 0.5 * box_size[1])],
    ])


# --------------------------------------------------------------------------------------------
# Warp


@pytest.mark.parametrize("rotation", [0.0, 30.0, -71.5])
@pytest.mark.parametrize("output_size", [(192, 256), (48, 64), (288, 384), (256, 256)])
def test_udp_warp_maps_box_centre_to_crop_centre_and_inverts(rotation, output_size):
    rng = np.random.default_rng(abs(int(rotation)) + output_size[0])
    width, height = output_size
    for center, scale in [(CENTER, SCALE), (np.array([12.5, 700.25]), np.array([0.3, 2.1])),
                          (np.array([-40.0, 3.0]), np.array([4.0, 4.0]))]:
        forward = get_udp_affine_transform(center, scale, rotation, output_size)
        inverse = get_udp_affine_transform(center, scale, rotation, output_size, inverse=True)
        assert forward.dtype == np.float64 and forward.shape == (2, 3)
        np.testing.assert_allclose(affine_transform_points(np.asarray([center]), forward),
                                   [[(width - 1) / 2, (height - 1) / 2]], rtol=0, atol=1e-9)
        points = rng.uniform(-500, 1500, size=(50, 2))
        there = affine_transform_points(points, forward)
        np.testing.assert_allclose(affine_transform_points(there, inverse), points, rtol=0,
                                   atol=1e-9)
        # mmpose's matrix turns the other way (its rotation draw is symmetric).
        box = np.asarray(scale, dtype=np.float64) * 200
        np.testing.assert_allclose(forward, _mmpose_udp_warp(center, box, -rotation, output_size),
                                   rtol=0, atol=1e-9)


def test_udp_warp_hand_worked_box_edges():
    # A 95.5 x 127.5 px box centred on (100, 200) onto a 192x256 crop: zoom exactly 2 per axis
    # (scale in pixels, pixel_std 1, so that no rounding enters).
    forward = get_udp_affine_transform([100.0, 200.0], [95.5, 127.5], 0.0, (192, 256),
                                       pixel_std=1.0)
    np.testing.assert_array_equal(forward, [[2.0, 0.0, -104.5], [0.0, 2.0, -272.5]])
    corners = np.array([[100 - 47.75, 200 - 63.75], [100 + 47.75, 200 + 63.75]])
    np.testing.assert_array_equal(affine_transform_points(corners, forward),
                                  [[0.0, 0.0], [191.0, 255.0]])


def test_udp_warp_turns_like_the_official_crop():
    # The same rotation turns the crop the same way under both codecs: for an aspect-fixed box
    # their linear parts differ only by the per-axis zoom.
    official = get_affine_transform(CENTER, SCALE, 30.0, (192, 256))
    udp = get_udp_affine_transform(CENTER, SCALE, 30.0, (192, 256))
    official_rotation = official[:, :2] / np.linalg.norm(official[:, :2], axis=1, keepdims=True)
    udp_rotation = udp[:, :2] / np.linalg.norm(udp[:, :2], axis=1, keepdims=True)
    np.testing.assert_allclose(udp_rotation, official_rotation, rtol=0, atol=1e-6)


def test_udp_warp_rejects_bad_input():
    with pytest.raises(ValueError, match="scale must be positive"):
        get_udp_affine_transform(CENTER, [0.0, 1.0], 0.0, (192, 256))
    with pytest.raises(ValueError, match="shape"):
        get_udp_affine_transform([1.0, 2.0, 3.0], SCALE, 0.0, (192, 256))
    with pytest.raises(ValueError, match="codec='msra' is not known"):
        crop_affine_transform("msra", CENTER, SCALE, 0.0, (192, 256))
    np.testing.assert_array_equal(crop_affine_transform("heatmap", CENTER, SCALE, 10.0, (192, 256)),
                                  get_affine_transform(CENTER, SCALE, 10.0, (192, 256)))


# --------------------------------------------------------------------------------------------
# Targets


def _mmpose_udp_targets(joints, visible, image_size, heatmap_size, sigma):
    """mmpose's UDPHeatmap.encode + generate_udp_gaussian_heatmaps for one person (float64
    grid; integer 3 sigma)."""
    heatmap_width, heatmap_height = heatmap_size
    cells = np.asarray(joints, dtype=np.float64)[:, :2] / (
        (np.array(image_size) - 1) / (np.array(heatmap_size) - 1))
    target = np.zeros((len(cells), heatmap_height, heatmap_width), dtype=np.float32)
    weight = np.asarray(visible, dtype=np.float32).copy()
    radius = sigma * 3
    size = int(2 * radius + 1)
    grid = np.arange(size, dtype=np.float64)
    for k, position in enumerate(cells):
        if weight[k] < 0.5:
            continue
        mu = (position + 0.5).astype(np.int64)
        left, top = (mu - radius).astype(np.int64)
        right, bottom = (mu + radius + 1).astype(np.int64)
        if left >= heatmap_width or top >= heatmap_height or right < 0 or bottom < 0:
            weight[k] = 0
            continue
        x0 = size // 2 + position[0] - mu[0]
        y0 = size // 2 + position[1] - mu[1]
        gaussian = np.exp(-((grid - x0) ** 2 + (grid[:, None] - y0) ** 2) / (2 * sigma**2))
        gx1, gx2 = max(0, -left), min(heatmap_width, right) - left
        gy1, gy2 = max(0, -top), min(heatmap_height, bottom) - top
        target[k, max(0, top):min(heatmap_height, bottom),
               max(0, left):min(heatmap_width, right)] = gaussian[gy1:gy2, gx1:gx2]
    return target, weight


# A 193x257 crop on 49x65 heatmaps: (input - 1) / (heatmap - 1) is exactly 4 px per cell on both
# axes, so the hand-worked cell positions below are exact.
EXACT_4 = ((193, 257), (49, 65), 2.0)


def test_udp_targets_peak_exactly_at_hand_worked_sub_pixel_positions():
    image_size, heatmap_size, sigma = EXACT_4
    # Crop pixels (42, 81) and (120, 28): heatmap positions (10.5, 20.25) and (30, 7).
    joints = np.array([[42.0, 81.0], [120.0, 28.0]])
    target, weight = udp_gaussian_heatmaps(joints, np.ones(2), image_size, heatmap_size, sigma)
    assert target.dtype == np.float32 and weight.tolist() == [1.0, 1.0]
    # Joint 0: mu = (trunc 11.0, trunc 20.75) = (11, 20), window x 5..17, y 14..26.
    v, u = np.mgrid[0:65, 0:49]
    expected = np.exp(-((u - 10.5) ** 2 + (v - 20.25) ** 2) / 8)
    window = (u >= 5) & (u <= 17) & (v >= 14) & (v <= 26)
    np.testing.assert_allclose(target[0], np.where(window, expected, 0), rtol=1e-7, atol=0)
    # Symmetric about x = 10.5: cells 10 and 11 (and 9 and 12) are equal; the row's peak is
    # at y = 20, the cell nearest 20.25.
    np.testing.assert_array_equal(target[0, :, 10], target[0, :, 11])
    np.testing.assert_array_equal(target[0, 14:27, 9], target[0, 14:27, 12])
    assert target[0, :, 10].argmax() == 20
    assert target[0, 20, 10] == np.float32(math.exp(-(0.25 + 0.0625) / 8))
    # Joint 1 sits on a cell: peak exactly 1 there, neighbours exp(-1/8).
    assert target[1, 7, 30] == 1.0 and target[1].max() == 1.0
    assert target[1, 7, 31] == target[1, 7, 29] == target[1, 8, 30] == np.float32(math.exp(-1 / 8))


def test_udp_target_weights_follow_mmpose_window_rules():
    image_size, heatmap_size, sigma = EXACT_4
    cells = np.array([
        [-6.25, 10.0],  # mu = trunc(-5.75) = -5: window -11..1 reaches the map: weight 1
        [-7.5, 10.0],  # mu = trunc(-7.0) = -7: window ends before 0 (right = 0, not < 0)
        [-8.75, 10.0],  # mu = -8: right = -1 < 0: dropped
        [54.5, 10.0],  # mu = 55: left = 49 >= W: dropped
        [20.0, 30.0],  # invisible
    ])
    target, weight = udp_gaussian_heatmaps(cells * 4, [1, 1, 1, 1, 0], image_size,
                                           heatmap_size, sigma)
    assert weight.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert target[0, 10, 0] == np.float32(math.exp(-(6.25**2) / 8))
    assert target[0, 10, 1] == np.float32(math.exp(-(7.25**2) / 8))
    assert target[0, :, 2:].max() == 0 and target[0, 17:].max() == target[0, :4].max() == 0
    assert target[1].max() == 0  # in the map's view the window is empty, yet weight 1 (mmpose)
    assert target[2:].max() == 0


@pytest.mark.parametrize("setting", [COCO_256, COCO_384])
def test_udp_targets_match_mmpose_definition(setting):
    image_size, heatmap_size, sigma = setting
    rng = np.random.default_rng(3)
    joints = np.concatenate([rng.uniform(-30, np.array(image_size) + 30, size=(60, 2)),
                             [[0.0, 0.0], [image_size[0] - 1.0, image_size[1] - 1.0]]])
    visible = (rng.random(len(joints)) > 0.2).astype(np.float64)
    target, weight = udp_gaussian_heatmaps(joints, visible, image_size, heatmap_size, sigma)
    expected_target, expected_weight = _mmpose_udp_targets(joints, visible, image_size,
                                                           heatmap_size, sigma)
    np.testing.assert_array_equal(weight, expected_weight)
    # float64 exponentials rounded to float32; the grids differ in the last float64 bit.
    np.testing.assert_allclose(target, expected_target, rtol=2e-7, atol=1e-30)
    # The CPU path runs the batched function: bit-equal to it on a batch.
    batched, batched_weight = udp_heatmap_targets(
        torch.from_numpy(np.stack([joints, joints[::-1]])),
        torch.from_numpy(np.stack([visible, visible[::-1]])), image_size, heatmap_size, sigma)
    np.testing.assert_array_equal(batched[0].numpy(), target)
    np.testing.assert_array_equal(batched_weight[1].numpy(), weight[::-1])


def test_udp_targets_reject_bad_input():
    with pytest.raises(ValueError, match="sigma must be positive"):
        udp_gaussian_heatmaps(np.zeros((2, 2)), np.ones(2), (192, 256), (48, 64), 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        udp_gaussian_heatmaps(np.zeros((2, 2)), np.ones(2), (192, 256), (1, 64), 2.0)
    with pytest.raises(ValueError, match="expected joints"):
        udp_gaussian_heatmaps(np.zeros((2, 2)), np.ones(3), (192, 256), (48, 64), 2.0)


# --------------------------------------------------------------------------------------------
# Decoding


def _mmpose_blur(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """mmpose's gaussian_blur on [K, H, W] (float64 here: OpenCV then blurs in float64)."""
    border = (kernel - 1) // 2
    blurred = np.empty_like(heatmaps)
    for k, heatmap in enumerate(heatmaps):
        padded = np.zeros((heatmap.shape[0] + 2 * border, heatmap.shape[1] + 2 * border))
        padded[border:-border, border:-border] = heatmap
        padded = cv2.GaussianBlur(padded, (kernel, kernel), 0)
        blurred[k] = padded[border:-border, border:-border] * (heatmap.max() /
                                                               padded[border:-border,
                                                                      border:-border].max())
    return blurred


def _mmpose_dark_udp(keypoints: np.ndarray, heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """mmpose's refine_keypoints_dark_udp for one instance: keypoints [K, 2], heatmaps [K, H, W]."""
    num_joints, height, width = heatmaps.shape
    logs = np.log(np.clip(_mmpose_blur(heatmaps, kernel), 1e-3, 50.0))
    padded = np.pad(logs, ((0, 0), (1, 1), (1, 1)), mode="edge").flatten()
    index = keypoints[:, 0] + 1 + (keypoints[:, 1] + 1) * (width + 2)
    index = (index + (width + 2) * (height + 2) * np.arange(num_joints)).astype(int)
    i_, ix1, iy1 = padded[index], padded[index + 1], padded[index + width + 2]
    ix1y1, ix1_y1_ = padded[index + width + 3], padded[index - width - 3]
    ix1_, iy1_ = padded[index - 1], padded[index - 2 - width]
    derivative = np.stack([0.5 * (ix1 - ix1_), 0.5 * (iy1 - iy1_)], axis=1)[:, :, None]
    dxx, dyy = ix1 - 2 * i_ + ix1_, iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    hessian = np.stack([dxx, dxy, dxy, dyy], axis=1).reshape(num_joints, 2, 2)
    hessian = np.linalg.inv(hessian + np.finfo(np.float32).eps * np.eye(2))
    return keypoints - np.einsum("imn,ink->imk", hessian, derivative)[:, :, 0]


def _random_heatmaps(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Smooth positive maps: a few Gaussian blobs plus noise, peaks anywhere (borders too)."""
    num_joints, height, width = shape
    v, u = np.mgrid[0:height, 0:width]
    maps = np.zeros(shape)
    for k in range(num_joints):
        for _ in range(3):
            x, y = rng.uniform(-2, width + 1), rng.uniform(-2, height + 1)
            spread = rng.uniform(1.5, 3.5)
            maps[k] += rng.uniform(0.2, 1) * np.exp(-((u - x) ** 2 + (v - y) ** 2)
                                                    / (2 * spread**2))
        maps[k] += rng.normal(0, 0.01, size=(height, width))
    return maps


def test_udp_blur_kernel_sizes():
    # mmpose's UDP configs: 11 at sigma 2, 17 at sigma 3; otherwise the nearest OpenCV sigma.
    assert udp_blur_kernel_size(2.0) == 11 and udp_blur_kernel_size(3.0) == 17
    assert udp_blur_kernel_size(1.0) == 5 and udp_blur_kernel_size(2.5) == 15
    assert udp_blur_kernel_size(1.25) == 7  # tie between 5 (1.1) and 7 (1.4): the larger
    assert udp_blur_kernel_size(0.1) == 3
    with pytest.raises(ValueError, match="sigma must be positive"):
        udp_blur_kernel_size(0.0)


@pytest.mark.parametrize("kernel", [5, 11, 17])
def test_udp_blur_matches_mmpose_definition(kernel):
    maps = _random_heatmaps(np.random.default_rng(kernel), (4, 64, 48))
    ours = udp_gaussian_blur(torch.from_numpy(maps)[None], kernel)[0].numpy()
    np.testing.assert_allclose(ours, _mmpose_blur(maps, kernel), rtol=0, atol=1e-12)


def test_dark_udp_refinement_matches_mmpose_definition():
    rng = np.random.default_rng(7)
    maps = _random_heatmaps(rng, (17, 64, 48))
    flat = maps.reshape(17, -1).argmax(axis=1)
    peaks = np.stack([flat % 48, flat // 48], axis=1).astype(np.float64)
    assert (peaks[:, 0] == 0).any() or (peaks[:, 1] == 0).any() or (peaks[:, 0] == 47).any() \
        or (peaks[:, 1] == 63).any()  # a border peak is among them
    ours = refine_dark_udp(torch.from_numpy(maps)[None], torch.from_numpy(peaks)[None], 11)[0]
    np.testing.assert_allclose(ours.numpy(), _mmpose_dark_udp(peaks, maps, 11), rtol=0,
                               atol=1e-9)


def test_udp_decoding_matches_mmpose_back_projection():
    # UDPHeatmap.decode (cells / (W - 1, H - 1) * input size), then the top-down estimator's
    # keypoints / input size * box size + centre - box size / 2.
    rng = np.random.default_rng(11)
    maps = _random_heatmaps(rng, (17, 64, 48))
    center = np.array([[310.25, 205.5]])
    scale = np.array([[1.4, 1.7]])  # not aspect-fixed: both components are used
    keypoints, maxvals = decode_heatmaps(torch.from_numpy(maps)[None], torch.from_numpy(center),
                                         torch.from_numpy(scale), post_process="udp", sigma=2.0)
    flat = maps.reshape(17, -1).argmax(axis=1)
    peaks = np.stack([flat % 48, flat // 48], axis=1).astype(np.float64)
    cells = _mmpose_dark_udp(peaks, maps, 11)
    input_size = np.array([192.0, 256.0])
    in_input = cells / np.array([47.0, 63.0]) * input_size
    box = scale[0] * 200
    expected = in_input / input_size * box + center[0] - 0.5 * box
    np.testing.assert_allclose(keypoints[0].numpy(), expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(maxvals[0].numpy(), maps.max(axis=(1, 2)))


def _round_trip_cells(setting, codec: str) -> np.ndarray:
    """Encode hand-picked keypoints with ``codec``'s crop and targets, decode with its decoding;
    the errors [N, 2] (x, y) in heatmap cells of that codec."""
    image_size, heatmap_size, sigma = setting
    heatmap_width, heatmap_height = heatmap_size
    # Heatmap positions on and between cells, kept 8 cells from the borders.
    grid = np.array([0.0, 0.1, 0.25, 0.33, 0.5, 0.67, 0.75, 0.9])
    cells = np.stack([8 + grid * 3.7 + np.arange(8) * (heatmap_width - 20) / 8,
                      8 + grid[::-1] * 5.3 + np.arange(8) * (heatmap_height - 24) / 8], axis=1)
    udp_inverse = get_udp_affine_transform(CENTER, SCALE, 0.0, image_size, inverse=True)
    crop = cells * (np.array(image_size) - 1) / (np.array(heatmap_size) - 1)
    keypoints = affine_transform_points(crop, udp_inverse)  # image pixels
    matrix = crop_affine_transform(codec, CENTER, SCALE, 0.0, image_size)
    encode = udp_gaussian_heatmaps if codec == "udp" else gaussian_heatmaps
    target, _ = encode(affine_transform_points(keypoints, matrix), np.ones(len(keypoints)),
                       image_size, heatmap_size, sigma)
    post_process = "udp" if codec == "udp" else "quarter_offset"
    decoded, _ = decode_heatmaps(torch.from_numpy(target)[None].double(),
                                 torch.from_numpy(CENTER[None]), torch.from_numpy(SCALE[None]),
                                 post_process=post_process, sigma=sigma)
    if codec == "udp":
        pixels_per_cell = SCALE * 200 / (np.array(heatmap_size) - 1)
    else:  # the official crop: scale[0] only (P1), heatmap_width cells across the box
        pixels_per_cell = SCALE[0] * 200 / heatmap_width
    return (decoded[0].numpy() - keypoints) / pixels_per_cell


@pytest.mark.parametrize("setting", [COCO_256, COCO_384])
def test_udp_round_trip_recovers_keypoints_within_005_cells(setting):
    errors = np.abs(_round_trip_cells(setting, "udp"))
    assert errors.max() < 0.05
    # The official codec on the same keypoints: integer-centred targets and the quarter
    # offset leave a quarter of a cell on average per axis, up to half a cell.
    official = np.abs(_round_trip_cells(setting, "heatmap"))
    assert 0.15 < official.mean() < 0.5 and official.max() >= 0.4


# --------------------------------------------------------------------------------------------
# Flip test


def test_udp_flip_test_is_shift_free_by_default():
    assert default_shift_heatmap("udp") is False
    assert all(default_shift_heatmap(name) for name in ("quarter_offset", "dark", "none"))
    with pytest.raises(ValueError, match="post_process='msra'"):
        default_shift_heatmap("msra")


def test_udp_crop_of_the_mirrored_image_is_the_mirrored_crop():
    # Mirroring the image (x -> W - 1 - x, centre likewise) and then cropping equals cropping
    # and then mirroring the crop (x -> w - 1 - x): the flip test's input flip is exact, so no
    # shift is needed. The official crop is off by one crop pixel there (why P5 shifts).
    image_width, crop_size = 640, (192, 256)
    mirror_crop = horizontal_flip_matrix(crop_size[0])
    flipped_center = np.array([image_width - 1 - CENTER[0], CENTER[1]])
    for rotation in (0.0, 25.0):
        direct = compose_affine(mirror_crop,
                                get_udp_affine_transform(CENTER, SCALE, rotation, crop_size))
        via_mirror = compose_affine(
            get_udp_affine_transform(flipped_center, SCALE, -rotation, crop_size),
            horizontal_flip_matrix(image_width))
        np.testing.assert_allclose(via_mirror, direct, rtol=0, atol=1e-9)
    official = compose_affine(get_affine_transform(flipped_center, SCALE, 0.0, crop_size),
                              horizontal_flip_matrix(image_width))
    official_direct = compose_affine(mirror_crop, get_affine_transform(CENTER, SCALE, 0.0,
                                                                       crop_size))
    np.testing.assert_allclose(official - official_direct, [[0, 0, 1], [0, 0, 0]], atol=1e-4)


def test_udp_flip_test_is_symmetric_without_the_shift():
    # The targets of mirrored joints, flipped back, are the targets: averaging them with the
    # shift-free flip test leaves the decoded keypoints where they are; the official shift
    # would move them by a cell's fraction.
    image_size, heatmap_size, sigma = COCO_256
    rng = np.random.default_rng(5)
    joints = rng.uniform([40, 40], [150, 215], size=(17, 2))
    pairs = COCO_KEYPOINTS.flip_pairs
    permutation = list(range(17))
    for left, right in pairs:
        permutation[left], permutation[right] = right, left
    mirrored = joints[permutation].copy()
    mirrored[:, 0] = image_size[0] - 1 - mirrored[:, 0]
    target, _ = udp_gaussian_heatmaps(joints, np.ones(17), image_size, heatmap_size, sigma)
    target_mirrored, _ = udp_gaussian_heatmaps(mirrored, np.ones(17), image_size,
                                               heatmap_size, sigma)
    target = torch.from_numpy(target)[None]
    target_mirrored = torch.from_numpy(target_mirrored)[None]
    torch.testing.assert_close(flip_back(target_mirrored, pairs), target, rtol=0, atol=1e-7)
    averaged = flip_test_average(target, target_mirrored, pairs,
                                 shift_heatmap=default_shift_heatmap("udp"))
    center, scale = torch.from_numpy(CENTER[None]), torch.from_numpy(SCALE[None])
    alone, _ = decode_heatmaps(target.double(), center, scale, "udp", sigma=sigma)
    both, _ = decode_heatmaps(averaged.double(), center, scale, "udp", sigma=sigma)
    torch.testing.assert_close(both, alone, rtol=0, atol=1e-5)
    shifted = flip_test_average(target, target_mirrored, pairs, shift_heatmap=True)
    moved, _ = decode_heatmaps(shifted.double(), center, scale, "udp", sigma=sigma)
    pixels_per_cell = SCALE[0] * 200 / (heatmap_size[0] - 1)
    assert ((moved - alone)[0, :, 0] / pixels_per_cell).min() > 0.3


# --------------------------------------------------------------------------------------------
# Datasets


@pytest.fixture(scope="module")
def coco_root(coco_sample_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    (root / "val2017").mkdir()
    (root / "annotations").mkdir()
    for image in coco_sample_dir.glob("*.jpg"):
        shutil.copyfile(image, root / "val2017" / image.name)
    shutil.copyfile(coco_sample_dir / "test_coco.json",
                    root / "annotations" / "person_keypoints_val2017.json")
    return root


def test_coco_udp_items_use_the_udp_crop_and_targets(coco_root):
    dataset = CocoKeypoints(coco_root, "val2017", codec="udp")
    official = CocoKeypoints(coco_root, "val2017")
    for index in range(len(dataset)):
        item, record = dataset[index], dataset.records[index]
        matrix = get_udp_affine_transform(record["center"], record["scale"], 0.0, (192, 256))
        labelled = record["visible"] > 0
        np.testing.assert_allclose(item["joints"][labelled, :2].numpy(),
                                   affine_transform_points(record["joints"][labelled], matrix),
                                   rtol=0, atol=1e-4)  # float32 joints
        target, weight = udp_gaussian_heatmaps(
            affine_transform_points(np.where(labelled[:, None], record["joints"], 0), matrix),
            record["visible"], (192, 256), (48, 64), 2.0)
        np.testing.assert_array_equal(item["target"].numpy(), target * labelled[:, None, None])
        np.testing.assert_array_equal(item["target_weight"].numpy(), weight)
        assert not torch.equal(item["image"], official[index]["image"])
    with pytest.raises(ValueError, match="codec='msra' is not known"):
        CocoKeypoints(coco_root, "val2017", codec="msra")


def test_udp_device_path_equals_cpu_path(coco_root):
    cpu = CocoKeypoints(coco_root, "val2017", train=True, seed=4, codec="udp")
    device = CocoKeypoints(coco_root, "val2017", train=True, seed=4, codec="udp",
                           device_augmentation=True)
    transform = device.batch_transform()
    assert transform.codec == "udp"
    for epoch in range(2):
        cpu.set_epoch(epoch)
        device.set_epoch(epoch)
        expected = collate_skip_none([cpu[i] for i in range(len(cpu))])
        batch = transform(collate_skip_none([device[i] for i in range(len(device))]))
        # Crops up to interpolation (as for the official codec), targets bit-equal.
        level = 1 / 255 / 0.225
        assert ((batch["image"] - expected["image"]).abs() / level).max() < 2.01
        torch.testing.assert_close(batch["target"], expected["target"], rtol=0, atol=0)
        torch.testing.assert_close(batch["target_weight"], expected["target_weight"], rtol=0,
                                   atol=0)
    # The official codec's device targets differ from UDP's on the same joints.
    official, _ = heatmap_targets(batch["crop_joints"], batch["joints"][..., 2], (192, 256),
                                  (48, 64), 2.0)
    assert not torch.equal(official, batch["target"])


def test_mpii_udp_items_use_the_udp_crop(mpii_sample_dir, tmp_path):
    root = tmp_path / "mpii"
    (root / "annot").mkdir(parents=True)
    (root / "images").mkdir()
    annotations = json.loads((mpii_sample_dir / "test_mpii.json").read_text())
    (root / "annot" / "valid.json").write_text(json.dumps(annotations))
    for image in mpii_sample_dir.glob("*.jpg"):
        shutil.copy(image, root / "images" / image.name)
    dataset = MpiiKeypoints(root, "valid", codec="udp")
    item, record = dataset[0], dataset.records[0]
    matrix = get_udp_affine_transform(record["center"], record["scale"], 0.0, (256, 256))
    labelled = record["visible"] > 0
    np.testing.assert_allclose(item["joints"][labelled, :2].numpy(),
                               affine_transform_points(record["joints"][labelled], matrix),
                               rtol=0, atol=1e-4)
    assert dataset.batch_transform() is None and dataset.codec == "udp"
