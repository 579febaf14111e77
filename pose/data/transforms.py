"""Top-down geometry and training augmentation, exact to the official HRNet pipeline.

Conventions: image coordinates are 0-based pixels, x to the right and y down. A person box is
described by a ``center`` (pixels) and a ``scale`` = box size / ``pixel_std`` (200 px) per axis,
``[sx, sy]``. Sizes are always ``(width, height)``. Rotations are in degrees, counter-clockwise
in the image as displayed (the official sign convention).

The float32/float64 mix below is deliberate: the affine matrices are bit-equal to the official
ones only if every intermediate is rounded to the same precision in the same order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch

from pose.data.keypoints import flip_permutation

PIXEL_STD = 200.0
# How keypoints become crops and targets (and back): "heatmap", the official HRNet crop and
# targets; "dark", the official crop with DARK's unbiased targets (dark_heatmap_targets);
# "udp", unbiased data processing (get_udp_affine_transform, udp_heatmap_targets).
CODECS = ("heatmap", "dark", "udp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(
    images: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB values in [0, 255], [..., 3, H, W] (any dtype) -> float32 ``(x / 255 - mean) / std``.

    The operations and their order are the official ``ToTensor`` then ``Normalize``, so the
    result is bit-equal to the official network input.
    """
    mean_tensor = torch.tensor(mean, dtype=torch.float32, device=images.device).view(3, 1, 1)
    std_tensor = torch.tensor(std, dtype=torch.float32, device=images.device).view(3, 1, 1)
    return images.float().div(255).sub(mean_tensor).div(std_tensor)


@functools.lru_cache(maxsize=4)
def _normalisation_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """[3, 256] float32: :func:`normalise` of every uint8 level, per RGB channel."""
    levels = torch.arange(256).expand(3, 1, 256)
    return normalise(levels, mean, std)[:, 0].numpy()


def normalise_bgr(
    crop: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """A uint8 BGR crop [H, W, 3] -> the float32 RGB network input [3, H, W].

    One table look-up per pixel (the 256 values of :func:`normalise` per channel): bit-equal to
    converting to RGB and calling :func:`normalise`, without the intermediate copies.
    """
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] crop, got {crop.dtype} {crop.shape}")
    table = _normalisation_table(tuple(mean), tuple(std))
    normalised = np.empty((3, *crop.shape[:2]), dtype=np.float32)
    for channel in range(3):  # RGB channel c is BGR channel 2 - c
        np.take(table[channel], crop[:, :, 2 - channel], out=normalised[channel], mode="clip")
    return normalised


def box_to_center_scale(
    box_xywh: Sequence[float] | np.ndarray,
    aspect_ratio: float,
    padding: float = 1.25,
    pixel_std: float = PIXEL_STD,
) -> tuple[np.ndarray, np.ndarray]:
    """Convert a box to the (center, scale) that the crop uses.

    Args:
        box_xywh: ``[x, y, w, h]`` in pixels (top-left corner, width, height).
        aspect_ratio: crop width / crop height (0.75 for 192x256).
        padding: the box is enlarged by this factor after the aspect fix.
        pixel_std: pixels per scale unit.

    Returns:
        ``center`` float32 [2] = box centre in pixels, ``scale`` float32 [2] = ``[w, h] / pixel_std
        * padding`` after growing the short side so that ``w / h == aspect_ratio`` (never shrinks).
    """
    aspect_ratio, pixel_std = float(aspect_ratio), float(pixel_std)
    x, y, width, height = (float(v) for v in box_xywh)
    center = np.array([x + width * 0.5, y + height * 0.5], dtype=np.float32)
    if width > aspect_ratio * height:
        height = width / aspect_ratio
    elif width < aspect_ratio * height:
        width = height * aspect_ratio
    # The official code rounds to float32 before the padding and pads in float32.
    scale = np.array([width / pixel_std, height / pixel_std], dtype=np.float32)
    # A centre x of -1 marks "no box" in the official code and is left unpadded.
    if center[0] != -1:
        scale = scale * np.float32(padding)
    return center, scale


