"""Where ``pose.infer``'s person boxes come from: a torchvision detection model, the whole image,
or a COCO detection-results file.

Every source is called on a batch of images (BGR uint8 [H, W, 3]) with their keys (an
:class:`pose.data.media.ImageFile`, or a video's 0-based frame index) and returns one float64
[M, 5] array per image: person boxes ``x, y, w, h`` in pixels (top-left corner, width, height,
as COCO's) and a score.
"""

from __future__ import annotations

import json
import math
import socket
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from pose.data.media import ImageFile

PERSON_CATEGORY_ID = 1
# The other ways to give person boxes, named where a detector's weights cannot be had.
OTHER_BOX_SOURCES = ("boxes=<COCO detection-results json>, detector=whole_image (one box per "
                     "image, for pictures of one person) or detector.weights=<local weights file>")
# Seconds a stalled download may wait on the network before it counts as offline.
DOWNLOAD_TIMEOUT_S = 30.0

ImageKey = ImageFile | int


class BoxesFileError(ValueError):
    """A boxes file that is not COCO detection results, or that does not fit the input."""


def no_boxes() -> np.ndarray:
    return np.zeros((0, 5), dtype=np.float64)


class BoxSource(Protocol):
    def __call__(self, images: Sequence[np.ndarray],
                 keys: Sequence[ImageKey]) -> list[np.ndarray]: ...


def whole_image_box(image: np.ndarray) -> np.ndarray:
    """[1, 5]: the box of the whole image, ``0, 0, W - 1, H - 1`` (its pixel centres: the box
    cleaning's convention, quirk P9), score 1."""
    height, width = image.shape[:2]
    return np.array([[0.0, 0.0, width - 1.0, height - 1.0, 1.0]])


class WholeImageDetector:
    """One box per image or frame: the whole picture (for pictures cropped to one person)."""

    def __call__(self, images: Sequence[np.ndarray],
                 keys: Sequence[ImageKey] = ()) -> list[np.ndarray]:
        return [whole_image_box(image) for image in images]


def _detection_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a corrupt or foreign file
        raise ValueError(f"detector.weights={path} cannot be read as weights: {error}") from error
    for key in ("model", "state_dict"):  # training checkpoints wrap the weights
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(torch.is_tensor(v) for v in loaded.values()):
        raise ValueError(f"detector.weights={path} holds no state dict of a detection model")
    return loaded


def build_torchvision_detector(name: str, weights: str) -> nn.Module:
    """The ``torchvision.models.detection`` model ``name`` with ``weights``: a torchvision
    weights name (``DEFAULT``, ``COCO_V1``: downloaded by torchvision once, then cached) or a
    local file holding its state dict. Nothing else is downloaded (no backbone weights).

    Raises:
        ValueError: an unknown model, weights that do not fit it, or weights that cannot be had
            (offline, or no such file); the message names the other box sources.
    """
    from torchvision.models import detection, get_model, get_model_weights, list_models

    names = list_models(module=detection)
    if name not in names:
        raise ValueError(f"detector.model={name} is not a torchvision detection model: expected "
                         f"one of {', '.join(names)}")
    path = Path(weights)
    if path.is_file():
        state_dict = _detection_state_dict(path)
        classes = state_dict.get("roi_heads.box_predictor.cls_score.weight")
        extra = {} if classes is None else {"num_classes": int(classes.shape[0])}
        model = get_model(name, weights=None, weights_backbone=None, **extra)
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[1:2] or [""]
            raise ValueError(f"detector.weights={path} does not fit detector.model={name}: "
                             f"{first[0].strip()}") from error
        return model
    known = list(get_model_weights(name).__members__)
    if weights not in known:
        raise ValueError(f"detector.weights={weights} is neither a file nor a torchvision weights "
                         f"name of {name} ({', '.join(known)}); other ways to give person "
                         f"boxes: {OTHER_BOX_SOURCES}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return get_model(name, weights=weights)
    except (OSError, RuntimeError) as error:  # offline (URLError is an OSError), bad download
        raise ValueError(f"detector.weights={weights}: torchvision could not get the weights of "
                         f"{name} ({error}); give person boxes another way: "
                         f"{OTHER_BOX_SOURCES}") from error
    finally:
        socket.setdefaulttimeout(previous)


class TorchvisionDetector:
    """Person boxes from a torchvision detection model, batched on ``device``.

    Args:
        model: a ``torchvision.models.detection`` model (see :func:`build_torchvision_detector`).
        device: where it runs.
        score_threshold: boxes scoring below it are dropped.
        category_id: the label of a person (1 in torchvision's COCO-trained models).
        batch_size: images per forward pass.
    """

    def __init__(self, model: nn.Module, device: torch.device, score_threshold: float = 0.5,
                 category_id: int = PERSON_CATEGORY_ID, batch_size: int = 4) -> None:
        self.model = model.eval().to(device)
        self.device = device
        self.score_threshold = score_threshold
        self.category_id = category_id
        self.batch_size = max(1, int(batch_size))

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray],
                 keys: Sequence[ImageKey] = ()) -> list[np.ndarray]:
        boxes = []
        for start in range(0, len(images), self.batch_size):
            batch = [torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1]))
                     .to(self.device, non_blocking=True).permute(2, 0, 1).float().div_(255)
                     for image in images[start:start + self.batch_size]]
            for output in self.model(batch):
                keep = ((output["labels"] == self.category_id)
                        & (output["scores"] >= self.score_threshold))
                corners = output["boxes"][keep].double().cpu().numpy()  # x1, y1, x2, y2
                scores = output["scores"][keep].double().cpu().numpy()
                boxes.append(np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2],
                                             scores[:, None]], axis=1))
        return boxes


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_entry(path: Path, position: int, entry: Any, video: bool) -> None:
    """One entry of a boxes file, or a ValueError naming what it lacks."""
    what = f"boxes file {path} is not COCO detection results: entry {position}"
    if not isinstance(entry, dict):
        raise BoxesFileError(f"{what} is not an object ({entry!r:.60})")
    bbox = entry.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise ValueError(f"{what} has no 'bbox' of 4 numbers [x, y, w, h]")
    if not _is_number(entry.get("score")):
        raise ValueError(f"{what} has no numeric 'score'")
    if video and not (isinstance(entry.get("frame"), int) and entry["frame"] >= 0):
        raise ValueError(f"{what} has no 'frame' (the 0-based frame index a video's boxes "
                         "carry)")
    if not video and not (isinstance(entry.get("image_id"), int)
                          or isinstance(entry.get("file_name"), str)):
        raise ValueError(f"{what} has neither an integer 'image_id' nor a 'file_name'")


