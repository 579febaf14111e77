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

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pose.data.keypoints import COCO_KEYPOINTS, KeypointSpec
from pose.data.topdown import TopDownDataset
from pose.data.transforms import PIXEL_STD, AugmentationParams, box_to_center_scale

PERSON_CATEGORY_ID = 1

_LAYOUT_HELP = (
    "expected <root>/annotations/person_keypoints_<split>.json with images in <root>/<split>/ "
    "or <root>/images/<split>/ (see data/README.md)"
)

# Why an annotation of the file gives no training/evaluation record (counted at start-up).
ANNOTATION_SKIPS = ("crowd", "not_person", "no_labelled_joints", "degenerate_box",
                    "unknown_image")
# Why a detection of a detection file gives no evaluation record.
DETECTION_SKIPS = ("not_person", "below_score_threshold")
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


def _load_annotations(annotation_file: Path) -> dict[str, Any]:
    """The parsed COCO annotation file; a ValueError naming the file if it is not one."""
    with annotation_file.open() as handle:
        try:
            annotations = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"COCO annotation file {annotation_file} is not valid JSON: "
                             f"{error}") from error
    lists_ok = isinstance(annotations, dict) and all(
        isinstance(annotations.get(key, []), list) for key in ("images", "annotations"))
    if not lists_ok or not all(isinstance(image, dict) and "id" in image
                               for image in annotations.get("images", [])):
        raise ValueError(f"COCO annotation file {annotation_file} is not in COCO format (a JSON "
                         "object with 'images' (each with an 'id'), 'annotations' and "
                         "'categories' lists)")
    return annotations


def _annotations_by_image(annotations: dict[str, Any], annotation_file: Path
                          ) -> tuple[dict[Any, dict[str, Any]], dict[Any, list[dict[str, Any]]]]:
    """The images by id and each image's annotations in file order (pycocotools' ``imgs`` and
    ``imgToAnns``, whose order the records keep)."""
    images = {image["id"]: image for image in annotations.get("images", [])}
    by_image: dict[Any, list[dict[str, Any]]] = {image_id: [] for image_id in images}
    for position, annotation in enumerate(annotations.get("annotations", [])):
        missing = ([key for key in ("id", "image_id", "category_id") if key not in annotation]
                   if isinstance(annotation, dict) else ["a dict"])
        if missing:  # what pycocotools' index could not do without either
            raise ValueError(f"COCO annotation file {annotation_file} is not in COCO format: "
                             f"annotation {position} lacks {', '.join(map(repr, missing))}")
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    return images, by_image


def _finite_numbers(values: Any, count: int) -> bool:
    """Whether ``values`` is a list of ``count`` finite numbers (not strings, not bools)."""
    return (isinstance(values, (list, tuple)) and len(values) == count
            and all(isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) for value in values))


