"""The top-down dataset: one item per person box, cropped, augmented and paired with targets.

A dataset format (COCO, MPII, ...) subclasses :class:`TopDownDataset` and only says where its
people are: :meth:`TopDownDataset._load_records` returns one record per person box. Reading the
image, the augmentation draws, the crop and the heatmap targets are shared here, so every format
gets the official crops and targets and the same loading counters.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from pose.data.device import DeviceAugmentation
from pose.data.exif import jpeg_exif_orientation
from pose.data.keypoints import KeypointSpec
from pose.data.targets import PERSON_ENCODERS, official_peak_offset
from pose.data.transforms import (
    CODECS,
    COLOUR_JITTERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NO_COLOUR_CHANGE,
    AugmentationParams,
    RandomSource,
    adjust_colour,
    affine_transform_points,
    compose_affine,
    crop_affine_transform,
    decode_reduction,
    draw_augmentation,
    flip_center_x,
    flip_joints,
    horizontal_flip_matrix,
    normalise_bgr,
    reduced_to_full_matrix,
    warp_image,
)

# What can happen when an item's image is loaded (counted over all loader processes).
LOADING_EVENTS = ("missing_image", "corrupt_image", "exif_orientation_ignored", "size_mismatch")
# Rows of the shared loading counters: row 0 for the main process, 1 + worker id for workers.
_COUNTER_ROWS = 257
_REDUCED_READ_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


class ImageReadError(OSError):
    """An image file is missing, corrupt or not an image."""


class CorruptImageWarning(UserWarning):
    """A training image could not be read (or does not match its annotation) and its samples
    were skipped."""




class TopDownDataset(Dataset):
    """People of a keypoint dataset, one item per person box; a format subclasses it and
    implements :meth:`_load_records`.

    Args:
        root: dataset root (the format defines its layout).
        split: the split's name in that layout.
        image_size: network input (width, height) in pixels.
        heatmap_size: target heatmap (width, height) in cells.
        sigma: target Gaussian standard deviation in heatmap cells.
        train: draw the training augmentation; an unreadable image then gives ``None`` (use
            :func:`collate_skip_none`) instead of an :class:`ImageReadError`.
        keypoints: keypoint layout (flip pairs, half-body ids).
        augmentation: training augmentation; None means the official COCO recipe.
        padding: box enlargement factor around the person (formats that give boxes).
        seed: augmentation seed; a sample's draws depend only on (seed, epoch, index).
        reduced_decoding: decode a JPEG at 1/2, 1/4 or 1/8 size (libjpeg DCT scaling) when the
            crop has at least that many image pixels per crop pixel, with the crop matrix adjusted
            (:func:`pose.data.transforms.decode_reduction`). Faster for large people; the
            crop equals the full-resolution one up to interpolation, not bit for bit (off by
            default, and off for the exactness tests).
        device_augmentation: return the decoded image and its crop matrix instead of the crop
            and targets (see :class:`pose.data.DeviceAugmentation`, :meth:`batch_transform`).
        codec: "heatmap" (the official crop and targets, default), "dark" (the official crop,
            :func:`pose.data.targets.dark_gaussian_heatmaps` targets) or "udp" (unbiased data
            processing: :func:`pose.data.transforms.get_udp_affine_transform` crops and
            :func:`pose.data.targets.udp_gaussian_heatmaps` targets; decode its predictions
            with ``post_process="udp"``).

    Items are dicts: ``image`` float32 [3, h, w] (RGB, ImageNet-normalised), ``target`` float32
    [K, hh, hw], ``target_weight`` float32 [K], ``center`` float32 [2] and ``scale`` float32 [2]
    (the crop's box in original-image pixels / 200), ``rotation`` (degrees), ``image_id``,
    ``score`` (1.0 for ground-truth boxes, else the detector's), ``area`` (annotation area, or
    ``prod(scale * 200)`` for detections), ``joints`` float32 [K, 3] (x, y in crop pixels,
    visibility) and ``index``.

    With ``device_augmentation`` there is no ``image``, ``target`` or ``target_weight``; instead
    ``source_image`` uint8 [Hc, Wc, 3] (the decoded image, BGR as stored, zero-padded at the
    right and bottom to :attr:`canvas_size`), ``crop_matrix`` float64 [2, 3] (source-image pixels
    to crop pixels, flip and decode reduction included), ``crop_joints`` float64 [K, 2] (crop
    pixels) and ``colour`` float32 [3] (brightness, contrast, saturation factors).

    A record (:meth:`_load_records`) holds ``image_id``, ``image_path``, ``image_size`` ((w, h)
    pixels, or None when the annotations give none), ``center`` and ``scale`` (pixels, pixels
    / 200), ``joints`` [K, 2] (0-based pixels), ``visible`` [K] (0/1), ``score`` and ``area``.
    """

    annotation_file: Path  # set by _load_records: where the records come from

    def __init__(
        self,
        root: str | Path,
        split: str,
        image_size: Sequence[int],
        heatmap_size: Sequence[int],
        sigma: float = 2.0,
        train: bool = False,
        *,
        keypoints: KeypointSpec,
        augmentation: AugmentationParams | None = None,
        padding: float = 1.25,
        seed: int = 0,
        reduced_decoding: bool = False,
        device_augmentation: bool = False,
        codec: str = "heatmap",
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec={codec!r} is not known: expected one of {', '.join(CODECS)}")
        if codec == "heatmap" and official_peak_offset(sigma):
            raise ValueError(f"sigma={sigma} does not go with codec 'heatmap': its official "
                             "targets peak a cell before the joint when 3 sigma has a fraction "
                             "below one half; use codec 'dark' (sub-cell targets) or a sigma "
                             "such as 1, 1.25 or 2")
        if len(image_size) != 2 or len(heatmap_size) != 2:
            raise ValueError(
                f"image_size and heatmap_size must be (width, height), got {image_size} and "
                f"{heatmap_size}"
            )
        self.root = Path(root)
        self.split = split
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = sigma
        self.train = train
        self.keypoints = keypoints
        self.augmentation = augmentation if augmentation is not None else AugmentationParams()
        self.padding = padding
        self.seed = seed
        self.reduced_decoding = reduced_decoding
        self.device_augmentation = device_augmentation
        self.codec = codec
        # In shared memory so that set_epoch reaches DataLoader workers that outlive an epoch
        # (persistent_workers=True), which hold their own copy of the dataset; the loading
        # counters likewise add up over every worker.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._loading_counts = torch.zeros(
            (_COUNTER_ROWS, len(LOADING_EVENTS)), dtype=torch.int64
        ).share_memory_()
        # Python float, as the official code: it sets the float32/float64 rounding downstream.
        self.aspect_ratio = self.image_size[0] * 1.0 / self.image_size[1]

        self.records = self._load_records()
        if not self.records:
            raise ValueError(f"no person boxes to use in {self._records_source()}")
        # The largest image: every source image fits in it (device augmentation batches them).
        # A format whose annotations give no image sizes (MPII) has none.
        sizes = [record["image_size"] for record in self.records]
        self.canvas_size = (None if None in sizes else
                            (max(size[0] for size in sizes), max(size[1] for size in sizes)))
        if device_augmentation and self.canvas_size is None:
            raise ValueError(f"device augmentation needs every image's size, and "
                             f"{self.annotation_file} does not give them")
        self._warned_paths: set[Path] = set()

    def _load_records(self) -> list[dict[str, Any]]:
        """The format's people, one record per box (see the class docstring); sets
        :attr:`annotation_file`."""
        raise NotImplementedError

    def _records_source(self) -> str:
        """Where the records came from, for the error of a dataset without any."""
        return str(self.annotation_file)

    # ----------------------------------------------------------------------------------------
    # Epochs, loading counters, the device-side step

    def __len__(self) -> int:
        return len(self.records)

    @property
    def epoch(self) -> int:
        """The epoch whose augmentation draws the items use."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws the next items use.

        Call it before iterating over the epoch's DataLoader; it also reaches persistent workers.
        """
        self._epoch.fill_(int(epoch))

    def sample_rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index`` in the current epoch (depends on seed, epoch, index)."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def loading_counts(self) -> dict[str, int]:
        """How many item loads met each of :data:`LOADING_EVENTS`, summed over the main process
        and every DataLoader worker since the dataset was built (see data/README.md)."""
        totals = self._loading_counts.sum(dim=0).tolist()
        return dict(zip(LOADING_EVENTS, (int(total) for total in totals), strict=True))

    def _count(self, event: str) -> None:
        worker = get_worker_info()
        row = 0 if worker is None else 1 + worker.id % (_COUNTER_ROWS - 1)
        self._loading_counts[row, LOADING_EVENTS.index(event)] += 1

    def batch_transform(self) -> DeviceAugmentation | None:
        """The device-side step for batches of this dataset (None without device augmentation).

        A :class:`pose.data.DeviceAugmentation`: ``batch -> batch`` on a collated batch already
        moved to the training device, filling ``image``, ``target`` and ``target_weight``.
        """
        if not self.device_augmentation:
            return None
        jitter = any(getattr(self.augmentation, name) > 0 for name in COLOUR_JITTERS)
        return DeviceAugmentation(self.image_size, self.heatmap_size, self.sigma,
                                  colour_jitter=self.train and jitter, codec=self.codec)

    # ----------------------------------------------------------------------------------------
    # Items

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        return self.get_item_with_rng(index, self.sample_rng(index) if self.train else None)

    def _warn_once(self, path: Path, message: str) -> None:
        if path not in self._warned_paths:
            self._warned_paths.add(path)
            warnings.warn(message, CorruptImageWarning, stacklevel=4)

    def _read_image(self, record: dict[str, Any], reduction: int) -> np.ndarray | None:
        """The record's image, BGR uint8 [H, W, 3] decoded at 1 / ``reduction`` size with any EXIF
        orientation ignored (as the official loader), or None if it cannot be used (see
        :meth:`_unusable`)."""
        path = record["image_path"]
        try:
            data = path.read_bytes()
        except OSError:
            return self._unusable(path, "missing_image",
                                  f"cannot read image {path} (missing or unreadable)")
        flags = _REDUCED_READ_FLAGS[reduction] | cv2.IMREAD_IGNORE_ORIENTATION
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) if data else None
        if image is None:
            return self._unusable(path, "corrupt_image",
                                  f"cannot read image {path} (corrupt or not an image)")
        # COCO's annotations refer to the pixels as stored: an EXIF rotation is ignored, and
        # counted so that a dataset of rotated photos gets noticed.
        if jpeg_exif_orientation(data) != 1:
            self._count("exif_orientation_ignored")
        if record["image_size"] is None:  # the annotations give no size to check against
            return image
        width, height = record["image_size"]
        if image.shape[:2] != (math.ceil(height / reduction), math.ceil(width / reduction)):
            self._count("size_mismatch")
            size_note = (
                f"it is {image.shape[1] * reduction}x{image.shape[0] * reduction} pixels but "
                f"{self.annotation_file.name} says {width}x{height}"
            )
            if self.device_augmentation and (
                image.shape[1] > self.canvas_size[0] or image.shape[0] > self.canvas_size[1]
            ):
                return self._unusable(
                    path, None, f"cannot use image {path} ({size_note}, larger than the batch "
                    "canvas)")
            self._warn_once(path, f"image {path}: {size_note}; its joints may be misplaced")
        return image

    def _unusable(self, path: Path, event: str | None, message: str) -> None:
        """An image that cannot be used: count ``event``, then raise :class:`ImageReadError` in
        evaluation, or warn once per image and return None (the item is skipped) in training."""
        if event is not None:
            self._count(event)
        if not self.train:
            raise ImageReadError(message)
        self._warn_once(path, f"{message}; skipping its samples")

    def get_item_with_rng(self, index: int, rng: RandomSource | None) -> dict[str, Any] | None:
        """Item ``index``, augmented with draws from ``rng`` (no augmentation if None).

        ``rng`` needs ``random()`` and ``standard_normal()``; a replay of logged draws works, which
        is how the tests reproduce the official training samples. Returns None for an unusable
        image in train mode (counted, warning once per image); raises :class:`ImageReadError`
        otherwise.
        """
        record = self.records[index]
        joints, visible = record["joints"], record["visible"]
        center, scale, rotation = record["center"], record["scale"], 0.0
        flip, colour = False, NO_COLOUR_CHANGE
        if rng is not None:
            drawn = draw_augmentation(
                joints, visible, center, scale, self.augmentation,
                self.keypoints.upper_body_ids, self.keypoints.lower_body_ids,
                self.aspect_ratio, rng,
            )
            center, scale, rotation = drawn.center, drawn.scale, drawn.rotation
            flip, colour = drawn.flip, drawn.colour

        # A reduced decode needs the full-resolution width for the flip: known sizes only.
        reduction = (decode_reduction(scale, self.image_size[0])
                     if self.reduced_decoding and record["image_size"] is not None else 1)
        image = self._read_image(record, reduction)
        if image is None:
            return None

        # The full-resolution image width (the flip mirrors around it): the decoded one as in
        # the official code, or the annotated one when the image was decoded reduced.
        image_width = image.shape[1] if reduction == 1 else record["image_size"][0]
        if flip:
            joints, visible = flip_joints(joints, visible, image_width, self.keypoints.flip_pairs)
            center = flip_center_x(center, image_width)
        # (Flipped) full-resolution image -> crop.
        matrix = crop_affine_transform(self.codec, center, scale, rotation, self.image_size)
        # Only labelled joints move; the others keep their (meaningless) coordinates.
        crop_joints = np.array(joints, dtype=np.float64)
        labelled = visible > 0
        crop_joints[labelled] = affine_transform_points(crop_joints[labelled], matrix)

        item = {
            "center": torch.from_numpy(np.asarray(center, dtype=np.float32)),
            "scale": torch.from_numpy(np.asarray(scale, dtype=np.float32)),
            "rotation": float(rotation),
            "image_id": int(record["image_id"]),
            "score": float(record["score"]),
            "area": float(record["area"]),
            "joints": torch.from_numpy(
                np.concatenate([crop_joints, visible[:, None]], axis=1).astype(np.float32)
            ),
            "index": int(index),
        }
        # The decoded image as stored -> crop: the flip and the decode reduction become part
        # of the matrix. The exact path below flips the pixels instead, as the official code.
        source_matrix = matrix
        if flip and (reduction > 1 or self.device_augmentation):
            source_matrix = compose_affine(source_matrix, horizontal_flip_matrix(image_width))
        if reduction > 1:
            source_matrix = compose_affine(source_matrix, reduced_to_full_matrix(reduction))

        if self.device_augmentation:
            item.update(self._source_item(image, source_matrix, crop_joints, colour))
        else:
            item.update(self._crop_item(image, source_matrix, flip and reduction == 1, colour,
                                        crop_joints, visible))
        return item

    def _source_item(self, image: np.ndarray, source_matrix: np.ndarray,
                     crop_joints: np.ndarray, colour: Sequence[float]
                     ) -> dict[str, torch.Tensor]:
        """The device-augmentation fields: the decoded image on the batch canvas, its crop
        matrix, the joints in crop pixels and the colour factors."""
        height, width = image.shape[:2]
        canvas = np.empty((self.canvas_size[1], self.canvas_size[0], 3), dtype=np.uint8)
        canvas[:height, :width] = image
        canvas[height:] = 0  # zero only the padding: it is the crop's border (P12)
        canvas[:height, width:] = 0
        return {
            "source_image": torch.from_numpy(canvas),
            "crop_matrix": torch.from_numpy(source_matrix),
            "crop_joints": torch.from_numpy(crop_joints),
            "colour": torch.tensor(colour, dtype=torch.float32),
        }

    def _crop_item(self, image: np.ndarray, source_matrix: np.ndarray, flip_pixels: bool,
                   colour: Sequence[float], crop_joints: np.ndarray,
                   visible: np.ndarray) -> dict[str, torch.Tensor]:
        """The crop (normalised), its targets and target weights, as the official loader makes
        them: the pixels flipped first when ``flip_pixels``, then warped, then colour-jittered."""
        if flip_pixels:
            image = cv2.flip(image, 1)  # 1: around the vertical axis; ~30x numpy's copy
        crop = warp_image(image, source_matrix, self.image_size)
        if colour != NO_COLOUR_CHANGE:
            rgb = torch.from_numpy(crop[:, :, ::-1].copy()).permute(2, 0, 1)
            jittered = adjust_colour(rgb, torch.tensor(colour)).to(torch.uint8)
            crop = np.ascontiguousarray(jittered.permute(1, 2, 0).numpy()[:, :, ::-1])
        target, target_weight = PERSON_ENCODERS[self.codec](
            crop_joints, visible, self.image_size, self.heatmap_size, self.sigma)
        return {
            "image": torch.from_numpy(normalise_bgr(crop, IMAGENET_MEAN, IMAGENET_STD)),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(target_weight),
        }