class BoxesFile:
    """Person boxes from a COCO detection-results file: a JSON list of ``{"image_id" (or
    "file_name", relative to the input; or, for a video, "frame"), "bbox": [x, y, w, h],
    "score", "category_id" (optional)}``. Entries of another category than ``category_id``
    are left out, as the evaluation loop does; an image without entries has no people.

    Raises:
        FileNotFoundError, ValueError: a missing file, or one that is not detection results.
    """

    def __init__(self, path: str | Path, video: bool,
                 category_id: int = PERSON_CATEGORY_ID) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"boxes file {self.path} not found")
        try:
            entries = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"boxes file {self.path} is not JSON: {error}") from error
        if not isinstance(entries, list):
            raise BoxesFileError(f"boxes file {self.path} is not COCO detection results: "
                                 f"expected a JSON list of detections, got "
                                 f"{type(entries).__name__}")
        self._by_key: dict[Any, list[list[float]]] = defaultdict(list)
        for position, entry in enumerate(entries):
            _check_entry(self.path, position, entry, video)
            if entry.get("category_id", category_id) != category_id:
                continue
            row = [float(v) for v in entry["bbox"]] + [float(entry["score"])]
            if video:
                self._by_key["frame", entry["frame"]].append(row)
            elif isinstance(entry.get("file_name"), str):
                self._by_key["file_name", Path(entry["file_name"]).as_posix()].append(row)
            else:
                self._by_key["image_id", entry["image_id"]].append(row)

    def _keys_of(self, image: ImageFile) -> list[tuple[str, Any]]:
        keys = [("file_name", image.name)]
        if Path(image.name).stem.isdigit():  # COCO's naming: the stem is the image id
            keys.append(("image_id", int(Path(image.name).stem)))
        return keys

    def check_images(self, images: Sequence[ImageFile], input_name: str) -> None:
        """Raise ValueError if the file names images that are not among ``images``."""
        known = {key for image in images for key in self._keys_of(image)}
        unknown = [f"{kind} {value}" for kind, value in self._by_key if (kind, value) not in known]
        if unknown:
            shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more"
                                              if len(unknown) > 3 else "")
            raise ValueError(f"boxes file {self.path} names images that are not in "
                             f"input={input_name}: {shown}")

    def check_frames(self, frame_count: int, input_name: str) -> None:
        """Raise ValueError if the file names frames past a video of ``frame_count`` frames
        (0: the count is unknown, nothing is checked)."""
        beyond = sorted(frame for _, frame in self._by_key if frame >= frame_count > 0)
        if beyond:
            raise ValueError(f"boxes file {self.path} names frame {beyond[0]}, but "
                             f"input={input_name} has {frame_count} frames (0-based)")

    def __call__(self, images: Sequence[np.ndarray],
                 keys: Sequence[ImageKey]) -> list[np.ndarray]:
        boxes = []
        for key in keys:
            lookups = (self._keys_of(key) if isinstance(key, ImageFile)
                       else [("frame", int(key))])
            rows = [row for lookup in lookups for row in self._by_key.get(lookup, [])]
            boxes.append(np.asarray(rows, dtype=np.float64).reshape(-1, 5))
        return boxes
