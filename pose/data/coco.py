"""COCO person-keypoint dataset for top-down training and evaluation (official HRNet recipe).

Dataset layout (see data/README.md)::

    <root>/annotations/person_keypoints_<split>.json
    <root>/<split>/<file_name>            or   <root>/images/<split>/<file_name>

Each item is one person: the box is cropped to ``image_size``, normalised with the ImageNet
mean and std, and paired with Gaussian heatmap targets. With ``device_augmentation`` the item
holds the decoded image and its crop matrix instead, and :class:`pose.data.DeviceAugmentation`
crops, normalises and builds the targets for a whole batch on the training device.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset, get_worker_info

from pose.data.device import DeviceAugmentation
from pose.data.exif import jpeg_exif_orientation
from pose.data.keypoints import COCO_KEYPOINTS, KeypointSpec
from pose.data.targets import gaussian_heatmaps, udp_gaussian_heatmaps
from pose.data.transforms import (
    CODECS,
    COLOUR_JITTERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NO_COLOUR_CHANGE,
    PIXEL_STD,
    AugmentationParams,
    RandomSource,
    adjust_colour,
    affine_transform_points,
    box_to_center_scale,
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

PERSON_CATEGORY_ID = 1

_LAYOUT_HELP = (
    "expected <root>/annotations/person_keypoints_<split>.json with images in <root>/<split>/ "
    "or <root>/images/<split>/ (see data/README.md)"
)

# Why an annotation of the file gives no training/evaluation record (counted at start-up).
ANNOTATION_SKIPS = ("crowd", "not_person", "no_labelled_joints", "degenerate_box")
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


def _resolve_layout(root: Path, split: str) -> tuple[Path, Path]:
    """The annotation file and the image folder under ``root``, or FileNotFoundError."""
    if not root.is_dir():
        raise FileNotFoundError(f"COCO root {root} does not exist or is not a folder; {_LAYOUT_HELP}")
    annotation_file = root / "annotations" / f"person_keypoints_{split}.json"
    if not annotation_file.is_file():
        raise FileNotFoundError(f"COCO annotation file {annotation_file} not found; {_LAYOUT_HELP}")
    candidates = (root / split, root / "images" / split)
    for image_dir in candidates:
        if image_dir.is_dir():
            return annotation_file, image_dir
    raise FileNotFoundError(
        f"no COCO image folder for split {split!r}: neither {candidates[0]} nor {candidates[1]} "
        f"exists; {_LAYOUT_HELP}"
    )


def _load_annotations(annotation_file: Path) -> COCO:
    """pycocotools' index of ``annotation_file``; a ValueError naming the file if it is not a
    COCO annotation file."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(annotation_file))
    except json.JSONDecodeError as error:
        raise ValueError(f"COCO annotation file {annotation_file} is not valid JSON: {error}") \
            from error
    except (KeyError, TypeError, AttributeError, AssertionError) as error:
        raise ValueError(
            f"COCO annotation file {annotation_file} is not in COCO format (a JSON object with "
            f"'images', 'annotations' and 'categories' lists): {error!r}"
        ) from error


def _load_detections(det_file: Path, score_threshold: float) -> list[dict[str, Any]]:
    """Person detections from a COCO-results json (list of {image_id, bbox, score, ...})."""
    if not det_file.is_file():
        raise FileNotFoundError(
            f"detection file {det_file} not found; expected a COCO-results json list of "
            "{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}"
        )
    with open(det_file) as handle:
        detections = json.load(handle)
    if not isinstance(detections, list):
        raise TypeError(
            f"detection file {det_file} must hold a JSON list of detections, "
            f"got {type(detections).__name__}"
        )
    kept = []
    for position, detection in enumerate(detections):
        valid = (
            isinstance(detection, dict)
            and {"image_id", "bbox", "score"} <= detection.keys()
            and len(detection["bbox"]) == 4
        )
        if not valid:
            raise ValueError(
                f"detection file {det_file}: entry {position} is not a detection with "
                f"'image_id', 'bbox' ([x, y, w, h]) and 'score': {detection!r}"
            )
        # A missing category is taken as "person", the only class such files normally hold.
        if detection.get("category_id", PERSON_CATEGORY_ID) != PERSON_CATEGORY_ID:
            continue
        if detection["score"] < score_threshold:
            continue
        kept.append(detection)
    return kept


def _clean_box(bbox: Any, width: int, height: int) -> list[float] | None:
    """The official clean box ``[x, y, w, h]`` of an annotation's ``bbox``, or None if degenerate.

    Quirk P9 (reproduced): the clean box is w - 1 wide and h - 1 high, clipped to the image.
    Official rule: the box is dropped if it ends before it starts (e.g. wholly outside the image).
    Added here: a box that is not 4 finite numbers, or that shrinks to a single pixel (w = h = 0
    after cleaning: scale 0, for which the official code builds an all-zero crop matrix).
    """
    valid = (
        isinstance(bbox, (list, tuple))
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
    )
    if not valid:
        return None
    x, y, w, h = bbox
    x1, y1 = max(0, x), max(0, y)
    x2 = min(width - 1, x1 + max(0, w - 1))
    y2 = min(height - 1, y1 + max(0, h - 1))
    if x2 < x1 or y2 < y1 or (x2 == x1 and y2 == y1):
        return None
    return [x1, y1, x2 - x1, y2 - y1]


