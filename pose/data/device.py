"""Device-side augmentation: crop, colour, normalise and build targets for a whole batch.

With ``CocoKeypoints(..., device_augmentation=True)`` the loader workers only decode the image,
draw the augmentation and map the joints; each item carries the decoded image (uint8, padded to
a fixed canvas) and the matrix that maps it onto the crop. :class:`DeviceAugmentation` then does
the per-pixel work batched on the training device (``grid_sample``), so a GPU trainer is not
starved by a few CPU cores, and uint8 images travel to the device instead of float32 crops.

The crops equal the CPU path's (``cv2.warpAffine``) up to interpolation rounding; the targets
are bit-equal (:func:`pose.data.targets.heatmap_targets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from pose.data.targets import BATCH_ENCODERS
from pose.data.transforms import CODECS, IMAGENET_MEAN, IMAGENET_STD, adjust_colour, normalise


def warp_images(
    images: torch.Tensor, matrices: torch.Tensor, output_size: Sequence[int]
) -> torch.Tensor:
    """Batched affine crops, as ``cv2.warpAffine`` (bilinear, 0 outside the image).

    Args:
        images: [B, C, H, W] source images (any float dtype, or uint8).
        matrices: [B, 2, 3] source-pixel to crop-pixel maps (pixel centres at integers).
        output_size: crop (width, height) in pixels.

    Returns:
        float32 [B, C, out_h, out_w]. cv2 rounds the sampling positions to 1/32 pixel and the
        result to integers; this samples at exact positions and does not round.
    """
    output_width, output_height = (int(v) for v in output_size)
    batch, _, height, width = images.shape
    device = images.device
    # Crop pixel -> source pixel, in float64 as cv2 inverts the matrix.
    square = torch.zeros((batch, 3, 3), dtype=torch.float64, device=device)
    square[:, :2] = matrices.to(device, torch.float64)
    square[:, 2, 2] = 1
    inverse = torch.linalg.inv(square)[:, :2]  # [B, 2, 3]
    ys, xs = torch.meshgrid(
        torch.arange(output_height, dtype=torch.float64, device=device),
        torch.arange(output_width, dtype=torch.float64, device=device),
        indexing="ij",
    )
    crop_points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # [h, w, 3]
    source_points = torch.einsum("bij,hwj->bhwi", inverse, crop_points)  # [B, h, w, 2] (x, y)
    # align_corners=True: -1 and 1 are the centres of the first and the last pixel.
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)],
                         dtype=torch.float64, device=device)
    grid = (source_points * scale - 1).to(torch.float32)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)


class DeviceAugmentation:
    """The device-side step of a training batch: ``batch -> batch``.

    Takes a collated batch of ``CocoKeypoints(..., device_augmentation=True)`` items already on
    the device (``source_image`` uint8 [B, Hc, Wc, 3] BGR, ``crop_matrix`` [B, 2, 3],
    ``crop_joints`` float64 [B, K, 2], ``joints`` [B, K, 3], ``colour`` [B, 3]) and returns it
    with ``image`` float32 [B, 3, h, w] (RGB, ImageNet-normalised), ``target`` float32
    [B, K, hh, hw] and ``target_weight`` float32 [B, K] filled in, and ``source_image`` dropped.

    Args:
        image_size: network input (width, height) in pixels.
        heatmap_size: heatmap (width, height) in cells.
        sigma: target Gaussian standard deviation in heatmap cells.
        colour_jitter: apply the batch's ``colour`` factors (False: skip the step, which is the
            identity when no jitter is configured).
        mean, std: normalisation (ImageNet's).
        codec: the dataset's codec (``pose.data.transforms.CODECS``), which picks the targets
            (:data:`pose.data.targets.BATCH_ENCODERS`); the crop matrices come with the batch,
            so the crop follows the codec already.
    """

    def __init__(
        self,
        image_size: Sequence[int],
        heatmap_size: Sequence[int],
        sigma: float,
        colour_jitter: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        codec: str = "heatmap",
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec={codec!r} is not known: expected one of {', '.join(CODECS)}")
        self.codec = codec
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = sigma
        self.colour_jitter = colour_jitter
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        missing = {"source_image", "crop_matrix", "crop_joints", "joints"} - batch.keys()
        if missing:
            raise KeyError(
                f"DeviceAugmentation needs a batch of CocoKeypoints(device_augmentation=True) "
                f"items; this one lacks {sorted(missing)}"
            )
        batch = dict(batch)
        source = batch.pop("source_image")  # [B, Hc, Wc, 3] uint8, BGR
        rgb = source.permute(0, 3, 1, 2).flip(1)  # [B, 3, Hc, Wc], RGB
        crops = warp_images(rgb, batch["crop_matrix"], self.image_size)
        # Whole levels in [0, 255], as the uint8 crops of the CPU path.
        crops = crops.round_().clamp_(0, 255)
        if self.colour_jitter:
            crops = adjust_colour(crops, batch["colour"])
        batch["image"] = normalise(crops, self.mean, self.std)
        batch["target"], batch["target_weight"] = BATCH_ENCODERS[self.codec](
            batch["crop_joints"], batch["joints"][..., 2], self.image_size, self.heatmap_size,
            self.sigma,
        )
        return batch