def _load_detections(det_file: Path, score_threshold: float
                     ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Person detections from a COCO-results json (list of {image_id, bbox, score, ...}), and
    how many were skipped for each of :data:`DETECTION_SKIPS`."""
    if not det_file.is_file():
        raise FileNotFoundError(
            f"detection file {det_file} not found; expected a COCO-results json list of "
            "{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}"
        )
    try:
        with open(det_file) as handle:
            detections = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"detection file {det_file} is not valid JSON: {error}") from error
    if not isinstance(detections, list):
        raise ValueError(  # noqa: TRY004 (bad input data: ValueError, one line)
            f"detection file {det_file} must hold a JSON list of detections, "
            f"got {type(detections).__name__}"
        )
    kept, skipped = [], dict.fromkeys(DETECTION_SKIPS, 0)
    for position, detection in enumerate(detections):
        valid = (
            isinstance(detection, dict)
            and {"image_id", "bbox", "score"} <= detection.keys()
            and isinstance(detection["image_id"], (int, str))
            and _finite_numbers(detection["bbox"], 4)
            and _finite_numbers([detection["score"]], 1)
        )
        if not valid:
            raise ValueError(
                f"detection file {det_file}: entry {position} is not a detection with "
                f"'image_id', 'bbox' ([x, y, w, h], finite numbers) and 'score' (a finite "
                f"number): {detection!r}"
            )
        # A missing category is taken as "person", the only class such files normally hold.
        if detection.get("category_id", PERSON_CATEGORY_ID) != PERSON_CATEGORY_ID:
            skipped["not_person"] += 1
        elif detection["score"] < score_threshold:
            skipped["below_score_threshold"] += 1
        else:
            kept.append(detection)
    return kept, skipped


def _image_size(image_info: Any, annotation_file: Path) -> tuple[int, int]:
    """An image entry's (width, height) in pixels, or a ValueError naming it: the records need
    them and the file name."""
    valid = (isinstance(image_info, dict) and isinstance(image_info.get("file_name"), str)
             and _finite_numbers([image_info.get("width"), image_info.get("height")], 2)
             and image_info["width"] > 0 and image_info["height"] > 0)
    if not valid:
        raise ValueError(f"{annotation_file}: image {image_info.get('id')!r} needs a "
                         "'file_name' and a positive 'width' and 'height' in pixels; it has "
                         f"{image_info!r}")
    return image_info["width"], image_info["height"]


def _keypoint_values(annotation: dict[str, Any], annotation_file: Path) -> np.ndarray:
    """An annotation's ``keypoints`` as a flat float64 array (empty when absent), or a
    ValueError naming it when they are not a flat list of numbers."""
    values = annotation.get("keypoints", [])
    if not (isinstance(values, list) and all(isinstance(value, (int, float))
                                             for value in values)):
        raise ValueError(f"{annotation_file}: annotation {annotation.get('id')} has keypoints "
                         f"that are not a flat list of numbers [x, y, v, ...]: {values!r:.80}")
    return np.asarray(values, dtype=np.float64)


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


class CocoKeypoints(TopDownDataset):
    """COCO person keypoints, one item per person box (ground-truth or detected); items as
    :class:`pose.data.topdown.TopDownDataset` gives them.

    Args:
        root: dataset root (layout in the module docstring).
        split: e.g. ``"train2017"`` or ``"val2017"``.
        image_size, heatmap_size, sigma, train, keypoints, augmentation, padding, seed,
            reduced_decoding, device_augmentation, codec: see :class:`TopDownDataset`.
        det_file: COCO-results json of person boxes to use instead of the ground-truth boxes
            (evaluation only).
        det_score_threshold: detections scoring below it are dropped.

    The annotation file is parsed once: an evaluation dataset keeps the parsed file as
    :attr:`annotations` (None for training), from which its evaluator takes the ground truth.
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
        if train and det_file is not None:
            raise ValueError(
                "det_file is for evaluation: detected boxes carry no keypoints to train on"
            )
        self.det_file = None if det_file is None else Path(det_file)
        self.det_score_threshold = det_score_threshold
        self.skipped_annotations = dict.fromkeys(ANNOTATION_SKIPS, 0)
        self.skipped_detections = dict.fromkeys(DETECTION_SKIPS, 0)
        super().__init__(root, split, image_size, heatmap_size, sigma, train,
                         keypoints=keypoints, augmentation=augmentation, padding=padding,
                         seed=seed, reduced_decoding=reduced_decoding,
                         device_augmentation=device_augmentation, codec=codec)

    # ----------------------------------------------------------------------------------------
    # Records

    def _load_records(self) -> list[dict[str, Any]]:
        self.annotation_file, self.image_dir = _resolve_layout(self.root, self.split)
        annotations = _load_annotations(self.annotation_file)
        self.images, self._by_image = _annotations_by_image(annotations, self.annotation_file)
        if self.det_file is None:
            records = self._ground_truth_records()
        else:
            records = self._detection_records(self.det_file, self.det_score_threshold)
        del self._by_image  # each worker would otherwise hold every annotation
        # Kept for evaluation only, whose ground truth comes from this same parse.
        self.annotations = None if self.train else annotations
        return records

    def _records_source(self) -> str:
        if self.det_file is None:
            return f"{self.annotation_file} (skipped annotations: {self.skipped_annotations})"
        return f"{self.det_file} (score threshold {self.det_score_threshold})"

    def image_path(self, image_id: int) -> Path:
        """Where the image with COCO id ``image_id`` is read from."""
        return self.image_dir / self.images[image_id]["file_name"]

    def _ground_truth_records(self) -> list[dict[str, Any]]:
        """One record per non-crowd person with at least one labelled joint and a usable box
        (official rules; each skipped annotation is counted in ``skipped_annotations``)."""
        num_joints = self.keypoints.num_joints
        records = []
        # Annotations of images the file does not list are left out (as by pycocotools): counted.
        self.skipped_annotations["unknown_image"] = sum(
            len(annotations) for image_id, annotations in self._by_image.items()
            if image_id not in self.images)
        for image_id, image_info in self.images.items():
            width, height = _image_size(image_info, self.annotation_file)
            for annotation in self._by_image[image_id]:
                if annotation.get("iscrowd", 0):
                    self.skipped_annotations["crowd"] += 1
                    continue
                if annotation.get("category_id") != PERSON_CATEGORY_ID:
                    self.skipped_annotations["not_person"] += 1
                    continue
                keypoints = _keypoint_values(annotation, self.annotation_file)
                if keypoints.size != 3 * num_joints:
                    raise ValueError(
                        f"{self.annotation_file}: annotation {annotation.get('id')} has "
                        f"{keypoints.size / 3:g} keypoints, expected {num_joints} "
                        f"({self.keypoints.name})"
                    )
                box = _clean_box(annotation.get("bbox"), width, height)
                area = annotation.get("area", 0)
                if box is None or not (_finite_numbers([area], 1) and area > 0):
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
        detections, self.skipped_detections = _load_detections(det_file, score_threshold)
        for position, detection in enumerate(detections):
            image_id = detection["image_id"]
            if image_id not in self.images:
                raise ValueError(
                    f"detection file {det_file}: entry {position} refers to image_id "
                    f"{image_id!r}, which is not in {self.annotation_file}"
                )
            width, height = _image_size(self.images[image_id], self.annotation_file)
            center, scale = box_to_center_scale(detection["bbox"], self.aspect_ratio, self.padding)
            records.append(
                {
                    "image_id": image_id,
                    "image_path": self.image_path(image_id),
                    "image_size": (int(width), int(height)),
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