class CocoKeypoints(Dataset):
    """COCO person keypoints, one item per person box (ground-truth or detected).

    Args:
        root: dataset root (layout in the module docstring).
        split: e.g. ``"train2017"`` or ``"val2017"``.
        image_size: network input (width, height) in pixels.
        heatmap_size: target heatmap (width, height) in cells.
        sigma: target Gaussian standard deviation in heatmap cells.
        train: draw the training augmentation; an unreadable image then gives ``None`` (use
            :func:`collate_skip_none`) instead of an :class:`ImageReadError`.
        det_file: COCO-results json of person boxes to use instead of the ground-truth boxes
            (evaluation only).
        keypoints: keypoint layout (flip pairs, half-body ids).
        augmentation: training augmentation; None means the official COCO recipe.
        det_score_threshold: detections scoring below it are dropped.
        padding: box enlargement factor around the person.
        seed: augmentation seed; a sample's draws depend only on (seed, epoch, index).
        reduced_decoding: decode a JPEG at 1/2, 1/4 or 1/8 size (libjpeg DCT scaling) when the
            crop has at least that many image pixels per crop pixel, with the crop matrix adjusted
            (:func:`pose.data.transforms.decode_reduction`). Faster for large people; the
            crop equals the full-resolution one up to interpolation, not bit for bit (off by
            default, and off for the exactness tests).
        device_augmentation: return the decoded image and its crop matrix instead of the crop
            and targets (see :class:`pose.data.DeviceAugmentation`, :meth:`batch_transform`).
        codec: "heatmap" (the official crop and targets, default) or "udp" (unbiased data
            processing: :func:`pose.data.transforms.get_udp_affine_transform` crops and
            :func:`pose.data.targets.udp_heatmap_targets`); decode its predictions with
            ``post_process="udp"``.

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
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        image_size: Sequence[int] = (192, 256),
        heatmap_size: Sequence[int] = (48, 64),
        sigma: float = 2.0,
        train: bool = False,
        det_file: str | Path | None = None,
        *,
        keypoints: KeypointSpec = COCO_KEYPOINTS,
        augmentation: AugmentationParams | None = None,
        det_score_threshold: float = 0.0,
        padding: float = 1.25,
        seed: int = 0,
        reduced_decoding: bool = False,
        device_augmentation: bool = False,
        codec: str = "heatmap",
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec={codec!r} is not known: expected one of {', '.join(CODECS)}")
        if len(image_size) != 2 or len(heatmap_size) != 2:
            raise ValueError(
                f"image_size and heatmap_size must be (width, height), got {image_size} and "
                f"{heatmap_size}"
            )
        if train and det_file is not None:
            raise ValueError(
                "det_file is for evaluation: detected boxes carry no keypoints to train on"
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

        self.skipped_annotations = dict.fromkeys(ANNOTATION_SKIPS, 0)
        self.records = self._load_records(det_file, det_score_threshold)
        if not self.records:
            source = (f"{self.annotation_file} (skipped annotations: {self.skipped_annotations})"
                      if det_file is None
                      else f"{self.det_file} (score threshold {det_score_threshold})")
            raise ValueError(f"no person boxes to use in {source}")
        # The largest image: every source image fits in it (device augmentation batches them).
        # A format whose annotations give no image sizes (MPII) has none.
        sizes = [record["image_size"] for record in self.records]
        self.canvas_size = (None if None in sizes else
                            (max(size[0] for size in sizes), max(size[1] for size in sizes)))
        if device_augmentation and self.canvas_size is None:
            raise ValueError(f"device augmentation needs every image's size, and "
                             f"{self.annotation_file} does not give them")
        self._warned_paths: set[Path] = set()

    # ----------------------------------------------------------------------------------------
    # Records

    def _load_records(self, det_file: str | Path | None,
                      det_score_threshold: float) -> list[dict[str, Any]]:
        """The dataset's people (another dataset format overrides this)."""
        self.annotation_file, self.image_dir = _resolve_layout(self.root, self.split)
        self.coco = _load_annotations(self.annotation_file)
        if det_file is None:
            self.det_file = None
            return self._ground_truth_records()
        self.det_file = Path(det_file)
        return self._detection_records(self.det_file, det_score_threshold)

    def image_path(self, image_id: int) -> Path:
        """Where the image with COCO id ``image_id`` is read from."""
        return self.image_dir / self.coco.imgs[image_id]["file_name"]

    def _ground_truth_records(self) -> list[dict[str, Any]]:
        """One record per non-crowd person with at least one labelled joint and a usable box
        (official rules; each skipped annotation is counted in ``skipped_annotations``)."""
        num_joints = self.keypoints.num_joints
        records = []
        for image_id in self.coco.getImgIds():
            image_info = self.coco.imgs[image_id]
            width, height = image_info["width"], image_info["height"]
            for annotation in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id)):
                if annotation.get("iscrowd", 0):
                    self.skipped_annotations["crowd"] += 1
                    continue
                if annotation.get("category_id") != PERSON_CATEGORY_ID:
                    self.skipped_annotations["not_person"] += 1
                    continue
                keypoints = np.asarray(annotation.get("keypoints", []), dtype=np.float64)
                if keypoints.size != 3 * num_joints:
                    raise ValueError(
                        f"{self.annotation_file}: annotation {annotation.get('id')} has "
                        f"{keypoints.size / 3:g} keypoints, expected {num_joints} "
                        f"({self.keypoints.name})"
                    )
                box = _clean_box(annotation.get("bbox"), width, height)
                if box is None or not annotation.get("area", 0) > 0:
                    self.skipped_annotations["degenerate_box"] += 1
                    continue
                keypoints = keypoints.reshape(num_joints, 3)
                if not np.isfinite(keypoints).all() or keypoints.max() == 0:
                    self.skipped_annotations["no_labelled_joints"] += 1
                    continue
                center, scale = box_to_center_scale(box, self.aspect_ratio, self.padding)
                records.append(
                    {
                        "image_id": image_id,
                        "image_path": self.image_path(image_id),
                        "image_size": (int(width), int(height)),
                        "box_xywh": box,
                        "center": center,
                        "scale": scale,
                        "joints": keypoints[:, :2].copy(),
                        # Labelled-occluded (1) and visible (2) joints both count.
                        "visible": np.minimum(keypoints[:, 2], 1),
                        "score": 1.0,
                        "area": float(annotation["area"]),
                    }
                )
        return records

    def _detection_records(self, det_file: Path, score_threshold: float) -> list[dict[str, Any]]:
        """One record per person detection, box as given (no cleaning), in file order."""
        num_joints = self.keypoints.num_joints
        records = []
        for position, detection in enumerate(_load_detections(det_file, score_threshold)):
            image_id = detection["image_id"]
            if image_id not in self.coco.imgs:
                raise ValueError(
                    f"detection file {det_file}: entry {position} refers to image_id "
                    f"{image_id!r}, which is not in {self.annotation_file}"
                )
            image_info = self.coco.imgs[image_id]
            center, scale = box_to_center_scale(detection["bbox"], self.aspect_ratio, self.padding)
            records.append(
                {
                    "image_id": image_id,
                    "image_path": self.image_path(image_id),
                    "image_size": (int(image_info["width"]), int(image_info["height"])),
                    "box_xywh": [float(v) for v in detection["bbox"]],
                    "center": center,
                    "scale": scale,
                    # No keypoints are known for a detected box: weight 0, empty targets.
                    "joints": np.zeros((num_joints, 2)),
                    "visible": np.zeros(num_joints),
                    "score": float(detection["score"]),
                    "area": float(np.prod(scale * PIXEL_STD)),
                }
            )
        return records

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
            height, width = image.shape[:2]
            canvas = np.empty((self.canvas_size[1], self.canvas_size[0], 3), dtype=np.uint8)
            canvas[:height, :width] = image
            canvas[height:] = 0  # zero only the padding: it is the crop's border (P12)
            canvas[:height, width:] = 0
            item.update({
                "source_image": torch.from_numpy(canvas),
                "crop_matrix": torch.from_numpy(source_matrix),
                "crop_joints": torch.from_numpy(crop_joints),
                "colour": torch.tensor(colour, dtype=torch.float32),
            })
            return item

        if flip and reduction == 1:
            image = cv2.flip(image, 1)  # 1: around the vertical axis; ~30x numpy's copy
        crop = warp_image(image, source_matrix, self.image_size)
        if colour != NO_COLOUR_CHANGE:
            rgb = torch.from_numpy(crop[:, :, ::-1].copy()).permute(2, 0, 1)
            jittered = adjust_colour(rgb, torch.tensor(colour)).to(torch.uint8)
            crop = np.ascontiguousarray(jittered.permute(1, 2, 0).numpy()[:, :, ::-1])
        encode = udp_gaussian_heatmaps if self.codec == "udp" else gaussian_heatmaps
        target, target_weight = encode(crop_joints, visible, self.image_size, self.heatmap_size,
                                       self.sigma)
        item.update({
            "image": torch.from_numpy(normalise_bgr(crop, IMAGENET_MEAN, IMAGENET_STD)),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(target_weight),
        })
        return item