def _third_point(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The point that makes ``first - second`` turn 90 degrees about ``second`` (float32)."""
    direction = first - second
    return second + np.array([-direction[1], direction[0]], dtype=np.float32)


def get_affine_transform(
    center: Sequence[float] | np.ndarray,
    scale: Sequence[float] | np.ndarray,
    rotation_deg: float,
    output_size: Sequence[int] | np.ndarray,
    inverse: bool = False,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """The [2, 3] float64 affine map from image pixels to crop pixels (or back if ``inverse``).

    The box of width ``scale[0] * pixel_std`` centred on ``center`` and rotated by
    ``rotation_deg`` maps onto the crop of ``output_size = (width, height)`` pixels, its width
    onto the crop width.

    Quirk P1 (reproduced): only ``scale[0]`` is used, so the map is a similarity (same zoom on
    both axes) and ``scale[1]`` is ignored. It is harmless because our boxes are always
    aspect-fixed (``box_to_center_scale`` and ``half_body_center_scale`` make
    ``scale[1] / scale[0] == output height / output width``), and it keeps the published
    weights' exact geometry.

    ``center`` and ``scale`` keep their dtype (float32 from the box helpers, float64 after the
    scale augmentation) as in the official code, which makes the matrix bit-equal to it.
    """
    center = np.asarray(center)
    scale = np.asarray(scale)
    if center.shape != (2,) or scale.shape != (2,):
        raise ValueError(
            f"center and scale must have shape [2], got {center.shape} and {scale.shape}"
        )
    output_width, output_height = (int(v) for v in output_size)
    source_width = (scale * pixel_std)[0]
    rotation_rad = np.pi * rotation_deg / 180
    sin, cos = np.sin(rotation_rad), np.cos(rotation_rad)
    # The box's "up" vector (0, -w/2), rotated.
    half_up = source_width * -0.5
    source_up = [0 * cos - half_up * sin, 0 * sin + half_up * cos]
    target_up = np.array([0, output_width * -0.5], dtype=np.float32)

    source = np.zeros((3, 2), dtype=np.float32)
    target = np.zeros((3, 2), dtype=np.float32)
    source[0] = center
    source[1] = center + np.asarray(source_up)
    target[0] = [output_width * 0.5, output_height * 0.5]
    target[1] = np.array([output_width * 0.5, output_height * 0.5]) + target_up
    source[2] = _third_point(source[0], source[1])
    target[2] = _third_point(target[0], target[1])

    if inverse:
        return cv2.getAffineTransform(target, source)
    return cv2.getAffineTransform(source, target)


def get_udp_affine_transform(
    center: Sequence[float] | np.ndarray,
    scale: Sequence[float] | np.ndarray,
    rotation_deg: float,
    output_size: Sequence[int] | np.ndarray,
    inverse: bool = False,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """UDP's [2, 3] float64 map from image pixels to crop pixels (or back if ``inverse``).

    Unbiased data processing (Huang et al., CVPR 2020; mmpose's ``get_udp_warp_matrix``): pixel
    centres sit at integers, so the box of ``scale * pixel_std`` pixels maps onto the crop's
    ``output_size - 1`` pixel spacings, each axis with its own zoom ``(size - 1) / box size``,
    and ``center`` lands on ((width - 1) / 2, (height - 1) / 2). Both scale components are used
    (P1 does not apply). The rotation turns about ``center`` with :func:`get_affine_transform`'s
    sign, so a drawn rotation means the same in both codecs (mmpose's UDP matrix turns the other
    way; its rotation draw is symmetric, so the training distribution is the same).

    Args:
        center: [2] box centre, pixels. scale: [2] box (width, height) / ``pixel_std``.
        rotation_deg: degrees. output_size: crop (width, height), pixels.

    Returns:
        [2, 3] float64: crop = M @ [x, y, 1]; with ``inverse``, its exact inverse.
    """
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    if center.shape != (2,) or scale.shape != (2,):
        raise ValueError(
            f"center and scale must have shape [2], got {center.shape} and {scale.shape}"
        )
    if not (scale > 0).all():
        raise ValueError(f"scale must be positive, got {scale.tolist()}")
    crop_size = np.array([float(v) for v in output_size])
    zoom = (crop_size - 1) / (scale * pixel_std)  # crop pixels per image pixel, per axis
    crop_center = (crop_size - 1) * 0.5
    rotation_rad = np.deg2rad(rotation_deg)
    sin, cos = np.sin(rotation_rad), np.cos(rotation_rad)
    # get_affine_transform maps the box turned by +rotation onto the upright crop: the image
    # is turned back by R(-rotation), R(a) = [[cos a, -sin a], [sin a, cos a]].
    turn_back = np.array([[cos, sin], [-sin, cos]])
    if inverse:
        linear = turn_back.T / zoom  # R(rotation) diag(1 / zoom)
        origin = center
        target = crop_center
    else:
        linear = zoom[:, None] * turn_back  # diag(zoom) R(-rotation)
        origin = crop_center
        target = center
    return np.concatenate([linear, (origin - linear @ target)[:, None]], axis=1)


def crop_affine_transform(
    codec: str,
    center: Sequence[float] | np.ndarray,
    scale: Sequence[float] | np.ndarray,
    rotation_deg: float,
    output_size: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """The [2, 3] image-to-crop map of ``codec``: "heatmap" and "dark"
    (:func:`get_affine_transform`, the official crop) or "udp" (:func:`get_udp_affine_transform`)."""
    if codec == "udp":
        return get_udp_affine_transform(center, scale, rotation_deg, output_size)
    if codec in ("heatmap", "dark"):
        return get_affine_transform(center, scale, rotation_deg, output_size)
    raise ValueError(f"codec={codec!r} is not known: expected one of {', '.join(CODECS)}")


def affine_transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a [2, 3] affine ``matrix`` to ``points`` [N, 2] (pixels); returns [N, 2] float64."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or matrix.shape != (2, 3):
        raise ValueError(
            f"expected points [N, 2] and matrix [2, 3], got {points.shape} and {matrix.shape}"
        )
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    # One [2, 3] @ [3, 1] product per point, as the official per-joint loop computes it: this
    # keeps the summation order, so results agree to the last bit on the fixtures.
    return np.matmul(matrix, homogeneous[:, :, None])[:, :, 0]


def warp_image(image: np.ndarray, matrix: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """Warp ``image`` [H, W, C] by the [2, 3] image-to-crop ``matrix`` into ``output_size``.

    Bilinear interpolation; pixels outside the image are 0 (quirk P12, reproduced: the published
    weights saw this border, which becomes (0 - mean) / std after normalisation). Returns the
    crop [out_h, out_w, C] with the image's dtype.
    """
    output_width, output_height = (int(v) for v in output_size)
    return cv2.warpAffine(
        image,
        matrix,
        (output_width, output_height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The [2, 3] float64 map that applies ``inner`` then ``outer`` (both [2, 3])."""
    outer = np.asarray(outer, dtype=np.float64)
    inner = np.asarray(inner, dtype=np.float64)
    composed = outer[:, :2] @ inner
    composed[:, 2] += outer[:, 2]
    return composed


def horizontal_flip_matrix(image_width: int) -> np.ndarray:
    """The [2, 3] map of a horizontal image flip: x' = W - 1 - x (pixels)."""
    return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0]])


