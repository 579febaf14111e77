"""COCO person-keypoint dataset for top-down training and evaluation (official HRNet recipe).

Dataset layout (see data/README.md)::

    <root>/annotations/person_keypoints_<split>.json
    <root>/<split>/<file_name>            or   <root>/images/<split>/<file_name>

Each item is one person: the box is cropped to ``image_size``, normalised with the ImageNet
mean and std, and paired with Gaussian heatmap targets.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset, default_collate

from pose.data.keypoints import COCO_KEYPOINTS, KeypointSpec
from pose.data.targets import gaussian_heatmaps
from pose.data.transforms import (
    PIXEL_STD,
    AugmentationParams,
    RandomSource,
    affine_transform_points,
    box_to_center_scale,
    crop_image,
    draw_augmentation,
    flip_center_x,
    flip_joints,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PERSON_CATEGORY_ID = 1

_LAYOUT_HELP = (
    "expected <root>/annotations/person_keypoints_<split>.json with images in <root>/<split>/ "
    "or <root>/images/<split>/ (see data/README.md)"
)


class ImageReadError(OSError):
    """An image file is missing, corrupt or not an image."""


class CorruptImageWarning(UserWarning):
    """A training image could not be read and its sample was skipped."""


def collate_skip_none(batch: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Collate dataset items, dropping the ``None`` ones (unreadable training images).

    Returns the default-collated batch of the remaining items plus ``num_skipped`` (int), the
    number of items dropped. If every item was dropped the batch holds only ``num_skipped``.
    """
    kept = [item for item in batch if item is not None]
    num_skipped = len(batch) - len(kept)
    if not kept:
        return {"num_skipped": num_skipped}
    collated = default_collate(kept)
    collated["num_skipped"] = num_skipped
    return collated


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

    Items are dicts: ``image`` float32 [3, h, w] (RGB, ImageNet-normalised), ``target`` float32
    [K, hh, hw], ``target_weight`` float32 [K], ``center`` float32 [2] and ``scale`` float32 [2]
    (the crop's box in original-image pixels / 200), ``rotation`` (degrees), ``image_id``,
    ``score`` (1.0 for ground-truth boxes, else the detector's), ``area`` (annotation area, or
    ``prod(scale * 200)`` for detections), ``joints`` float32 [K, 3] (x, y in crop pixels,
    visibility) and ``index``.
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
    ) -> None:
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
        # In shared memory so that set_epoch reaches DataLoader workers that outlive an epoch
        # (persistent_workers=True), which hold their own copy of the dataset.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        # Python float, as the official code: it sets the float32/float64 rounding downstream.
        self.aspect_ratio = self.image_size[0] * 1.0 / self.image_size[1]

        self.records = self._load_records(det_file, det_score_threshold)
        self._warned_paths: set[Path] = set()
        self._mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)

    # ----------------------------------------------------------------------------------------
    # Records

    def _load_records(self, det_file: str | Path | None,
                      det_score_threshold: float) -> list[dict[str, Any]]:
        """The dataset's people (another dataset format overrides this)."""
        self.annotation_file, self.image_dir = _resolve_layout(self.root, self.split)
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(self.annotation_file))
        if det_file is None:
            self.det_file = None
            return self._ground_truth_records()
        self.det_file = Path(det_file)
        return self._detection_records(self.det_file, det_score_threshold)

    def image_path(self, image_id: int) -> Path:
        """Where the image with COCO id ``image_id`` is read from."""
        return self.image_dir / self.coco.imgs[image_id]["file_name"]

    def _ground_truth_records(self) -> list[dict[str, Any]]:
        """One record per non-crowd person with at least one labelled joint (official rules)."""
        num_joints = self.keypoints.num_joints
        records = []
        for image_id in self.coco.getImgIds():
            image_info = self.coco.imgs[image_id]
            width, height = image_info["width"], image_info["height"]
            for annotation in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False)):
                if annotation.get("category_id") != PERSON_CATEGORY_ID:
                    continue
                # Quirk P9 (reproduced): the clean box is w - 1 wide and h - 1 high.
                x, y, w, h = annotation["bbox"]
                x1, y1 = max(0, x), max(0, y)
                x2 = min(width - 1, x1 + max(0, w - 1))
                y2 = min(height - 1, y1 + max(0, h - 1))
                if not (annotation["area"] > 0 and x2 >= x1 and y2 >= y1):
                    continue
                keypoints = np.asarray(annotation["keypoints"], dtype=np.float64)
                if keypoints.size != 3 * num_joints:
                    raise ValueError(
                        f"{self.annotation_file}: annotation {annotation['id']} has "
                        f"{keypoints.size // 3} keypoints, expected {num_joints} "
                        f"({self.keypoints.name})"
                    )
                if keypoints.max() == 0:
                    continue
                keypoints = keypoints.reshape(num_joints, 3)
                box = [x1, y1, x2 - x1, y2 - y1]
                center, scale = box_to_center_scale(box, self.aspect_ratio, self.padding)
                records.append(
                    {
                        "image_id": image_id,
                        "image_path": self.image_path(image_id),
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
            center, scale = box_to_center_scale(detection["bbox"], self.aspect_ratio, self.padding)
            records.append(
                {
                    "image_id": image_id,
                    "image_path": self.image_path(image_id),
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
    # Items

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

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        return self.get_item_with_rng(index, self.sample_rng(index) if self.train else None)

    def _read_image(self, path: Path) -> np.ndarray | None:
        """RGB uint8 [H, W, 3], EXIF orientation ignored (as the official loader), or None."""
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is None:
            return None
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def get_item_with_rng(self, index: int, rng: RandomSource | None) -> dict[str, Any] | None:
        """Item ``index``, augmented with draws from ``rng`` (no augmentation if None).

        ``rng`` needs ``random()`` and ``standard_normal()``; a replay of logged draws works, which
        is how the tests reproduce the official training samples. Returns None for an unreadable
        image in train mode (warning once per image); raises :class:`ImageReadError` otherwise.
        """
        record = self.records[index]
        path = record["image_path"]
        image = self._read_image(path)
        if image is None:
            message = f"cannot read image {path} (missing, corrupt or not an image)"
            if not self.train:
                raise ImageReadError(message)
            if path not in self._warned_paths:
                self._warned_paths.add(path)
                warnings.warn(f"{message}; skipping its samples", CorruptImageWarning, stacklevel=2)
            return None

        joints, visible = record["joints"], record["visible"]
        center, scale, rotation = record["center"], record["scale"], 0.0
        if rng is not None:
            drawn = draw_augmentation(
                joints, visible, center, scale, self.augmentation,
                self.keypoints.upper_body_ids, self.keypoints.lower_body_ids,
                self.aspect_ratio, rng,
            )
            center, scale, rotation = drawn.center, drawn.scale, drawn.rotation
            if drawn.flip:
                image_width = image.shape[1]
                image = cv2.flip(image, 1)  # 1: around the vertical axis; ~30x numpy's copy
                joints, visible = flip_joints(
                    joints, visible, image_width, self.keypoints.flip_pairs
                )
                center = flip_center_x(center, image_width)

        crop, matrix = crop_image(image, center, scale, rotation, self.image_size)
        # Only labelled joints move; the others keep their (meaningless) coordinates.
        crop_joints = np.array(joints, dtype=np.float64)
        labelled = visible > 0
        crop_joints[labelled] = affine_transform_points(crop_joints[labelled], matrix)
        target, target_weight = gaussian_heatmaps(
            crop_joints, visible, self.image_size, self.heatmap_size, self.sigma
        )

        image_tensor = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)
        image_tensor = image_tensor.sub(self._mean).div(self._std)
        joints_out = np.concatenate([crop_joints, visible[:, None]], axis=1)
        return {
            "image": image_tensor,
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(target_weight),
            "center": torch.from_numpy(np.asarray(center, dtype=np.float32)),
            "scale": torch.from_numpy(np.asarray(scale, dtype=np.float32)),
            "rotation": float(rotation),
            "image_id": int(record["image_id"]),
            "score": float(record["score"]),
            "area": float(record["area"]),
            "joints": torch.from_numpy(joints_out.astype(np.float32)),
            "index": int(index),
        }
