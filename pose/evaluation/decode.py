"""Heatmap decoding and the flip test, exactly as the official HRNet test code does them.

Besides the official quarter-offset refinement, decoding offers DARK's distribution-aware
refinement (Zhang et al., CVPR 2020) as an option, and the decoding of the UDP codec (Huang et
al., CVPR 2020, as mmpose's ``UDPHeatmap``): DARK-UDP refinement, then the inverse UDP warp.

All functions are batched torch code that runs on CPU and CUDA tensors alike. Heatmap coordinates
are 0-based heatmap cells with x along the width; image coordinates are 0-based pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pose.data.keypoints import flip_permutation

# Cells by which post-processing moves a peak towards its higher neighbour.
QUARTER_OFFSET = 0.25
# Sub-cell refinements of the argmax that decode_heatmaps offers: the official quarter offset,
# DARK's Taylor step on the modulated log-heatmap, the UDP codec's decoding (DARK-UDP, then the
# inverse UDP warp), or none.
POST_PROCESSES = ("quarter_offset", "dark", "udp", "none")
# DARK-UDP's clip of the modulated heatmap before the log (mmpose's refine_keypoints_dark_udp).
UDP_LOG_CLIP = (1e-3, 50.0)


@dataclass(frozen=True)
class DecodeSettings:
    """How heatmaps become keypoints (the ``eval.*`` keys that act before scoring).

    flip_pairs: (left, right) joint ids of the keypoint set, for the flip test.
    flip_test: average the heatmaps of each crop and of its mirror image.
    shift_heatmap: shift the flipped heatmaps one column right (official flip test; off for
        "udp", :func:`default_shift_heatmap`).
    post_process: "quarter_offset" (official), "dark", "udp" or "none"
        (:func:`decode_heatmaps`).
    sigma: the training targets' Gaussian sigma, heatmap cells ("dark" and "udp" use it).
    """

    flip_pairs: tuple[tuple[int, int], ...]
    flip_test: bool = True
    shift_heatmap: bool = True
    post_process: str = "quarter_offset"
    sigma: float = 2.0


def _check_heatmaps(heatmaps: torch.Tensor, name: str = "heatmaps") -> None:
    if heatmaps.dim() != 4:
        raise ValueError(f"{name} must have shape [N, K, H, W], got {tuple(heatmaps.shape)}")


def flip_back(heatmaps: torch.Tensor, flip_pairs: Sequence[Sequence[int]]) -> torch.Tensor:
    """Undo a horizontal flip of the input on the network's output.

    Mirrors the heatmaps along W and swaps the left/right joint channels.

    Args:
        heatmaps: [N, K, H, W] heatmaps predicted for horizontally flipped inputs.
        flip_pairs: (left, right) joint-id pairs, e.g. ``COCO_KEYPOINTS.flip_pairs``.

    Returns:
        [N, K, H, W] heatmaps in the frame and joint order of the unflipped input.
    """
    _check_heatmaps(heatmaps)
    permutation = flip_permutation(heatmaps.shape[1], flip_pairs)
    index = torch.tensor(permutation, device=heatmaps.device)
    return heatmaps.flip(3).index_select(1, index)


def flip_test_average(
    output: torch.Tensor,
    output_on_flipped_input: torch.Tensor,
    flip_pairs: Sequence[Sequence[int]],
    shift_heatmap: bool = True,
) -> torch.Tensor:
    """Average the heatmaps of an input and of its mirror image (official flip test, quirk P5).

    The flipped output is flipped back and, with ``shift_heatmap``, moved one heatmap column to the
    right (column 0 keeps its own value), because mirroring the input maps pixel x to W-1-x while
    the 4x-strided heatmap grid is not symmetric under that mirror.

    Args:
        output: [N, K, H, W] heatmaps for the original input.
        output_on_flipped_input: [N, K, H, W] heatmaps for ``input.flip(3)``.
        flip_pairs: (left, right) joint-id pairs.
        shift_heatmap: apply the one-column shift (the official test configs do; the UDP
            codec's flip test does not: :func:`default_shift_heatmap` gives the choice per
            decoding).

    Returns:
        [N, K, H, W] mean of the two.
    """
    _check_heatmaps(output, "output")
    if output.shape != output_on_flipped_input.shape:
        raise ValueError(
            f"output {tuple(output.shape)} and output_on_flipped_input "
            f"{tuple(output_on_flipped_input.shape)} must have the same shape"
        )
    flipped_back = flip_back(output_on_flipped_input, flip_pairs)
    if shift_heatmap:
        flipped_back = torch.cat([flipped_back[..., :1], flipped_back[..., :-1]], dim=3)
    return (output + flipped_back) * 0.5


def default_shift_heatmap(post_process: str) -> bool:
    """Whether the flip test shifts the flipped-back heatmaps one column for ``post_process``.

    The official codec's mirror maps crop pixel x to W-1-x while its heatmap grid is not
    symmetric under that mirror, so its flip test shifts (quirk P5, official configs). The UDP
    codec's grid is symmetric (crop pixel x <-> heatmap cell x (w-1) / (W-1)): its flip test
    averages without the shift (mmpose's UDP configs: ``shift_heatmap=False``). So: False for
    "udp", True for the other decodings.
    """
    if post_process not in POST_PROCESSES:
        raise ValueError(f"post_process={post_process!r} is not known: expected one of "
                         f"{', '.join(POST_PROCESSES)}")
    return post_process != "udp"


def heatmap_maxima(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-joint argmax of the heatmaps (official ``get_max_preds``).

    Ties go to the first maximum in row-major order. Joints whose maximum is <= 0 get (0, 0).

    Args:
        heatmaps: [N, K, H, W].

    Returns:
        coords: [N, K, 2] integer-valued heatmap cells (x, y), in the heatmaps' dtype.
        maxvals: [N, K] peak values.
    """
    _check_heatmaps(heatmaps)
    batch_size, num_joints, _, width = heatmaps.shape
    flat = heatmaps.reshape(batch_size, num_joints, -1)
    maxvals = flat.amax(dim=2)
    # argmax returns the first maximal index, as numpy.argmax (and so the official code) does.
    flat_index = flat.argmax(dim=2)
    coords = torch.stack([flat_index % width, torch.div(flat_index, width, rounding_mode="floor")],
                         dim=2).to(heatmaps.dtype)
    coords = coords * (maxvals > 0).unsqueeze(2).to(heatmaps.dtype)
    return coords, maxvals


def refine_quarter_offset(heatmaps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Shift integer peak coordinates a quarter cell towards the higher neighbour (quirk P4).

    Only peaks strictly inside ``1 < x < W-1`` and ``1 < y < H-1`` are shifted; a zero
    neighbour difference gives no shift.

    Args:
        heatmaps: [N, K, H, W].
        coords: [N, K, 2] integer-valued peak cells (x, y) from :func:`heatmap_maxima`.

    Returns:
        [N, K, 2] refined coordinates in heatmap cells.
    """
    _check_heatmaps(heatmaps)
    batch_size, num_joints, height, width = heatmaps.shape
    peak_x = coords[..., 0].round().long()
    peak_y = coords[..., 1].round().long()
    inside = (peak_x > 1) & (peak_x < width - 1) & (peak_y > 1) & (peak_y < height - 1)
    # Clamp so that the gathers stay in range; the border peaks are masked out afterwards.
    x = peak_x.clamp(1, max(width - 2, 1))
    y = peak_y.clamp(1, max(height - 2, 1))
    flat = heatmaps.reshape(batch_size, num_joints, -1)

    def value_at(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        index = (ys.clamp(0, height - 1) * width + xs.clamp(0, width - 1)).unsqueeze(2)
        return flat.gather(2, index).squeeze(2)

    diff_x = value_at(y, x + 1) - value_at(y, x - 1)
    diff_y = value_at(y + 1, x) - value_at(y - 1, x)
    offset = torch.stack([diff_x.sign(), diff_y.sign()], dim=2) * QUARTER_OFFSET
    return coords + offset.to(coords.dtype) * inside.unsqueeze(2).to(coords.dtype)


def gaussian_blur(heatmaps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur every heatmap with a normalised Gaussian of ``sigma`` cells (radius ceil(3 sigma)).

    Zero padding outside the map, as DARK's modulation step does.

    Args:
        heatmaps: [N, K, H, W].
        sigma: standard deviation in heatmap cells (> 0).

    Returns:
        [N, K, H, W] blurred heatmaps.
    """
    _check_heatmaps(heatmaps)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, device=heatmaps.device, dtype=heatmaps.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    return _separable_blur(heatmaps, kernel)


def _separable_blur(heatmaps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """[N, K, H, W] maps convolved with the odd 1-D ``kernel`` along W, then H; zero padding."""
    radius = kernel.shape[0] // 2
    batch_size, num_joints, height, width = heatmaps.shape
    maps = heatmaps.reshape(batch_size * num_joints, 1, height, width)
    maps = F.conv2d(F.pad(maps, (radius, radius, 0, 0)), kernel.view(1, 1, 1, -1))
    maps = F.conv2d(F.pad(maps, (0, 0, radius, radius)), kernel.view(1, 1, -1, 1))
    return maps.reshape(batch_size, num_joints, height, width)


def refine_dark(heatmaps: torch.Tensor, coords: torch.Tensor, sigma: float) -> torch.Tensor:
    """DARK's sub-cell refinement of integer peaks (Zhang et al., CVPR 2020).

    The heatmaps are modulated (blurred with the training targets' Gaussian, rescaled to their
    original maximum), their logarithm is taken, and one Newton step on that log-heatmap moves each
    peak to the maximum of the fitted quadratic: ``coords - Hessian^-1 gradient``, with central
    differences (first derivatives one cell apart, second derivatives two cells apart). As in DARK,
    peaks closer than two cells to the border and peaks with a singular Hessian keep their
    integer position.

    Args:
        heatmaps: [N, K, H, W].
        coords: [N, K, 2] integer-valued peak cells (x, y) from :func:`heatmap_maxima`.
        sigma: the Gaussian sigma of the training targets, heatmap cells.

    Returns:
        [N, K, 2] refined coordinates in heatmap cells, in ``coords``' dtype.
    """
    _check_heatmaps(heatmaps)
    batch_size, num_joints, height, width = heatmaps.shape
    maps = heatmaps.to(torch.float64)
    peak = maps.amax(dim=(2, 3), keepdim=True)
    blurred = gaussian_blur(maps, sigma)
    blurred = blurred * (peak / blurred.amax(dim=(2, 3), keepdim=True).clamp(min=1e-12))
    log_maps = blurred.clamp(min=1e-10).log().reshape(batch_size, num_joints, -1)

    peak_x = coords[..., 0].round().long()
    peak_y = coords[..., 1].round().long()
    inside = (peak_x > 1) & (peak_x < width - 2) & (peak_y > 1) & (peak_y < height - 2)

    def value_at(step_y: int, step_x: int) -> torch.Tensor:
        # Clamped so that the gathers stay in range; border peaks are masked out afterwards.
        ys = (peak_y + step_y).clamp(0, height - 1)
        xs = (peak_x + step_x).clamp(0, width - 1)
        return log_maps.gather(2, (ys * width + xs).unsqueeze(2)).squeeze(2)

    centre = value_at(0, 0)
    grad_x = 0.5 * (value_at(0, 1) - value_at(0, -1))
    grad_y = 0.5 * (value_at(1, 0) - value_at(-1, 0))
    hess_xx = 0.25 * (value_at(0, 2) - 2 * centre + value_at(0, -2))
    hess_yy = 0.25 * (value_at(2, 0) - 2 * centre + value_at(-2, 0))
    hess_xy = 0.25 * (value_at(1, 1) - value_at(-1, 1) - value_at(1, -1) + value_at(-1, -1))
    determinant = hess_xx * hess_yy - hess_xy * hess_xy
    refine = inside & (determinant != 0)
    determinant = torch.where(refine, determinant, torch.ones_like(determinant))
    # -H^-1 g for the 2x2 Hessian H = [[xx, xy], [xy, yy]].
    offset_x = -(hess_yy * grad_x - hess_xy * grad_y) / determinant
    offset_y = -(hess_xx * grad_y - hess_xy * grad_x) / determinant
    offset = torch.stack([offset_x, offset_y], dim=2) * refine.unsqueeze(2)
    return coords + offset.to(coords.dtype)


def _opencv_sigma(kernel_size: int) -> float:
    """The sigma OpenCV derives for a Gaussian kernel of ``kernel_size`` when given sigma 0."""
    return 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8


def udp_blur_kernel_size(sigma: float) -> int:
    """The size of DARK-UDP's blur kernel for targets of ``sigma`` heatmap cells.

    mmpose's UDP configs set 11 at sigma 2 and 17 at sigma 3; for any sigma this is the odd size
    k >= 3 whose OpenCV-derived sigma, 0.3 ((k - 1) / 2 - 1) + 0.8, is nearest ``sigma`` (11 and
    17 for those two; ties, at sigma = 0.35 + 0.15 k for even k, go to the larger kernel).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    nearest = round((sigma - 0.35) / 0.15)  # 0.15 k + 0.35 is the OpenCV sigma of size k
    candidates = [size for size in (nearest - 1, nearest, nearest + 1) if size % 2 and size >= 3]
    # Rounded, so that a tie is not decided by the last bit of the arithmetic.
    return min(candidates or [3],
               key=lambda size: (round(abs(_opencv_sigma(size) - sigma), 9), -size))


def udp_gaussian_blur(heatmaps: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """DARK-UDP's modulation (mmpose's ``gaussian_blur``): each map zero-padded and blurred with
    OpenCV's Gaussian kernel of ``kernel_size`` at sigma 0, then rescaled to its own maximum.

    The kernel is ``cv2.getGaussianKernel(kernel_size, 0)`` (sigma derived from the size, see
    :func:`udp_blur_kernel_size`), applied separably in the heatmaps' dtype: equal to mmpose's
    float32 ``cv2.GaussianBlur`` up to rounding. A map whose blur has maximum 0 stays as blurred.

    Args:
        heatmaps: [N, K, H, W]. kernel_size: odd, >= 1.

    Returns:
        [N, K, H, W] modulated heatmaps.
    """
    _check_heatmaps(heatmaps)
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    kernel = np.asarray(cv2.getGaussianKernel(kernel_size, 0), dtype=np.float64)[:, 0]
    kernel = torch.from_numpy(kernel).to(device=heatmaps.device, dtype=heatmaps.dtype)
    blurred = _separable_blur(heatmaps, kernel)
    original_max = heatmaps.amax(dim=(2, 3), keepdim=True)
    blurred_max = blurred.amax(dim=(2, 3), keepdim=True)
    factor = torch.where(blurred_max != 0, original_max / blurred_max,
                         torch.ones_like(blurred_max))
    return blurred * factor


def refine_dark_udp(heatmaps: torch.Tensor, coords: torch.Tensor,
                    kernel_size: int) -> torch.Tensor:
    """DARK-UDP's sub-cell refinement of integer peaks (mmpose's ``refine_keypoints_dark_udp``).

    The heatmaps are modulated (:func:`udp_gaussian_blur`), clipped to [1e-3, 50] and logged;
    one Newton step on that log-heatmap moves each peak by ``-(Hessian + eps I)^-1 gradient``
    (eps: float32's machine epsilon), with the derivatives at one-cell steps on the log-map
    padded by its edge values: gradient (f(x+1) - f(x-1)) / 2, f_xx = f(x+1) - 2 f(x) + f(x-1),
    f_xy = (f(x+1,y+1) - f(x+1,y) - f(x,y+1) + 2 f(x,y) - f(x-1,y) - f(x,y-1) + f(x-1,y-1)) / 2.
    Unlike :func:`refine_dark`, peaks on the border are refined too. Computed in float64; a peak
    whose shifted Hessian is singular keeps its integer position.

    Args:
        heatmaps: [N, K, H, W].
        coords: [N, K, 2] integer-valued peak cells (x, y) from :func:`heatmap_maxima`.
        kernel_size: the modulation's blur kernel size (:func:`udp_blur_kernel_size`).

    Returns:
        [N, K, 2] refined coordinates in heatmap cells, in ``coords``' dtype.
    """
    _check_heatmaps(heatmaps)
    batch_size, num_joints, height, width = heatmaps.shape
    log_maps = udp_gaussian_blur(heatmaps.to(torch.float64), kernel_size)
    log_maps = log_maps.clamp(*UDP_LOG_CLIP).log()
    padded = F.pad(log_maps, (1, 1, 1, 1), mode="replicate").reshape(batch_size, num_joints, -1)
    # Positions in the padded map (clamped, so that out-of-range input gathers stay in range).
    peak_x = coords[..., 0].round().long().clamp(0, width - 1) + 1
    peak_y = coords[..., 1].round().long().clamp(0, height - 1) + 1

    def value_at(step_y: int, step_x: int) -> torch.Tensor:
        index = (peak_y + step_y) * (width + 2) + peak_x + step_x
        return padded.gather(2, index.unsqueeze(2)).squeeze(2)

    centre, right, left = value_at(0, 0), value_at(0, 1), value_at(0, -1)
    below, above = value_at(1, 0), value_at(-1, 0)
    grad_x, grad_y = 0.5 * (right - left), 0.5 * (below - above)
    hess_xx = right - 2 * centre + left + np.finfo(np.float32).eps
    hess_yy = below - 2 * centre + above + np.finfo(np.float32).eps
    hess_xy = 0.5 * (value_at(1, 1) - right - below + 2 * centre - left - above
                     + value_at(-1, -1))
    determinant = hess_xx * hess_yy - hess_xy * hess_xy
    refine = determinant != 0
    determinant = torch.where(refine, determinant, torch.ones_like(determinant))
    offset_x = -(hess_yy * grad_x - hess_xy * grad_y) / determinant
    offset_y = -(hess_xx * grad_y - hess_xy * grad_x) / determinant
    offset = torch.stack([offset_x, offset_y], dim=2) * refine.unsqueeze(2)
    return coords + offset.to(coords.dtype)


def _box_tensors(coords: torch.Tensor, center: torch.Tensor,
                 scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``center`` and ``scale`` as float64 [N, 2] tensors on ``coords``' device (N checked)."""
    # Lists go straight to float64: torch.as_tensor would round Python floats to float32.
    center = torch.as_tensor(center, dtype=None if torch.is_tensor(center) else torch.float64)
    scale = torch.as_tensor(scale, dtype=None if torch.is_tensor(scale) else torch.float64)
    center = center.to(device=coords.device, dtype=torch.float64)
    scale = scale.to(device=coords.device, dtype=torch.float64)
    if center.shape != (coords.shape[0], 2) or scale.shape != (coords.shape[0], 2):
        raise ValueError(
            f"center and scale must have shape [{coords.shape[0]}, 2], "
            f"got {tuple(center.shape)} and {tuple(scale.shape)}"
        )
    return center, scale


def udp_heatmap_to_image_coords(
    coords: torch.Tensor,
    center: torch.Tensor,
    scale: torch.Tensor,
    heatmap_size: tuple[int, int],
    pixel_std: float = 200.0,
) -> torch.Tensor:
    """Map heatmap cells back to image pixels through the exact inverse of the UDP warp.

    Cell u maps to crop pixel u (w - 1) / (W - 1), and the crop back to the image by the
    inverse of :func:`pose.data.transforms.get_udp_affine_transform` at rotation 0, each axis
    with its own scale: x = center_x + (u / (W - 1) - 0.5) scale_x pixel_std (the crop size
    cancels). Computed in float64.

    Args:
        coords: [N, K, 2] heatmap coordinates (x, y) in cells.
        center: [N, 2] box centres in image pixels.
        scale: [N, 2] box sizes / pixel_std (both components are used).
        heatmap_size: (width, height) of the heatmap in cells, both > 1.
        pixel_std: the scale unit in pixels.

    Returns:
        [N, K, 2] float64 image coordinates in pixels.
    """
    heatmap_width, heatmap_height = heatmap_size
    if heatmap_width < 2 or heatmap_height < 2:
        raise ValueError(f"UDP needs heatmaps of at least 2x2 cells, got {heatmap_size}")
    coords = coords.to(torch.float64)
    center, scale = _box_tensors(coords, center, scale)
    last_cell = torch.tensor([heatmap_width - 1, heatmap_height - 1], dtype=torch.float64,
                             device=coords.device)
    box = scale * pixel_std  # [N, 2] (width, height), pixels
    return center[:, None, :] + (coords / last_cell - 0.5) * box[:, None, :]


def heatmap_to_image_coords(
    coords: torch.Tensor,
    center: torch.Tensor,
    scale: torch.Tensor,
    heatmap_size: tuple[int, int],
    pixel_std: float = 200.0,
) -> torch.Tensor:
    """Map heatmap cells back to image pixels (the official ``transform_preds``, rotation 0).

    The official crop transform is a similarity built from ``scale[0]`` only (quirk P1): the box
    width ``scale[0] * pixel_std`` spans the heatmap width and the height follows with the same
    factor; ``scale[1]`` is ignored. Computed in float64.

    Args:
        coords: [N, K, 2] heatmap coordinates (x, y) in cells.
        center: [N, 2] box centres in image pixels.
        scale: [N, 2] box sizes / pixel_std.
        heatmap_size: (width, height) of the heatmap in cells.
        pixel_std: the scale unit in pixels.

    Returns:
        [N, K, 2] float64 image coordinates in pixels.
    """
    heatmap_width, heatmap_height = heatmap_size
    coords = coords.to(torch.float64)
    center, scale = _box_tensors(coords, center, scale)
    pixels_per_cell = scale[:, 0] * pixel_std / heatmap_width  # [N]
    origin_x = center[:, 0] - scale[:, 0] * pixel_std * 0.5
    origin_y = center[:, 1] - heatmap_height * pixels_per_cell * 0.5
    image_x = coords[..., 0] * pixels_per_cell[:, None] + origin_x[:, None]
    image_y = coords[..., 1] * pixels_per_cell[:, None] + origin_y[:, None]
    return torch.stack([image_x, image_y], dim=2)


def decode_heatmaps(
    heatmaps: torch.Tensor,
    center: torch.Tensor,
    scale: torch.Tensor,
    post_process: str = "quarter_offset",
    pixel_std: float = 200.0,
    sigma: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps to image keypoints (official ``get_final_preds``).

    Argmax, a sub-cell refinement (the official quarter offset, quirk P4, by default), then the
    inverse crop transform at rotation 0 (quirk P1). With "udp" (the UDP codec's decoding, as
    mmpose's ``UDPHeatmap``): argmax, :func:`refine_dark_udp` with the blur
    :func:`udp_blur_kernel_size` gives for ``sigma``, then :func:`udp_heatmap_to_image_coords`;
    joints whose maximum is <= 0 keep the official (0, 0) cell.

    Args:
        heatmaps: [N, K, H, W].
        center: [N, 2] box centres in image pixels (tensor or array-like).
        scale: [N, 2] box sizes / pixel_std.
        post_process: "quarter_offset" (official ``TEST.POST_PROCESS``), "dark"
            (:func:`refine_dark`), "udp" (for the UDP codec's heatmaps) or "none" (the integer
            argmax).
        pixel_std: the scale unit in pixels.
        sigma: the training targets' Gaussian sigma in heatmap cells ("dark" and "udp" modulate
            with it).

    Returns:
        keypoints: [N, K, 2] image coordinates (x, y) in pixels, in the heatmaps' dtype
            (the official code returns float32 for float32 heatmaps).
        maxvals: [N, K] peak values.
    """
    _check_heatmaps(heatmaps)
    if post_process not in POST_PROCESSES:
        raise ValueError(f"post_process={post_process!r} is not known: expected one of "
                         f"{', '.join(POST_PROCESSES)}")
    coords, maxvals = heatmap_maxima(heatmaps)
    if post_process == "quarter_offset":
        coords = refine_quarter_offset(heatmaps, coords)
    elif post_process == "dark":
        coords = refine_dark(heatmaps, coords, sigma)
    elif post_process == "udp":
        refined = refine_dark_udp(heatmaps, coords, udp_blur_kernel_size(sigma))
        coords = torch.where(maxvals.unsqueeze(2) > 0, refined, coords)
    height, width = heatmaps.shape[2:]
    to_image = udp_heatmap_to_image_coords if post_process == "udp" else heatmap_to_image_coords
    keypoints = to_image(coords, center, scale, (width, height), pixel_std)
    return keypoints.to(heatmaps.dtype), maxvals