def reduced_to_full_matrix(factor: int) -> np.ndarray:
    """The [2, 3] map from a pixel of an image decoded at 1 / ``factor`` to full-size pixels.

    A JPEG decoded with DCT scaling (``cv2.IMREAD_REDUCED_COLOR_<factor>``) has one pixel per
    ``factor`` x ``factor`` block of full-size pixels, centred on the block's centre:
    x = factor * x_reduced + (factor - 1) / 2.
    """
    offset = (factor - 1) / 2
    return np.array([[float(factor), 0.0, offset], [0.0, float(factor), offset]])


DECODE_REDUCTIONS = (1, 2, 4, 8)


def decode_reduction(
    scale: Sequence[float] | np.ndarray, output_width: int, pixel_std: float = PIXEL_STD
) -> int:
    """The largest JPEG decode reduction (1, 2, 4 or 8) that keeps at least one decoded pixel
    per crop pixel: the crop of ``output_width`` pixels spans ``scale[0] * pixel_std`` image
    pixels (quirk P1: the zoom is the same on both axes), so the crop is never upsampled from the
    reduced image more than from the full one."""
    image_pixels_per_crop_pixel = float(scale[0]) * pixel_std / output_width
    return max(f for f in DECODE_REDUCTIONS if f <= max(image_pixels_per_crop_pixel, 1.0))


