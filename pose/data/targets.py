"""Gaussian heatmap targets: the official HRNet ``generate_target`` (bit-equal), DARK's and UDP's.

The codec (``pose.data.transforms.CODECS``) picks them, one function per person (the CPU loader)
and one per batch (any device): :data:`PERSON_ENCODERS` and :data:`BATCH_ENCODERS`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch


@functools.lru_cache(maxsize=8)
def _gaussian_window(sigma: float) -> np.ndarray:
    """The unnormalised Gaussian (peak 1) on a (6 sigma + 1)^2 grid, float32, as pasted.

    Built with the official float32 arithmetic, so every pasted value is bit-equal to it.
    Cached: treat the result as read-only.
    """
    radius = 3 * sigma
    size = 2 * radius + 1
    offsets = np.arange(0, size, 1, np.float32)
    middle = size // 2
    columns, rows = offsets, offsets[:, None]
    return np.exp(-((columns - middle) ** 2 + (rows - middle) ** 2) / (2 * sigma**2))


def official_peak_offset(sigma: float) -> int:
    """Cells by which the official target's peak lies before the joint's cell, per axis (0 or 1).

    The official ``generate_target`` starts its window at ``int(mu - 3 sigma)`` and puts the
    peak ``(6 sigma + 1) // 2`` cells further, i.e. ``ceil(3 sigma) - floor(3 sigma + 0.5)``
    cells before ``mu`` (away from the top and left borders): 0 for sigma 1, 1.25, 2 or 3, but 1
    when 3 sigma has a fraction below one half (sigma 0.8: peak at mu - 1). :func:`gaussian_heatmaps`
    reproduces it bit for bit; the datasets refuse such a sigma with the "heatmap" codec.
    """
    radius = 3 * sigma
    return math.ceil(radius) - math.floor(radius + 0.5)


def _subcell_gaussians(position: torch.Tensor, heatmap_width: int, heatmap_height: int,
                       sigma: float) -> torch.Tensor:
    """exp(-((u - x)^2 + (v - y)^2) / (2 sigma^2)) on every cell (u, v) of the map, float64.

    position: [..., K, 2] float64 peak positions (x, y) in heatmap cells, not rounded.
    Returns [..., K, heatmap_height, heatmap_width].
    """
    cells_x = torch.arange(heatmap_width, dtype=torch.float64, device=position.device)
    cells_y = torch.arange(heatmap_height, dtype=torch.float64, device=position.device)
    square_x = (cells_x - position[..., :1]) ** 2
    square_y = (cells_y - position[..., 1:]) ** 2
    return torch.exp(-(square_y[..., :, None] + square_x[..., None, :]) / (2 * sigma**2))


def _check_batch(joints: torch.Tensor, visible: torch.Tensor, sigma: float) -> None:
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if joints.shape[-1] < 2 or joints.shape[:-1] != visible.shape:
        raise ValueError(
            f"expected joints [..., K, 2+] and visible [..., K], got {tuple(joints.shape)} and "
            f"{tuple(visible.shape)}"
        )


def _person_arrays(joints: np.ndarray, visible: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """One person's [K, 2+] joints and [K] (or [K, 1]) visibility as float64 / float32 tensors."""
    joints = np.asarray(joints, dtype=np.float64)
    visible = np.asarray(visible)
    if joints.ndim != 2 or joints.shape[1] < 2 or len(visible) != len(joints):
        raise ValueError(
            f"expected joints [K, 2+] and visible [K], got {joints.shape} and {visible.shape}"
        )
    visible = visible.reshape(len(joints), -1)[:, 0]
    return torch.from_numpy(joints), torch.from_numpy(visible.astype(np.float32))