def flip_joints(
    joints: np.ndarray,
    visible: np.ndarray,
    image_width: int,
    flip_pairs: Sequence[Sequence[int]] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror joints for a horizontally flipped image.

    Args:
        joints: [K, 2 or 3] pixels (x, y[, anything]).
        visible: [K] visibility (0/1).
        image_width: width W of the image in pixels; x' = W - 1 - x.
        flip_pairs: (left, right) joint-id pairs that swap.

    Returns:
        ``(flipped_joints, flipped_visible)``; as in the official code the flipped joints are
        multiplied by their visibility, so invisible joints become 0.
    """
    joints = np.array(joints, dtype=np.float64)
    visible = np.array(visible, dtype=np.float64)
    if joints.ndim != 2 or joints.shape[1] not in (2, 3) or visible.shape != joints.shape[:1]:
        raise ValueError(
            f"expected joints [K, 2 or 3] and visible [K], got {joints.shape} and {visible.shape}"
        )
    joints[:, 0] = image_width - joints[:, 0] - 1
    permutation = flip_permutation(len(joints), flip_pairs)
    joints, visible = joints[permutation], visible[permutation]
    return joints * visible[:, None], visible


def half_body_center_scale(
    joints: np.ndarray,
    visible: np.ndarray,
    upper_body_ids: Sequence[int],
    lower_body_ids: Sequence[int],
    aspect_ratio: float,
    upper_draw: float,
    pixel_std: float = PIXEL_STD,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The box of the upper or the lower body, for the half-body augmentation.

    Args:
        joints: [K, 2+] pixels; visible: [K] visibility.
        upper_body_ids, lower_body_ids: joint ids of each half.
        aspect_ratio: crop width / crop height.
        upper_draw: the standard-normal draw that picks the half. The upper body is chosen when
            ``upper_draw < 0.5`` (about 69% of the time: the official code compares a normal,
            not a uniform, draw with 0.5; reproduced) and it has more than 2 visible joints;
            otherwise the lower body if it has more than 2, else the upper body.

    Returns:
        ``(center, scale)`` float32 [2] each: the mean of the chosen visible joints and their
        extent, aspect-fixed, / pixel_std, x 1.5; or None when fewer than 2 joints are chosen.
    """
    # Python floats, as the official code's constants: numpy 2 then keeps float32 arithmetic.
    aspect_ratio, pixel_std = float(aspect_ratio), float(pixel_std)
    visible_mask = np.asarray(visible).reshape(len(joints), -1)[:, 0] > 0
    upper_ids, lower_ids = set(upper_body_ids), set(lower_body_ids)
    upper = [k for k in range(len(joints)) if visible_mask[k] and k in upper_ids]
    lower = [k for k in range(len(joints)) if visible_mask[k] and k in lower_ids]
    if upper_draw < 0.5 and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None

    # float32 throughout, as the official code stacks the joints as float32.
    points = np.asarray(joints, dtype=np.float32)[chosen, :2]
    center = points.mean(axis=0)
    width, height = points.max(axis=0) - points.min(axis=0)
    if width > aspect_ratio * height:
        height = width * 1.0 / aspect_ratio
    elif width < aspect_ratio * height:
        width = height * aspect_ratio
    scale = np.array([width * 1.0 / pixel_std, height * 1.0 / pixel_std], dtype=np.float32)
    return center, scale * np.float32(1.5)


class RandomSource(Protocol):
    """What the augmentation draws from; ``np.random.Generator`` satisfies it."""

    def random(self) -> float:
        """A uniform draw in [0, 1)."""
        ...

    def standard_normal(self) -> float:
        """A standard-normal draw."""
        ...


COLOUR_JITTERS = ("brightness", "contrast", "saturation")
NO_COLOUR_CHANGE = (1.0, 1.0, 1.0)


@dataclass
class AugmentationParams:
    """Training augmentation of the official recipe (COCO: 0.35, 45, 0.6, True, 0.3, 8).

    scale_factor: the scale is multiplied by clip(N(1, SF^2), 1 - SF, 1 + SF).
    rotation_factor: degrees; rotation = clip(N(0, RF^2), -2 RF, 2 RF) with ``rotation_prob``.
    flip: mirror with probability 0.5.
    half_body_prob: probability of the half-body box (<= 0 disables it), only for samples with
        more than ``half_body_min_joints`` visible joints.
    brightness, contrast, saturation: colour jitter (not in the official recipe, so 0 = off by
        default): with probability ``<kind>_prob`` the crop's brightness, contrast or saturation
        is multiplied by a factor drawn from U(1 - value, 1 + value) (see :func:`adjust_colour`).

    These fields are also the ``data.*`` config keys of the same names
    (:class:`pose.config.DataConfig` derives from this class).
    """

    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rotation_prob: float = 0.6
    flip: bool = True
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    brightness: float = 0.0
    brightness_prob: float = 0.5
    contrast: float = 0.0
    contrast_prob: float = 0.5
    saturation: float = 0.0
    saturation_prob: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.scale_factor < 1:
            raise ValueError(f"scale_factor must be in [0, 1), got {self.scale_factor}")
        if self.rotation_factor < 0:
            raise ValueError(f"rotation_factor must be >= 0, got {self.rotation_factor}")
        for name in ("rotation_prob", "brightness_prob", "contrast_prob", "saturation_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in COLOUR_JITTERS:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} (colour jitter) must be in [0, 1], got "
                                 f"{getattr(self, name)}")


@dataclass(frozen=True)
class SampleAugmentation:
    """One sample's drawn augmentation.

    ``center`` (float32 [2]) and ``scale`` ([2]; float64 once the scale factor is applied, as
    in the official code) are in the unflipped image; the flip, if ``flip``, is applied after
    them (``center[0] -> W - 1 - center[0]``). ``rotation`` is in degrees. ``colour`` holds the
    brightness, contrast and saturation factors (1: unchanged) for :func:`adjust_colour`.
    """

    center: np.ndarray
    scale: np.ndarray
    rotation: float
    flip: bool
    half_body: bool
    colour: tuple[float, float, float] = NO_COLOUR_CHANGE  # brightness, contrast, saturation


def draw_augmentation(
    joints: np.ndarray,
    visible: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    params: AugmentationParams,
    upper_body_ids: Sequence[int],
    lower_body_ids: Sequence[int],
    aspect_ratio: float,
    rng: RandomSource,
    pixel_std: float = PIXEL_STD,
) -> SampleAugmentation:
    """Draw one training sample's augmentation in the official order (quirk P11, reproduced).

    Draws, in order: ``random()`` half-body gate (only with more than
    ``params.half_body_min_joints`` visible joints), ``standard_normal()`` upper-vs-lower (only if
    the gate passed), ``standard_normal()`` scale, ``random()`` rotation gate, ``standard_normal()``
    rotation (only if the gate passed), ``random()`` flip gate (only if ``params.flip``); then,
    for each enabled colour jitter (brightness, contrast, saturation, in that order), ``random()``
    gate and, if it passed, ``random()`` for the factor. The colour draws come last, so the
    official recipe (no colour jitter) draws exactly the official sequence.

    Args:
        joints: [K, 2+] pixels; visible: [K]; center, scale: the person's box ([2] each).
        rng: the random source (``np.random.Generator``, or a replay of logged draws).
    """
    center = np.asarray(center)
    scale = np.asarray(scale)
    visible = np.asarray(visible).reshape(len(joints), -1)[:, 0]
    half_body = False
    if visible.sum() > params.half_body_min_joints and rng.random() < params.half_body_prob:
        box = half_body_center_scale(
            joints, visible, upper_body_ids, lower_body_ids, aspect_ratio,
            rng.standard_normal(), pixel_std,
        )
        if box is not None:
            center, scale = box
            half_body = True
    factor = params.scale_factor
    # np.clip returns a float64 scalar, so the scale becomes float64 (as in the official code).
    scale = scale * np.clip(rng.standard_normal() * factor + 1, 1 - factor, 1 + factor)
    rotation = 0.0
    if rng.random() <= params.rotation_prob:
        limit = params.rotation_factor * 2
        rotation = float(np.clip(rng.standard_normal() * params.rotation_factor, -limit, limit))
    flip = bool(params.flip and rng.random() <= 0.5)
    colour = list(NO_COLOUR_CHANGE)
    for position, name in enumerate(COLOUR_JITTERS):
        amount = getattr(params, name)
        if amount > 0 and rng.random() < getattr(params, f"{name}_prob"):
            colour[position] = 1.0 + amount * (2.0 * rng.random() - 1.0)
    return SampleAugmentation(
        center=np.array(center, copy=True), scale=scale, rotation=rotation, flip=flip,
        half_body=half_body, colour=(colour[0], colour[1], colour[2]),
    )


# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale.
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def adjust_colour(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Colour jitter: brightness, then contrast, then saturation, each clipped to [0, 255].

    Args:
        images: RGB [..., 3, H, W], values in [0, 255] (any dtype; uint8 crops or floats).
        factors: [..., 3] (brightness, contrast, saturation); 1 leaves an image unchanged.
            Brightness scales the values; contrast blends with the image's mean grey level;
            saturation blends each pixel with its grey level (torchvision's definitions).

    Returns:
        float32 [..., 3, H, W] rounded to whole levels in [0, 255]: the jittered crop as a uint8
        crop would hold it, so the CPU and the device path normalise the same values.
    """
    images = images.float()
    factors = factors.to(images.device, torch.float32)[..., None, None]  # [..., 3, 1, 1]
    brightness, contrast, saturation = factors[..., 0:1, :, :], factors[..., 1:2, :, :], \
        factors[..., 2:3, :, :]
    weights = torch.tensor(_LUMA_WEIGHTS, device=images.device).view(3, 1, 1)

    def grey(values: torch.Tensor) -> torch.Tensor:
        return (values * weights).sum(dim=-3, keepdim=True)

    images = (images * brightness).clamp(0, 255)
    mean_grey = grey(images).mean(dim=(-2, -1), keepdim=True)
    images = (contrast * images + (1 - contrast) * mean_grey).clamp(0, 255)
    images = (saturation * images + (1 - saturation) * grey(images)).clamp(0, 255)
    return images.round()


def flip_center_x(center: np.ndarray, image_width: int) -> np.ndarray:
    """The centre [2] of a box in the horizontally flipped image: x' = W - 1 - x (same dtype)."""
    flipped = np.array(center, copy=True)
    flipped[0] = image_width - flipped[0] - 1
    return flipped


__all__ = [
    "CODECS",
    "COLOUR_JITTERS",
    "DECODE_REDUCTIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NO_COLOUR_CHANGE",
    "PIXEL_STD",
    "AugmentationParams",
    "RandomSource",
    "SampleAugmentation",
    "adjust_colour",
    "affine_transform_points",
    "box_to_center_scale",
    "compose_affine",
    "crop_affine_transform",
    "decode_reduction",
    "draw_augmentation",
    "flip_center_x",
    "flip_joints",
    "get_affine_transform",
    "get_udp_affine_transform",
    "half_body_center_scale",
    "horizontal_flip_matrix",
    "normalise",
    "normalise_bgr",
    "reduced_to_full_matrix",
    "warp_image",
]