def gaussian_heatmaps(
    joints: np.ndarray,
    visible: np.ndarray,
    image_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint Gaussian heatmaps and loss weights for one person.

    Args:
        joints: [K, 2+] joint positions in input-image (crop) pixels; only x, y are read.
        visible: [K] visibility (0/1); invisible joints get weight 0 and an empty map.
        image_size: input (width, height) in pixels.
        heatmap_size: heatmap (width, height) in cells; the stride is image / heatmap per axis.
        sigma: Gaussian standard deviation in heatmap cells.

    Returns:
        ``target`` float32 [K, heatmap_h, heatmap_w]: a peak-1 Gaussian on a (6 sigma + 1)^2
        window centred on the integer cell ``mu = int(x / stride + 0.5)``, clipped to the map;
        ``target_weight`` float32 [K]: the visibility, set to 0 where the window lies wholly
        outside the map.

    Two official quirks are reproduced because the published weights were trained with them:
    P2, ``int()`` truncates toward zero, so x / stride + 0.5 in (-1, 0) gives mu = 0 (not -1);
    P3, a joint is dropped only if ``mu - 3 sigma >= size`` or ``mu + 3 sigma + 1 < 0``, so
    mu = -3 sigma - 1 keeps weight 1 with an all-zero map.
    """
    joints = np.asarray(joints, dtype=np.float64)
    visible = np.asarray(visible)
    if joints.ndim != 2 or joints.shape[1] < 2 or len(visible) != len(joints):
        raise ValueError(
            f"expected joints [K, 2+] and visible [K], got {joints.shape} and {visible.shape}"
        )
    visible = visible.reshape(len(joints), -1)[:, 0]
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    heatmap_width, heatmap_height = (int(v) for v in heatmap_size)
    stride = np.asarray(image_size, dtype=np.float64) / np.array(
        [heatmap_width, heatmap_height], dtype=np.float64
    )
    radius = 3 * sigma

    # Quirk P2: truncation toward zero (Python int()), not floor. The cell arithmetic runs for
    # all joints at once; the pasting is one slice copy per joint, which is about 5x faster on
    # one core than gathering every map cell from the window (heatmap_targets, for batches).
    mu = np.trunc(joints[:, :2] / stride + 0.5)
    upper_left = np.trunc(mu - radius).astype(np.int64)  # [K, 2] (x, y)
    bottom_right = np.trunc(mu + radius + 1).astype(np.int64)
    map_size = np.array([heatmap_width, heatmap_height])
    outside = (upper_left >= map_size).any(axis=1) | (bottom_right < 0).any(axis=1)
    target_weight = visible.astype(np.float32)
    target_weight[outside] = 0

    window = _gaussian_window(float(sigma))
    map_start, map_end = np.maximum(upper_left, 0), np.minimum(bottom_right, map_size)
    window_start, window_end = map_start - upper_left, map_end - upper_left
    target = np.zeros((len(joints), heatmap_height, heatmap_width), dtype=np.float32)
    for k in np.flatnonzero(target_weight > 0.5).tolist():
        target[k, map_start[k, 1]:map_end[k, 1], map_start[k, 0]:map_end[k, 0]] = window[
            window_start[k, 1]:window_end[k, 1], window_start[k, 0]:window_end[k, 0]
        ]
    return target, target_weight


def heatmap_targets(
    joints: torch.Tensor,
    visible: torch.Tensor,
    image_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gaussian_heatmaps` for a batch of people, on any device (the device-side path).

    Args:
        joints: [..., K, 2+] joint positions in input-image (crop) pixels, float64 (a float32
            position can round to the other side of a cell boundary: pass the float64 ones).
        visible: [..., K] visibility (0/1).
        image_size, heatmap_size, sigma: as :func:`gaussian_heatmaps`.

    Returns:
        ``target`` float32 [..., K, heatmap_h, heatmap_w] and ``target_weight`` float32 [..., K],
        bit-equal to :func:`gaussian_heatmaps` person by person: the cell arithmetic is float64
        (IEEE-exact, as numpy's) and the values are gathered from the same float32 window.
    """
    _check_batch(joints, visible, sigma)
    device = joints.device
    heatmap_width, heatmap_height = (int(v) for v in heatmap_size)
    stride = torch.tensor(
        [float(image_size[0]) / heatmap_width, float(image_size[1]) / heatmap_height],
        dtype=torch.float64, device=device,
    )
    radius = 3 * sigma
    # Quirks P2 and P3, as in gaussian_heatmaps.
    mu = torch.trunc(joints[..., :2].to(torch.float64) / stride + 0.5)
    upper_left = torch.trunc(mu - radius).long()  # [..., K, 2] (x, y)
    bottom_right = torch.trunc(mu + radius + 1).long()
    outside = (
        (upper_left[..., 0] >= heatmap_width)
        | (upper_left[..., 1] >= heatmap_height)
        | (bottom_right[..., 0] < 0)
        | (bottom_right[..., 1] < 0)
    )
    target_weight = visible.to(torch.float32).masked_fill(outside, 0)

    window = torch.from_numpy(_gaussian_window(float(sigma))).to(device)
    window_size = window.shape[0]
    cells_x = torch.arange(heatmap_width, device=device) - upper_left[..., :1]  # [..., K, W]
    cells_y = torch.arange(heatmap_height, device=device) - upper_left[..., 1:]  # [..., K, H]
    extent = bottom_right - upper_left
    inside_x = (cells_x >= 0) & (cells_x < extent[..., :1]) & (cells_x < window_size)
    inside_y = (cells_y >= 0) & (cells_y < extent[..., 1:]) & (cells_y < window_size)
    values = window[
        cells_y.clamp(0, window_size - 1)[..., :, None],
        cells_x.clamp(0, window_size - 1)[..., None, :],
    ]  # [..., K, H, W]
    pasted = inside_y[..., :, None] & inside_x[..., None, :] & (target_weight > 0.5)[..., None, None]
    target = torch.where(pasted, values, torch.zeros((), dtype=torch.float32, device=device))
    return target, target_weight


def udp_heatmap_targets(
    joints: torch.Tensor,
    visible: torch.Tensor,
    image_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """UDP Gaussian targets (mmpose's ``UDPHeatmap``), for a batch of people on any device.

    A crop pixel x maps to the heatmap cell x (heatmap - 1) / (input - 1), per axis (UDP: the
    first and the last pixel centres of the crop and of the heatmap coincide). Each labelled
    joint at cell position (x, y) gets exp(-((u - x)^2 + (v - y)^2) / (2 sigma^2)) on the cells
    (u, v) of the window mmpose's ``generate_udp_gaussian_heatmaps`` paints: the (6 sigma + 1)^2
    cells around mu = trunc(position + 0.5), i.e. from trunc(mu - 3 sigma) to
    trunc(mu + 3 sigma + 1) exclusive, clipped to the map. The peak sits at the exact sub-cell
    position (mmpose computes the same values from the window's index; for a fractional 3 sigma
    near the top or left border its window is one cell off centre, ours is not).

    Args:
        joints: [..., K, 2+] joint positions in crop pixels (x, y), any float dtype.
        visible: [..., K] visibility (0/1); weight 0 and an empty map where < 0.5.
        image_size: crop (width, height) in pixels, both > 1.
        heatmap_size: heatmap (width, height) in cells, both > 1.
        sigma: Gaussian standard deviation in heatmap cells.

    Returns:
        ``target`` float32 [..., K, heatmap_h, heatmap_w] (computed in float64, then rounded)
        and ``target_weight`` float32 [..., K]: the visibility, 0 where the window lies wholly
        outside the map (mmpose's rule: left >= W, top >= H, right < 0 or bottom < 0).
    """
    _check_batch(joints, visible, sigma)
    heatmap_width, heatmap_height = (int(v) for v in heatmap_size)
    if min(heatmap_width, heatmap_height, *(int(v) for v in image_size)) < 2:
        raise ValueError(f"UDP needs image and heatmap sizes of at least 2, got {image_size} "
                         f"and {heatmap_size}")
    device = joints.device
    cells_per_pixel = torch.tensor(
        [(heatmap_width - 1) / (float(image_size[0]) - 1),
         (heatmap_height - 1) / (float(image_size[1]) - 1)], dtype=torch.float64, device=device)
    position = joints[..., :2].to(torch.float64) * cells_per_pixel  # [..., K, 2] cells
    radius = 3 * sigma
    mu = torch.trunc(position + 0.5)
    upper_left = torch.trunc(mu - radius)  # [..., K, 2] (x, y), first painted cell
    bottom_right = torch.trunc(mu + radius + 1)  # first cell past the window
    outside = (
        (upper_left[..., 0] >= heatmap_width)
        | (upper_left[..., 1] >= heatmap_height)
        | (bottom_right[..., 0] < 0)
        | (bottom_right[..., 1] < 0)
    )
    target_weight = visible.to(torch.float32).masked_fill(outside, 0)
    painted = target_weight > 0.5

    cells_x = torch.arange(heatmap_width, dtype=torch.float64, device=device)
    cells_y = torch.arange(heatmap_height, dtype=torch.float64, device=device)
    inside_x = (cells_x >= upper_left[..., :1]) & (cells_x < bottom_right[..., :1])  # [..., K, W]
    inside_y = (cells_y >= upper_left[..., 1:]) & (cells_y < bottom_right[..., 1:])  # [..., K, H]
    values = _subcell_gaussians(position, heatmap_width, heatmap_height, sigma)
    mask = inside_y[..., :, None] & inside_x[..., None, :] & painted[..., None, None]
    target = torch.where(mask, values, torch.zeros((), dtype=torch.float64, device=device))
    return target.to(torch.float32), target_weight


def udp_gaussian_heatmaps(
    joints: np.ndarray,
    visible: np.ndarray,
    image_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`udp_heatmap_targets` for one person, numpy in and out (the CPU loader's path).

    joints: [K, 2+] crop pixels; visible: [K]. Returns ``target`` float32 [K, heatmap_h,
    heatmap_w] and ``target_weight`` float32 [K], bit-equal to the batched function on the CPU
    (it runs it).
    """
    target, target_weight = udp_heatmap_targets(*_person_arrays(joints, visible), image_size,
                                                heatmap_size, sigma)
    return target.numpy(), target_weight.numpy()


def dark_heatmap_targets(
    joints: torch.Tensor,
    visible: torch.Tensor,
    image_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DARK's unbiased targets on the official grid, for a batch of people on any device.

    DARK (Zhang et al., CVPR 2020), mmpose's ``unbiased_encoding``: the official grid (crop
    pixel x is heatmap cell x / stride, as :func:`heatmap_targets` and the official decoding),
    but the Gaussian peaks at the exact sub-cell position instead of the nearest cell, and covers
    the whole map. The official rounding moves a peak by up to half a cell (2 px of the crop at
    stride 4), which no decoding can undo; with these targets DARK's refinement recovers it.

    Args:
        joints: [..., K, 2+] joint positions in crop pixels (x, y), any float dtype.
        visible: [..., K] visibility (0/1); weight 0 and an empty map where < 0.5.
        image_size: crop (width, height) in pixels.
        heatmap_size: heatmap (width, height) in cells.
        sigma: Gaussian standard deviation in heatmap cells.

    Returns:
        ``target`` float32 [..., K, heatmap_h, heatmap_w], exp(-((u - x)^2 + (v - y)^2) /
        (2 sigma^2)) at cell (u, v) for a joint at cell position (x, y) (computed in float64);
        ``target_weight`` float32 [..., K]: the visibility, 0 where the (6 sigma + 1)^2 window
        from (x - 3 sigma, y - 3 sigma) lies wholly outside the map (mmpose's rule).
    """
    _check_batch(joints, visible, sigma)
    heatmap_width, heatmap_height = (int(v) for v in heatmap_size)
    cells_per_pixel = torch.tensor(
        [heatmap_width / float(image_size[0]), heatmap_height / float(image_size[1])],
        dtype=torch.float64, device=joints.device)
    position = joints[..., :2].to(torch.float64) * cells_per_pixel  # [..., K, 2] cells
    radius = 3 * sigma
    outside = (
        (position[..., 0] - radius >= heatmap_width)
        | (position[..., 1] - radius >= heatmap_height)
        | (position[..., 0] + radius + 1 < 0)
        | (position[..., 1] + radius + 1 < 0)
    )
    target_weight = visible.to(torch.float32).masked_fill(outside, 0)
    values = _subcell_gaussians(position, heatmap_width, heatmap_height, sigma)
    target = values * (target_weight > 0.5)[..., None, None]
    return target.to(torch.float32), target_weight


def dark_gaussian_heatmaps(
    joints: np.ndarray,
    visible: np.ndarray,
    image_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dark_heatmap_targets` for one person, numpy in and out (the CPU loader's path).

    joints: [K, 2+] crop pixels; visible: [K]. Returns ``target`` float32 [K, heatmap_h,
    heatmap_w] and ``target_weight`` float32 [K], bit-equal to the batched function on the CPU
    (it runs it).
    """
    target, target_weight = dark_heatmap_targets(*_person_arrays(joints, visible), image_size,
                                                 heatmap_size, sigma)
    return target.numpy(), target_weight.numpy()


# Per codec (pose.data.transforms.CODECS): one person's numpy targets, and a batch's on a device.
PERSON_ENCODERS = {"heatmap": gaussian_heatmaps, "dark": dark_gaussian_heatmaps,
                   "udp": udp_gaussian_heatmaps}
BATCH_ENCODERS = {"heatmap": heatmap_targets, "dark": dark_heatmap_targets,
                  "udp": udp_heatmap_targets}
