"""COCO keypoint AP in torch: pycocotools' ``COCOeval(iouType='keypoints')`` to the last digit.

pycocotools evaluates image by image in Python loops; here every step runs on whole tensors, on
the CPU or on CUDA:

1. Detections are grouped per (category, image) "cell", ordered by score (a stable sort, as
   pycocotools' mergesort: equal scores keep their order in the results list) and cut to the
   best 20 per cell (``maxDets``).
2. OKS is computed for the (detection, ground truth) pairs of each cell, all cells at once, in
   float64, with pycocotools' operation order, numpy's ``exp`` and numpy's summation order, so
   on the CPU the values are the same bits as pycocotools' on that CPU. Ground truth with no
   labelled joint measures the distance to its box enlarged to three times its size. Only pairs
   with OKS >= 0.5 (the lowest threshold) can ever match, so pairs whose joints are provably too
   far apart for that are skipped first.
3. The greedy matching runs over the detections' rank within their cell (at most 20 steps),
   vectorised over cells, the 10 OKS thresholds and the 3 area ranges; detections that compete
   with no other for their ground truths match in one step. Its rules are pycocotools': a
   detection takes the unmatched non-ignored ground truth of highest OKS (the last one on
   ties), and only if none qualifies an ignored one (crowd regions may match many detections);
   ignored are crowd regions, people with ``num_keypoints`` 0 and people outside the area range.
   Unmatched detections outside the area range are ignored too.
4. Accumulation is one stable sort by score per category; precision, made monotone, is read
   where recall first reaches each of the 101 recall thresholds, which is always at a true
   positive, so only the true positives are visited; the ten stats are pycocotools' means,
   with -1 where nothing is defined.

pycocotools' quirks are kept: the area of a detection is that of its keypoints' extent (or of its
``bbox`` when the first result carries one, as ``loadRes`` decides), a ground truth with id 0
counts as unmatched when matched, detections of categories absent from the ground truth are
dropped. Unlike pycocotools, an empty results list is evaluated (AP 0 where people exist) and
malformed results get one clear error naming the first offending entry.
"""

from __future__ import annotations

import collections
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from pose.data.keypoints import COCO_KEYPOINTS
from pose.evaluation.nms import AREA_EPSILON, numpy_exp, pairwise_sum

# pycocotools' Params.setKpParams, computed the same way so that the values are the same bits;
# its default sigmas are COCO's (pose.data.keypoints.COCO_KEYPOINTS.oks_sigmas, the same bits).
IOU_THRESHOLDS: np.ndarray = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1,
                                         endpoint=True)
RECALL_THRESHOLDS: np.ndarray = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1,
                                            endpoint=True)
AREA_RANGES: tuple[tuple[float, float], ...] = (
    (0 ** 2, 1e5 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))
AREA_NAMES: tuple[str, ...] = ("all", "medium", "large")
MAX_DETECTIONS = 20

# The ten numbers COCOeval.summarize() prints for keypoints, in its order.
METRIC_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl",
)
RESULT_KEYS = ("image_id", "category_id", "keypoints", "score")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "keypoints", "num_keypoints", "area", "bbox",
                   "iscrowd")

# Pairs whose OKS is computed at once: temporaries of ~1 MB stay in the cache (4x faster on
# the CPU than one pass over all pairs).
_PAIRS_PER_CHUNK = 1 << 13


# ------------------------------------------------------------------------------------------------
# Ground truth


@dataclass(frozen=True)
class CocoKeypointGroundTruth:
    """A COCO keypoint ground truth as tensors: parse once, evaluate many result sets.

    Annotations are those pycocotools evaluates (image listed in ``images``, category listed in
    ``categories``), ordered by cell (``category_index * num_images + image_index``) and, within a
    cell, as in the file. Tensors live on the CPU; the evaluation moves them to its device.
    """

    image_ids: tuple[Any, ...]  # sorted, as pycocotools' params.imgIds
    category_ids: tuple[Any, ...]  # sorted, as params.catIds
    image_index: dict[Any, int]
    category_index: dict[Any, int]
    num_keypoints: int | None  # K; None when there are no annotations
    cells: torch.Tensor  # [G] int64
    keypoints: torch.Tensor  # [G, K, 3] float64 (x, y, v)
    areas: torch.Tensor  # [G] float64, the annotations' "area"
    boxes: torch.Tensor  # [G, 4] float64, "bbox" (x, y, w, h)
    crowd: torch.Tensor  # [G] bool: int(iscrowd) != 0 (matchable by many detections)
    ignore: torch.Tensor  # [G] bool: iscrowd or num_keypoints == 0
    nonzero_id: torch.Tensor  # [G] bool: a match with id 0 counts as none in pycocotools
    # Image ids as a sorted int64 tensor when they are all integers (the tensor input path).
    sorted_int_image_ids: torch.Tensor | None
    # Derived once for the OKS (see _gt_regions): whether any joint is labelled [G]; the joints
    # averaged over, gathered first [G, K], and their count [G]; the region distances are
    # measured to [G, 4].
    labelled: torch.Tensor
    joint_order: torch.Tensor
    joint_counts: torch.Tensor
    regions: torch.Tensor

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_categories(self) -> int:
        return len(self.category_ids)


def _read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO {what} file not found: {path}")
    with path.open() as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"COCO {what} file {path} is not valid JSON: {error}") from error


def _are_numbers(values: Any) -> bool:
    """Whether ``values`` is a list of real numbers (what pycocotools computes with)."""
    return isinstance(values, (list, tuple)) and all(
        isinstance(value, numbers.Real) and not isinstance(value, bool) for value in values)


def _numeric_array(values: list) -> np.ndarray:
    """``values`` (numbers, or equal-length lists of numbers) as float64; ValueError when they
    are anything else (strings, which numpy would convert, None, ragged lists)."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError("not numbers")
    return array.astype(np.float64, copy=False)


def _annotation_error(annotations: list) -> str:
    """Why the first malformed evaluated annotation is malformed (the slow path of the parser).

    The keypoint count most annotations have is taken as the expected one, so that the odd
    annotation is named rather than the first."""
    counts = collections.Counter(len(annotation["keypoints"]) for annotation in annotations
                                 if isinstance(annotation, Mapping)
                                 and _are_numbers(annotation.get("keypoints")))
    usable = [(count, length) for length, count in counts.items() if length and length % 3 == 0]
    expected = max(usable)[1] if usable else None
    for position, annotation in enumerate(annotations):
        where = f"ground-truth annotation {position}"
        if not isinstance(annotation, Mapping):
            return f"{where} must be a dict, got {type(annotation).__name__}"
        missing = [key for key in ANNOTATION_KEYS if key not in annotation]
        if missing:
            return (f"{where} (id {annotation.get('id')!r}) lacks keys {missing}, which "
                    f"keypoint evaluation needs ({list(ANNOTATION_KEYS)})")
        where = f"{where} (id {annotation['id']!r})"
        keypoints = annotation["keypoints"]
        if not _are_numbers(keypoints):
            return f"{where} has keypoints that are not a list of numbers: {keypoints!r:.80}"
        if not keypoints or len(keypoints) % 3:
            return (f"{where} has {len(keypoints)} keypoint values, not a positive multiple "
                    "of 3 ([x, y, v] per joint)")
        if len(keypoints) != expected:
            return (f"{where} has {len(keypoints)} keypoint values where most annotations have "
                    f"{expected}")
        bbox = annotation["bbox"]
        if not _are_numbers(bbox) or len(bbox) != 4:
            return f"{where} has bbox {bbox!r}, expected [x, y, w, h]"
        for key in ("area", "iscrowd"):
            if not _are_numbers([annotation[key]]):
                return f"{where} has {key} {annotation[key]!r}, expected a number"
    return "malformed ground-truth annotations"


def _check_indexable(annotations: list) -> None:
    """A ValueError naming the first annotation pycocotools could not index either (not a
    dict, or without ``image_id`` or ``category_id``)."""
    if not all(isinstance(annotation, Mapping) and "image_id" in annotation
               and "category_id" in annotation for annotation in annotations):
        raise ValueError(_annotation_error(annotations))


def _ground_truth_container(gt: str | Path | Mapping | Any
                            ) -> tuple[tuple[Any, ...], tuple[Any, ...], list]:
    """Read and check the COCO container: (sorted image ids, sorted category ids, the
    ``annotations`` list as given)."""
    if isinstance(gt, (str, Path)):
        dataset = _read_json(gt, "ground-truth annotation")
    elif isinstance(gt, Mapping):
        dataset = gt
    elif isinstance(getattr(gt, "dataset", None), Mapping):  # pycocotools / xtcocotools COCO
        dataset = gt.dataset
    else:
        raise TypeError(f"gt must be a COCO json path, dict or COCO object, got "
                        f"{type(gt).__name__}")
    if not isinstance(dataset, Mapping):
        raise ValueError(f"a COCO ground truth is a dict, got {type(dataset).__name__}")  # noqa: TRY004
    images, categories = dataset.get("images"), dataset.get("categories")
    annotations = dataset.get("annotations", [])
    if not images or not categories or not isinstance(annotations, list):
        raise ValueError("a COCO keypoint ground truth needs non-empty 'images' and "
                         "'categories' lists (and an 'annotations' list)")
    try:
        image_ids = tuple(sorted({image["id"] for image in images}))
        category_ids = tuple(sorted({category["id"] for category in categories}))
    except (KeyError, TypeError) as error:
        raise ValueError(f"every COCO image and category needs a sortable 'id' ({error})") \
            from error
    return image_ids, category_ids, annotations


class _AnnotationArrays(NamedTuple):
    """The evaluated annotations as numpy arrays, in file order (G annotations)."""

    ids: list  # [G] the annotations' "id"
    cells: np.ndarray  # [G] int64: category_index * num_images + image_index
    keypoints: np.ndarray  # [G, K, 3] float64 (x, y, v)
    areas: np.ndarray  # [G] float64
    boxes: np.ndarray  # [G, 4] float64 (x, y, w, h)
    crowd: np.ndarray  # [G] bool
    ignore: np.ndarray  # [G] bool
    nonzero_id: np.ndarray  # [G] bool
    num_keypoints: int | None  # K; None when G is 0


def _annotation_arrays(evaluated: list, image_index: dict[Any, int],
                       category_index: dict[Any, int]) -> _AnnotationArrays:
    """Per-annotation arrays of the ``evaluated`` annotations (see :class:`_AnnotationArrays`);
    a malformed one raises ValueError naming the first offending annotation."""
    num_images = len(image_index)
    try:
        ids = [annotation["id"] for annotation in evaluated]
        cells = np.array([category_index[annotation["category_id"]] * num_images
                          + image_index[annotation["image_id"]] for annotation in evaluated],
                         dtype=np.int64)
        keypoints = _numeric_array([annotation["keypoints"] for annotation in evaluated])
        areas = _numeric_array([annotation["area"] for annotation in evaluated])
        boxes = _numeric_array([annotation["bbox"] for annotation in evaluated])
        crowd_values = [annotation["iscrowd"] for annotation in evaluated]
        crowd = np.trunc(_numeric_array(crowd_values)) != 0  # int(iscrowd), as pycocotools
        ignore = np.array([bool(value) or annotation["num_keypoints"] == 0
                           for value, annotation in zip(crowd_values, evaluated)], dtype=bool)
        nonzero_id = np.array([annotation_id != 0 for annotation_id in ids], dtype=bool)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(_annotation_error(evaluated)) from error
    if evaluated and (keypoints.ndim != 2 or keypoints.shape[1] % 3 or boxes.shape[1:] != (4,)):
        raise ValueError(_annotation_error(evaluated))
    num_keypoints = keypoints.shape[1] // 3 if evaluated else None
    return _AnnotationArrays(
        ids=ids, cells=cells,
        keypoints=keypoints.reshape(len(evaluated), num_keypoints or 0, 3), areas=areas,
        boxes=boxes.reshape(len(evaluated), 4), crowd=crowd, ignore=ignore,
        nonzero_id=nonzero_id, num_keypoints=num_keypoints)


def _check_annotation_values(arrays: _AnnotationArrays) -> None:
    """Raise ValueError at the first annotation with a non-finite keypoint, area or box, then at
    the first repeated annotation id."""
    ids, count = arrays.ids, len(arrays.ids)
    for name, values in (("keypoints", arrays.keypoints), ("area", arrays.areas),
                         ("bbox", arrays.boxes)):
        bad = ~np.isfinite(values.reshape(count, -1)).all(axis=1) if count else ()
        if np.any(bad):
            position = int(np.argmax(bad))
            raise ValueError(f"ground-truth annotation {position} (id {ids[position]!r}) has a "
                             f"non-finite {name}")
    if len(set(ids)) != len(ids):
        seen: set = set()
        duplicate = next(annotation_id for annotation_id in ids
                         if annotation_id in seen or seen.add(annotation_id))
        raise ValueError(f"ground-truth annotation id {duplicate!r} is used more than once "
                         "(pycocotools would evaluate only one of them)")


def _build_ground_truth(image_ids: tuple[Any, ...], category_ids: tuple[Any, ...],
                        image_index: dict[Any, int], category_index: dict[Any, int],
                        arrays: _AnnotationArrays) -> CocoKeypointGroundTruth:
    """The :class:`CocoKeypointGroundTruth` of checked arrays: annotations ordered by cell
    (stable, so file order within a cell), as CPU tensors, with the OKS regions derived."""
    order = np.argsort(arrays.cells, kind="stable")
    sorted_int_ids = None
    if all(isinstance(image_id, (int, np.integer)) and not isinstance(image_id, bool)
           for image_id in image_ids):
        sorted_int_ids = torch.tensor(image_ids, dtype=torch.int64)
    keypoints_tensor = torch.from_numpy(arrays.keypoints[order])
    selected, labelled, regions = _gt_regions(keypoints_tensor,
                                              torch.from_numpy(arrays.boxes[order]))
    return CocoKeypointGroundTruth(
        image_ids=image_ids, category_ids=category_ids, image_index=image_index,
        category_index=category_index, num_keypoints=arrays.num_keypoints,
        cells=torch.from_numpy(arrays.cells[order]), keypoints=keypoints_tensor,
        areas=torch.from_numpy(arrays.areas[order]),
        boxes=torch.from_numpy(arrays.boxes[order]),
        crowd=torch.from_numpy(arrays.crowd[order]),
        ignore=torch.from_numpy(arrays.ignore[order]),
        nonzero_id=torch.from_numpy(arrays.nonzero_id[order]),
        sorted_int_image_ids=sorted_int_ids,
        labelled=labelled, joint_order=torch.argsort((~selected).to(torch.uint8), dim=1,
                                                     stable=True),
        joint_counts=selected.sum(dim=1), regions=regions,
    )


def load_coco_keypoint_ground_truth(
    gt: str | Path | Mapping | Any,
) -> CocoKeypointGroundTruth:
    """Parse a COCO keypoint ground truth for :func:`evaluate_coco_keypoints`.

    Args:
        gt: a COCO json path, its loaded dict, a pycocotools ``COCO`` object, or an already
            parsed :class:`CocoKeypointGroundTruth` (returned as is).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a COCO keypoint ground truth (no images or categories, an
            annotation missing a key pycocotools needs, keypoint counts that differ, non-finite
            numbers, repeated annotation ids); the first offending annotation is named.
    """
    if isinstance(gt, CocoKeypointGroundTruth):
        return gt
    image_ids, category_ids, annotations = _ground_truth_container(gt)
    image_index = {image_id: index for index, image_id in enumerate(image_ids)}
    category_index = {category_id: index for index, category_id in enumerate(category_ids)}
    _check_indexable(annotations)
    # pycocotools evaluates only annotations of listed images and categories.
    evaluated = [annotation for annotation in annotations
                 if annotation.get("image_id") in image_index
                 and annotation.get("category_id") in category_index]
    arrays = _annotation_arrays(evaluated, image_index, category_index)
    _check_annotation_values(arrays)
    return _build_ground_truth(image_ids, category_ids, image_index, category_index, arrays)


# ------------------------------------------------------------------------------------------------
# Results


@dataclass
class _Detections:
    """Parsed results, in results-list order (the order that breaks score ties)."""

    image_index: torch.Tensor  # [N] int64
    category_index: torch.Tensor  # [N] int64, -1: category not evaluated (dropped)
    keypoints: torch.Tensor  # [N, K, 2 or 3] float64 (x, y[, score]; the score is unused)
    scores: torch.Tensor  # [N] float64
    # [N] float64 loadRes' area when taken from the results' boxes; None: the keypoints'
    # extent (computed by the evaluation for the detections it keeps).
    areas: torch.Tensor | None


def _result_error(results: list, gt: CocoKeypointGroundTruth, num_keypoints: int) -> str:
    """Why the first malformed results entry is malformed (the slow path of the parser)."""
    uses_bbox = _loadres_uses_bbox(results)
    for position, entry in enumerate(results):
        where = f"results entry {position}"
        if not isinstance(entry, Mapping):
            return f"{where} must be a dict, got {type(entry).__name__}"
        missing = [key for key in RESULT_KEYS if key not in entry]
        if missing:
            return f"{where} lacks keys {missing} (expected {list(RESULT_KEYS)})"
        where = f"{where} (image_id {entry['image_id']!r})"
        keypoints = entry["keypoints"]
        count = len(keypoints) if hasattr(keypoints, "__len__") else None
        if count != 3 * num_keypoints:
            return (f"{where} has {count} keypoint values, expected {3 * num_keypoints} "
                    f"([x, y, score] for {num_keypoints} joints)")
        if not _are_numbers(keypoints):
            return f"{where} has keypoint values that are not numbers: {keypoints!r:.80}"
        values = np.asarray(keypoints, dtype=np.float64)
        score = entry["score"]
        if not isinstance(score, numbers.Real):
            return f"{where} has a score that is not a number: {score!r}"
        if not np.isfinite(values.reshape(-1, 3)[:, :2]).all():
            return f"{where} has non-finite (NaN or infinite) keypoint coordinates"
        if np.isnan(score):
            return f"{where} has a NaN score"
        if entry["image_id"] not in gt.image_index:
            return f"{where} has an image_id that is not in the ground truth"
        if uses_bbox:
            bbox = entry.get("bbox")
            if not hasattr(bbox, "__len__") or len(bbox) < 4:
                return (f"{where} has no 'bbox' [x, y, w, h], which the first entry has (its "
                        "area is then the box's, as pycocotools' loadRes reads it)")
            if not _are_numbers(list(bbox[:4])):
                return f"{where} has a bbox that is not 4 numbers: {bbox!r:.80}"
    return "malformed results"


def _loadres_uses_bbox(results: list) -> bool:
    """pycocotools' loadRes takes every detection's area from its box when the FIRST entry has
    a non-empty ``bbox`` (else from the keypoints' extent)."""
    first = results[0] if results else None
    if not isinstance(first, Mapping) or "bbox" not in first:
        return False
    bbox = first["bbox"]
    return not (isinstance(bbox, list) and bbox == [])


def _parse_results(results: list, gt: CocoKeypointGroundTruth, num_keypoints: int
                   ) -> _Detections:
    count = len(results)
    try:
        image_positions = [gt.image_index.get(entry["image_id"], -1) for entry in results]
        category_positions = [gt.category_index.get(entry["category_id"], -1)
                              for entry in results]
        scores = _numeric_array([entry["score"] for entry in results])
        keypoints = _numeric_array([entry["keypoints"] for entry in results])
        boxes = (_numeric_array([entry["bbox"][:4] for entry in results])
                 if _loadres_uses_bbox(results) else None)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ValueError(_result_error(results, gt, num_keypoints)) from error
    if count == 0:
        keypoints = keypoints.reshape(0, 3 * num_keypoints)
    if keypoints.shape != (count, 3 * num_keypoints) or (boxes is not None
                                                          and boxes.shape != (count, 4)):
        raise ValueError(_result_error(results, gt, num_keypoints))
    keypoints = keypoints.reshape(count, num_keypoints, 3)
    image_index = np.array(image_positions, dtype=np.int64)
    if (image_index < 0).any() or not np.isfinite(keypoints[..., :2]).all() or np.isnan(
            scores).any():
        raise ValueError(_result_error(results, gt, num_keypoints))
    keypoints_tensor = torch.from_numpy(keypoints)
    areas = torch.from_numpy(boxes[:, 2] * boxes[:, 3]) if boxes is not None else None
    return _Detections(
        image_index=torch.from_numpy(image_index),
        category_index=torch.tensor(category_positions, dtype=torch.int64),
        keypoints=keypoints_tensor, scores=torch.from_numpy(scores), areas=areas)


# ------------------------------------------------------------------------------------------------
# The evaluation


def _sigma_tensor(sigmas: Sequence[float] | torch.Tensor | np.ndarray | None,
                  num_keypoints: int | None) -> torch.Tensor:
    if isinstance(sigmas, torch.Tensor):
        sigmas = sigmas.detach().cpu().numpy()
    values = torch.as_tensor(np.asarray(COCO_KEYPOINTS.oks_sigmas if sigmas is None else sigmas,
                                        dtype=np.float64))
    if values.dim() != 1 or values.shape[0] == 0 or not bool(
            (torch.isfinite(values) & (values > 0)).all()):
        raise ValueError(f"OKS sigmas must be positive numbers, one per keypoint; got {sigmas!r}")
    if num_keypoints is not None and values.shape[0] != num_keypoints:
        given = "pycocotools' default (COCO's 17)" if sigmas is None else str(values.shape[0])
        raise ValueError(f"the ground truth has {num_keypoints} keypoints per person but "
                         f"{given} OKS sigmas were given; pass one sigma per keypoint")
    return values


def _gt_regions(gt_keypoints: torch.Tensor, gt_boxes: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per ground truth: the joints its OKS averages over ([G, K]: the labelled ones, or all for
    an unlabelled person), whether any joint is labelled ([G]), and the region its OKS measures
    distances to ([G, 4] x0, y0, x1, y1): the box around the labelled joints or, for an
    unlabelled person, pycocotools' box [x - w, x + 2w] x [y - h, y + 2h]."""
    visible = gt_keypoints[..., 2] > 0
    labelled = visible.any(dim=1)
    if gt_keypoints.shape[0] == 0:
        return visible, labelled, gt_boxes.new_zeros(0, 4)
    box_region = torch.stack([gt_boxes[:, 0] - gt_boxes[:, 2], gt_boxes[:, 1] - gt_boxes[:, 3],
                              gt_boxes[:, 0] + gt_boxes[:, 2] * 2,
                              gt_boxes[:, 1] + gt_boxes[:, 3] * 2], dim=1)
    inf = torch.full_like(gt_keypoints[..., 0], torch.inf)
    joints_region = torch.stack([
        torch.where(visible, gt_keypoints[..., 0], inf).amin(dim=1),
        torch.where(visible, gt_keypoints[..., 1], inf).amin(dim=1),
        torch.where(visible, gt_keypoints[..., 0], -inf).amax(dim=1),
        torch.where(visible, gt_keypoints[..., 1], -inf).amax(dim=1)], dim=1)
    regions = torch.where(labelled[:, None], joints_region, box_region)
    return visible | ~labelled[:, None], labelled, regions


def _reachable(pair_det: torch.Tensor, pair_gt: torch.Tensor, det_low: torch.Tensor,
               det_high: torch.Tensor, gt_regions: torch.Tensor, gt_areas: torch.Tensor,
               variances: torch.Tensor) -> torch.Tensor:
    """[P] bool: False only where the pair's OKS is certainly below 0.5, the lowest threshold.

    An OKS of at least 0.5 needs some joint with ``exp(-e) >= 0.5``, that is within
    ``sqrt(2 ln 2 var (area + eps))`` of its ground truth (or of the box of an unlabelled one);
    no detection joint is nearer than the gap between the detection's joint box and the ground
    truth's region. A margin keeps borderline pairs (their OKS is then computed exactly).
    """
    region = gt_regions[pair_gt]
    low, high = det_low[pair_det], det_high[pair_det]
    zero = torch.zeros((), dtype=region.dtype, device=region.device)
    gap_x = torch.maximum(torch.maximum(low[:, 0] - region[:, 2], region[:, 0] - high[:, 0]), zero)
    gap_y = torch.maximum(torch.maximum(low[:, 1] - region[:, 3], region[:, 1] - high[:, 1]), zero)
    scale = gt_areas + AREA_EPSILON
    reach_squared = 2 * math.log(2) * float(variances.max()) * scale * (1 + 1e-6) + 1e-9
    reach_squared = torch.where(scale > 0, reach_squared, torch.full_like(scale, torch.inf))
    return gap_x * gap_x + gap_y * gap_y <= reach_squared[pair_gt]


def _gt_oks(gt: CocoKeypointGroundTruth, gt_areas: torch.Tensor, det_keypoints: torch.Tensor,
            pair_det: torch.Tensor, pair_gt: torch.Tensor, variances: torch.Tensor
            ) -> torch.Tensor:
    """pycocotools' computeOks for the given pairs -> [P] float64: ``pair_det`` are rows of
    ``det_keypoints`` [N, K, 2 or 3], ``pair_gt`` ground-truth indices.

    Labelled ground truth: ``e = |d - g|^2 / var / (area + eps) / 2`` per joint, averaged over
    its labelled joints. Unlabelled ground truth (crowd regions, people without keypoints):
    the distance of each detected joint to the box [x - w, x + 2w] x [y - h, y + 2h], averaged
    over all joints. The two kinds of pairs are computed apart (they need different data).
    """
    device = variances.device
    scale = gt_areas + AREA_EPSILON
    gt_xy = gt.keypoints[..., :2].to(device).contiguous()
    gt_boxes = gt.boxes.to(device)
    labelled = gt.labelled.to(device)
    counts, joint_order = gt.joint_counts.to(device), gt.joint_order.to(device)
    column = torch.arange(variances.shape[0], device=device)
    oks = torch.empty(pair_gt.shape[0], dtype=torch.float64, device=variances.device)
    is_labelled = labelled[pair_gt]
    for kind in (True, False):
        positions = torch.nonzero(is_labelled == kind)[:, 0]
        for start in range(0, positions.shape[0], _PAIRS_PER_CHUNK):
            chunk = positions[start:start + _PAIRS_PER_CHUNK]
            g = pair_gt[chunk]
            detected = det_keypoints.index_select(0, pair_det[chunk])[..., :2]  # [p, K, 2]
            if kind:
                delta = detected - gt_xy.index_select(0, g)
            else:
                box = gt_boxes[g][:, None, :]  # [p, 1, 4]
                low = box[..., :2] - box[..., 2:]
                high = box[..., :2] + box[..., 2:] * 2
                delta = torch.clamp_min(low - detected, 0) + torch.clamp_min(detected - high, 0)
            squared = delta * delta
            error = (squared[..., 0] + squared[..., 1]) / variances / scale[g][:, None] / 2
            similarity = numpy_exp(-error)
            if kind:
                # The labelled joints first, in joint order, for numpy's summation order.
                similarity = similarity.gather(1, joint_order.index_select(0, g))
                count = counts[g]
                similarity = torch.where(column[None] < count[:, None], similarity,
                                         torch.zeros_like(similarity))
                oks[chunk] = pairwise_sum(similarity, count) / count
            else:
                oks[chunk] = pairwise_sum(similarity, torch.full_like(g, similarity.shape[1])
                                          ) / similarity.shape[1]
    return oks


@dataclass
class _KeptDetections:
    """The detections evaluated (D of the N parsed ones: the best 20 per cell of evaluated
    categories), in (cell, descending score) order, on the evaluation's device."""

    order: torch.Tensor  # [D] int64 rows of ``keypoints`` (positions in the results list)
    cells: torch.Tensor  # [D] int64, ascending
    scores: torch.Tensor  # [D] float64
    keypoints: torch.Tensor  # [N, K, 2 or 3] float64, all parsed detections (read via order)
    low: torch.Tensor  # [D, 2] float64 pixels: the keypoints' smallest x, y
    high: torch.Tensor  # [D, 2] float64 pixels: their largest x, y
    areas: torch.Tensor  # [D] float64 square pixels, loadRes' area


def _top_detections(detections: _Detections, num_images: int, num_cells: int,
                    device: torch.device) -> _KeptDetections:
    """Step 1: detections of evaluated categories by (cell, score), stable; the best 20 per
    cell (``maxDets``), with their keypoint extents and areas."""
    det_cells = (detections.category_index * num_images + detections.image_index).to(device)
    scores = detections.scores.to(device) + 0.0  # -0.0 sorts as 0.0
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(det_cells[order], stable=True)]
    cells = det_cells[order]
    num_dropped = int((cells < 0).sum())  # categories not evaluated (sorted first)
    order, cells = order[num_dropped:], cells[num_dropped:]
    cell_counts = torch.bincount(cells, minlength=num_cells)
    cell_starts = torch.cumsum(cell_counts, 0) - cell_counts
    rank = torch.arange(cells.shape[0], device=device) - cell_starts[cells]
    top = rank < MAX_DETECTIONS
    order, cells = order[top], cells[top]
    # The kept detections' keypoints are read where needed (per pair chunk) through ``order``;
    # their extents are needed for all of them. (index_select: much faster than advanced
    # indexing for whole rows on the CPU.)
    all_keypoints = detections.keypoints.to(device)
    det_low, det_high = torch.aminmax(all_keypoints[..., :2], dim=1)  # [N, 2] each
    det_low, det_high = det_low.index_select(0, order), det_high.index_select(0, order)
    if detections.areas is None:  # loadRes' area of keypoint results: their extent
        det_areas = (det_high[:, 0] - det_low[:, 0]) * (det_high[:, 1] - det_low[:, 1])
    else:
        det_areas = detections.areas.to(device)[order]
    return _KeptDetections(order=order, cells=cells, scores=scores[order],
                           keypoints=all_keypoints, low=det_low, high=det_high, areas=det_areas)


def _cell_pair_oks(gt: CocoKeypointGroundTruth, kept: _KeptDetections, gt_cells: torch.Tensor,
                   gt_areas: torch.Tensor, variances: torch.Tensor, num_cells: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 2: the OKS of every (detection, ground truth) pair of a cell that can reach the
    lowest threshold -> pair_det [P] (kept detections), pair_gt [P], oks [P] float64."""
    device = gt_cells.device
    cells, det_low, det_high = kept.cells, kept.low, kept.high
    gt_counts = torch.bincount(gt_cells, minlength=num_cells)
    gt_starts = torch.cumsum(gt_counts, 0) - gt_counts
    pairs_per_det = gt_counts[cells]
    pair_det = torch.repeat_interleave(torch.arange(cells.shape[0], device=device),
                                       pairs_per_det)
    pair_offsets = torch.cumsum(pairs_per_det, 0) - pairs_per_det
    pair_gt = gt_starts[cells][pair_det] + (
        torch.arange(pair_det.shape[0], device=device) - pair_offsets[pair_det])
    oks = torch.zeros(0, dtype=torch.float64, device=device)
    if pair_det.shape[0] > 0:
        regions = gt.regions.to(device)
        reachable = _reachable(pair_det, pair_gt, det_low, det_high, regions, gt_areas,
                               variances)
        pair_det, pair_gt = pair_det[reachable], pair_gt[reachable]
        # A detection wholly inside an unlabelled person's box region is at distance 0 from
        # it at every joint: e = 0, and the OKS is exactly 1.
        region = regions[pair_gt]
        inside = ~gt.labelled.to(device)[pair_gt] & (
            det_low[pair_det] >= region[:, :2]).all(dim=1) & (
            det_high[pair_det] <= region[:, 2:]).all(dim=1)
        oks = torch.ones(pair_det.shape[0], dtype=torch.float64, device=device)
        computed = torch.nonzero(~inside)[:, 0]
        oks[computed] = _gt_oks(gt, gt_areas, kept.keypoints, kept.order[pair_det[computed]],
                                pair_gt[computed], variances)
    return pair_det, pair_gt, oks


def _match_detections(gt: CocoKeypointGroundTruth, kept: _KeptDetections,
                      pair_det: torch.Tensor, pair_gt: torch.Tensor, oks: torch.Tensor,
                      gt_ignored: torch.Tensor, thresholds: torch.Tensor,
                      area_low: torch.Tensor, area_high: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 3: greedy matching over the pairs that reach the lowest threshold.

    Args:
        pair_det, pair_gt, oks: [P] from :func:`_cell_pair_oks`.
        gt_ignored: [A, G]; thresholds: [T]; area_low, area_high: [A] square pixels.

    Returns:
        [D, A, T] bool each: matched (to a ground truth whose id is not 0: pycocotools stores
        the id, and 0 reads as "no match"), and ignored (matched to an ignored ground truth, or
        unmatched and outside the area range).
    """
    device = oks.device
    (num_areas, num_gt), num_thresholds = gt_ignored.shape, thresholds.shape[0]
    relevant = oks >= thresholds[0]
    pair_det, pair_gt, oks = pair_det[relevant], pair_gt[relevant], oks[relevant]
    det_matched = torch.zeros(kept.cells.shape[0], num_areas, num_thresholds, dtype=torch.bool,
                              device=device)
    matched_ignored = torch.zeros_like(det_matched)
    if pair_det.shape[0] > 0:
        candidates, chosen = _greedy_match(pair_det, pair_gt, oks, kept.cells, gt_ignored,
                                           gt.crowd.to(device), thresholds, num_gt)
        # Lookups with an extra entry (index G) for "no match".
        found = chosen >= 0
        safe = torch.where(found, chosen, torch.full_like(chosen, num_gt))
        nonzero_id = torch.cat([gt.nonzero_id.to(device), torch.zeros(1, dtype=torch.bool,
                                                                      device=device)])
        ignored_by_gt = torch.cat([gt_ignored, torch.zeros(num_areas, 1, dtype=torch.bool,
                                                           device=device)], dim=1)
        det_matched[candidates] = nonzero_id[safe]
        matched_ignored[candidates] = ignored_by_gt.gather(
            1, safe.permute(1, 0, 2).reshape(num_areas, -1)).reshape(
            num_areas, -1, num_thresholds).permute(1, 0, 2)
    det_areas = kept.areas
    det_outside = (det_areas[:, None] < area_low[None]) | (det_areas[:, None] > area_high[None])
    det_ignored = matched_ignored | (~det_matched & det_outside[:, :, None])
    return det_matched, det_ignored


def _accumulate(gt: CocoKeypointGroundTruth, gt_cells: torch.Tensor, gt_ignored: torch.Tensor,
                kept: _KeptDetections, det_matched: torch.Tensor, det_ignored: torch.Tensor
                ) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: accumulation, per category -> precision [T, R, C, A, 1], recall [T, C, A, 1]
    (numpy float64, -1 where undefined). ``det_matched``, ``det_ignored``: [D, A, T] bool."""
    device = gt_cells.device
    num_images, num_categories = gt.num_images, gt.num_categories
    num_thresholds, num_areas = len(IOU_THRESHOLDS), len(AREA_RANGES)
    recall_thresholds = torch.as_tensor(RECALL_THRESHOLDS, device=device)
    gt_categories = gt_cells // num_images
    not_ignored = (~gt_ignored).to(torch.int64)  # [A, G]
    npig = torch.zeros(num_categories, num_areas, dtype=torch.int64, device=device)
    npig.index_add_(0, gt_categories, not_ignored.T)
    det_categories = kept.cells // num_images
    precision = torch.full((num_thresholds, len(RECALL_THRESHOLDS), num_categories, num_areas),
                           -1.0, dtype=torch.float64, device=device)
    recall = torch.full((num_thresholds, num_categories, num_areas), -1.0, dtype=torch.float64,
                        device=device)
    # A category's detections are consecutive (cells are category-major), in (image, rank) order.
    category_counts = torch.bincount(det_categories, minlength=num_categories).tolist()
    category_starts = np.cumsum([0, *category_counts]).tolist()
    for category in torch.nonzero(npig.amax(dim=1) > 0)[:, 0].tolist():
        start, end = category_starts[category], category_starts[category + 1]
        by_score = torch.argsort(kept.scores[start:end], descending=True, stable=True)
        ignored = det_ignored[start:end].index_select(0, by_score)
        true_positive = det_matched[start:end].index_select(0, by_score) & ~ignored
        category_precision, category_recall = _precision_recall(
            true_positive, ignored, npig[category], recall_thresholds)
        defined = npig[category] > 0  # [A]
        precision[:, :, category] = torch.where(defined[None, None], category_precision,
                                                precision[:, :, category])
        recall[:, category] = torch.where(defined[None], category_recall, recall[:, category])
    return precision.cpu().numpy()[..., None], recall.cpu().numpy()[..., None]


def _evaluate(gt: CocoKeypointGroundTruth, detections: _Detections, sigmas: torch.Tensor,
              device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' evaluate() and accumulate() -> precision [T, R, C, A, 1], recall [T, C, A, 1]
    (numpy float64, pycocotools' layout), in the four steps of the module docstring."""
    num_cells = gt.num_images * gt.num_categories
    thresholds = torch.as_tensor(IOU_THRESHOLDS, device=device)
    area_low = torch.tensor([low for low, _ in AREA_RANGES], dtype=torch.float64, device=device)
    area_high = torch.tensor([high for _, high in AREA_RANGES], dtype=torch.float64,
                             device=device)
    variances = (sigmas.to(device) * 2) ** 2
    gt_cells = gt.cells.to(device)
    gt_areas = gt.areas.to(device)
    # [A, G]: ignored in each area range (crowd, no keypoints, or outside the range).
    gt_ignored = gt.ignore.to(device)[None] | (gt_areas[None] < area_low[:, None]) | (
        gt_areas[None] > area_high[:, None])
    kept = _top_detections(detections, gt.num_images, num_cells, device)
    pair_det, pair_gt, oks = _cell_pair_oks(gt, kept, gt_cells, gt_areas, variances, num_cells)
    det_matched, det_ignored = _match_detections(gt, kept, pair_det, pair_gt, oks, gt_ignored,
                                                 thresholds, area_low, area_high)
    return _accumulate(gt, gt_cells, gt_ignored, kept, det_matched, det_ignored)


def _greedy_match(pair_det: torch.Tensor, pair_gt: torch.Tensor, oks: torch.Tensor,
                  cells: torch.Tensor, gt_ignored: torch.Tensor, gt_crowd: torch.Tensor,
                  thresholds: torch.Tensor, num_gt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """pycocotools' evaluateImg matching, for all cells, thresholds and area ranges at once.

    Args:
        pair_det, pair_gt, oks: [P] the (detection, ground truth) pairs with OKS >= the lowest
            threshold, ordered by detection (detections in (cell, rank) order), then ground truth.
        cells: [D] each detection's cell.
        gt_ignored: [A, G]; gt_crowd: [G]; thresholds: [T].

    Returns:
        (the detections that have pairs [D'], their matched ground truth [D', A, T], -1: none).
    """
    device = oks.device
    num_areas, num_thresholds = gt_ignored.shape[0], thresholds.shape[0]
    dets, owner, pair_counts = torch.unique_consecutive(pair_det, return_inverse=True,
                                                        return_counts=True)
    num_candidates, num_slots = dets.shape[0], int(pair_counts.max())
    crowd = torch.cat([gt_crowd, gt_crowd.new_zeros(1)])
    # A detection whose ground truths no other detection can take (crowd regions are never
    # used up) takes its first passing one whatever the order ("alone"); the others take turns
    # by their rank among the contested detections of their cell. The candidates are laid out
    # in that order (alone first, then turn by turn) so that every step works on a slice.
    contested_gt = (torch.bincount(pair_gt, minlength=gt_crowd.shape[0] + 1) > 1) & ~crowd
    contested = torch.zeros(num_candidates, dtype=torch.long, device=device).index_add_(
        0, owner, contested_gt[pair_gt].to(torch.long)) > 0
    alone, contenders = torch.nonzero(~contested)[:, 0], torch.nonzero(contested)[:, 0]
    _, cell_counts = torch.unique_consecutive(cells[dets[contenders]], return_counts=True)
    turn = torch.arange(contenders.shape[0], device=device) - torch.repeat_interleave(
        torch.cumsum(cell_counts, 0) - cell_counts, cell_counts)
    layout = torch.cat([alone, contenders[torch.argsort(turn, stable=True)]])
    step_sizes = [alone.shape[0], *torch.bincount(turn).tolist()]
    position = torch.empty_like(layout)
    position[layout] = torch.arange(num_candidates, device=device)
    # Each candidate's ground truths in the order it prefers them, per area range: non-ignored
    # first, then by OKS, then the later one in the file (pycocotools keeps the last of equal
    # OKS). A sentinel ground truth (index G) fills empty slots and is never available.
    # Layout [A, (T,) candidates, slots]: slots last, for the "first available" search.
    num_pairs = pair_gt.shape[0]
    by_gt = torch.argsort(pair_gt, descending=True, stable=True)
    by_oks = by_gt[torch.argsort(oks[by_gt], descending=True, stable=True)]
    preference = torch.empty_like(by_oks)
    preference[by_oks] = torch.arange(num_pairs, device=device)
    pair_starts = torch.cumsum(pair_counts, 0) - pair_counts
    passes = oks[None] >= thresholds[:, None]  # [T, P]
    slot_gt = torch.full((num_areas, num_candidates, num_slots), num_gt, dtype=torch.long,
                         device=device)
    slot_passes = torch.zeros(num_areas, num_thresholds, num_candidates, num_slots,
                              dtype=torch.bool, device=device)
    for area in range(num_areas):
        key = (owner * 2 + gt_ignored[area, pair_gt].to(torch.long)) * num_pairs + preference
        order = torch.argsort(key)  # keys are distinct
        slot = torch.arange(num_pairs, device=device) - pair_starts[owner[order]]
        slot_gt[area, position[owner[order]], slot] = pair_gt[order]
        slot_passes[area, :, position[owner[order]], slot] = passes[:, order]
    taken = torch.zeros(num_areas, num_thresholds, num_gt + 1, dtype=torch.bool, device=device)
    taken[:, :, num_gt] = True
    chosen = torch.full((num_areas, num_thresholds, num_candidates), -1, dtype=torch.long,
                        device=device)
    start = 0
    for step, size in enumerate(step_sizes):
        if size == 0:
            continue
        ground_truth = slot_gt[:, start:start + size]  # [A, n, S]
        candidate = slot_passes[:, :, start:start + size]  # [A, T, n, S]
        if step > 0:  # the alone ones (step 0) find everything available
            index = ground_truth.reshape(num_areas, 1, -1).expand(-1, num_thresholds, -1)
            available = ~taken.gather(2, index).reshape(num_areas, num_thresholds, size,
                                                        num_slots)
            candidate = candidate & (available | crowd[ground_truth][:, None])
        found = candidate.any(dim=3)  # [A, T, n]
        first = candidate.to(torch.uint8).argmax(dim=3)
        best = ground_truth[:, None].expand(-1, num_thresholds, -1, -1).gather(
            3, first[..., None])[..., 0]
        if step > 0:
            taken.scatter_(2, torch.where(found, best, torch.full_like(best, num_gt)), True)
        chosen[:, :, start:start + size] = torch.where(found, best, torch.full_like(best, -1))
        start += size
    return dets[layout], chosen.permute(2, 0, 1)


def _precision_recall(true_positive: torch.Tensor, ignored: torch.Tensor, npig: torch.Tensor,
                      recall_thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pycocotools' accumulate for one category, from its true positives alone.

    pycocotools builds the precision and recall curves over all N detections, makes precision
    monotone from the right and reads it where recall first reaches each recall threshold. Recall
    only rises at true positives, and between two of them precision only falls, so every value
    read is the monotone precision at a true positive: the maximum of the precisions at it and
    at the later true positives (at the first detection for threshold 0: the maximum of all).
    The precision at the m-th true positive, at position i, is ``m / (fp + m + eps)`` with
    ``fp = i + 1 - m - (ignored detections up to i)``: the same numbers pycocotools divides.

    Args:
        true_positive, ignored: [N, A, T] bool, detections by descending score.
        npig: [A] non-ignored ground truth counts.
        recall_thresholds: [R].

    Returns:
        precision [T, R, A] and recall [T, A] (undefined where npig is 0: the caller masks).
    """
    num_dets, num_areas, num_thresholds = true_positive.shape
    device = true_positive.device
    if num_dets == 0:
        return (torch.zeros(num_thresholds, recall_thresholds.shape[0], num_areas,
                            dtype=torch.float64, device=device),
                torch.zeros(num_thresholds, num_areas, dtype=torch.float64, device=device))
    num_rows = num_areas * num_thresholds  # row = area * T + threshold
    true_positive = true_positive.reshape(num_dets, num_rows).T.contiguous()
    ignored = ignored.reshape(num_dets, num_rows).T.contiguous()
    row, position = torch.nonzero(true_positive, as_tuple=True)  # by row, then position
    tp_total = torch.bincount(row, minlength=num_rows)  # [rows]
    ignored_so_far = torch.cumsum(ignored, dim=1, dtype=torch.int32)[row, position]
    rank = torch.arange(1, row.shape[0] + 1, device=device) - (
        torch.cumsum(tp_total, 0) - tp_total)[row]  # m: 1, 2, ... within each row
    tp_sum = rank.to(torch.float64)
    fp_sum = (position + 1 - rank - ignored_so_far).to(torch.float64)
    precision_at = tp_sum / (fp_sum + tp_sum + AREA_EPSILON)  # eps: np.spacing(1)
    # [rows, max TPs + 1], zeros after each row's true positives (precision is never negative).
    width = int(tp_total.max()) + 1
    curve = torch.zeros(num_rows, width, dtype=torch.float64, device=device)
    curve[row, rank - 1] = precision_at
    envelope = torch.flip(torch.cummax(torch.flip(curve, [1]), dim=1).values, [1])
    # Per area: the fewest true positives m whose recall fl(m / npig) reaches each threshold.
    needed = torch.stack([
        torch.searchsorted(torch.arange(int(count) + 1, device=device, dtype=torch.float64)
                           / max(int(count), 1), recall_thresholds, side="left")
        for count in npig.tolist()])  # [A, R]
    needed = needed.repeat_interleave(num_thresholds, dim=0)  # [rows, R]
    sampled = envelope.gather(1, (needed - 1).clamp(min=0, max=width - 1))
    sampled = torch.where(needed <= tp_total[:, None], sampled, torch.zeros_like(sampled))
    recall = tp_total.to(torch.float64) / npig.clamp(min=1).to(torch.float64).repeat_interleave(
        num_thresholds)
    return (sampled.reshape(num_areas, num_thresholds, -1).permute(1, 2, 0),
            recall.reshape(num_areas, num_thresholds).T)


def _summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """pycocotools' _summarizeKps: means over the defined (> -1) entries, -1 if none."""

    def mean(average_precision: bool, threshold: float | None = None,
             area: str = "all") -> float:
        values = precision if average_precision else recall
        if threshold is not None:
            values = values[np.where(threshold == IOU_THRESHOLDS)[0]]
        area_index = [AREA_NAMES.index(area)]
        values = (values[:, :, :, area_index, [0]] if average_precision
                  else values[:, :, area_index, [0]])
        defined = values[values > -1]
        return -1.0 if len(defined) == 0 else float(np.mean(defined))

    return {
        "AP": mean(True), "AP50": mean(True, .5), "AP75": mean(True, .75),
        "APm": mean(True, area="medium"), "APl": mean(True, area="large"),
        "AR": mean(False), "AR50": mean(False, .5), "AR75": mean(False, .75),
        "ARm": mean(False, area="medium"), "ARl": mean(False, area="large"),
    }


def _resolve_device(device: str | torch.device | None) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


def _finish(gt: CocoKeypointGroundTruth, detections: _Detections, sigmas: Any,
            device: str | torch.device | None, return_arrays: bool):
    num_keypoints = gt.num_keypoints if gt.num_keypoints is not None else (
        detections.keypoints.shape[1])
    sigma_values = _sigma_tensor(sigmas, num_keypoints)
    if detections.keypoints.shape[1] != sigma_values.shape[0]:
        raise ValueError(f"results have {detections.keypoints.shape[1]} keypoints per person "
                         f"but {sigma_values.shape[0]} OKS sigmas were given")
    precision, recall = _evaluate(gt, detections, sigma_values, _resolve_device(device))
    stats = _summarize(precision, recall)
    if return_arrays:
        return stats, {"precision": precision, "recall": recall}
    return stats


def evaluate_coco_keypoints(
    gt: str | Path | Mapping | CocoKeypointGroundTruth | Any,
    results: str | Path | Sequence[Mapping],
    sigmas: Sequence[float] | torch.Tensor | np.ndarray | None = None,
    device: str | torch.device | None = None,
    *,
    return_arrays: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, np.ndarray]]:
    """COCO keypoint AP of ``results``: pycocotools' ``COCOeval(gt, dt, 'keypoints')`` exactly.

    Args:
        gt: the ground truth: a COCO json path, its dict, a pycocotools ``COCO`` object or a
            :class:`CocoKeypointGroundTruth` (parse once with
            :func:`load_coco_keypoint_ground_truth` to evaluate many result sets).
        results: a list of result dicts (``image_id``, ``category_id``, ``keypoints`` as
            [x, y, score] * K in pixels, ``score``) or the path of a json file holding one. The
            dicts are not modified.
        sigmas: [K] per-keypoint OKS sigmas; None: pycocotools' default (the 17 COCO ones).
            Other keypoint sets (counts) need their own sigmas.
        device: where to compute ("cpu", "cuda", ...); None: the CPU.
        return_arrays: also return pycocotools' ``eval['precision']`` [T, R, K, A, M] and
            ``eval['recall']`` [T, K, A, M] (numpy float64, -1 where undefined).

    Returns:
        The ten stats keyed by :data:`METRIC_NAMES` (fractions; -1 where undefined), or
        ``(stats, {"precision": ..., "recall": ...})`` with ``return_arrays``.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: results are not a list, or an entry lacks a key, has the wrong number of
            keypoint values, non-finite coordinates, a NaN score or an image id absent from the
            ground truth (the first offending entry is named); bad ground truth; sigmas that do
            not fit the keypoint count.
    """
    if isinstance(results, (str, Path)):
        results = _read_json(results, "results")
    if not isinstance(results, list):
        # A malformed results file is bad input data, so ValueError like the other checks.
        raise ValueError(  # noqa: TRY004
            f"COCO results must be a list of dicts, got {type(results).__name__}")
    ground_truth = load_coco_keypoint_ground_truth(gt)
    num_keypoints = ground_truth.num_keypoints
    if num_keypoints is None:
        num_keypoints = len(COCO_KEYPOINTS.oks_sigmas) if sigmas is None else len(sigmas)
    detections = _parse_results(results, ground_truth, num_keypoints)
    return _finish(ground_truth, detections, sigmas, device, return_arrays)


def evaluate_coco_keypoints_tensors(
    gt: str | Path | Mapping | CocoKeypointGroundTruth | Any,
    image_ids: torch.Tensor | np.ndarray | Sequence[int],
    keypoints: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray | Sequence[float],
    *,
    category_id: Any = None,
    sigmas: Sequence[float] | torch.Tensor | np.ndarray | None = None,
    device: str | torch.device | None = None,
    return_arrays: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, np.ndarray]]:
    """:func:`evaluate_coco_keypoints` of results given as tensors (no result dicts).

    The same numbers as the result dicts ``{image_id, category_id, keypoints, score}`` listed in
    this order (the order breaks score ties); detection areas are the keypoints' extent, as
    pycocotools' ``loadRes`` computes them for keypoint results.

    Args:
        gt: as in :func:`evaluate_coco_keypoints`; a parsed :class:`CocoKeypointGroundTruth`
            saves its parsing when the same ground truth is evaluated repeatedly.
        image_ids: [N] integer COCO image ids.
        keypoints: [N, K, 2] or [N, K, 3] image pixels (x, y[, score]); the scores are unused,
            as in pycocotools.
        scores: [N] person scores.
        category_id: the results' category; None: the ground truth's only category.
        sigmas, device, return_arrays: as in :func:`evaluate_coco_keypoints`.
    """
    ground_truth = load_coco_keypoint_ground_truth(gt)
    keypoints = torch.as_tensor(keypoints)
    if keypoints.dim() != 3 or keypoints.shape[2] not in (2, 3):
        raise ValueError(f"keypoints must have shape [N, K, 2] or [N, K, 3], got "
                         f"{tuple(keypoints.shape)}")
    count = keypoints.shape[0]
    keypoints = keypoints.to(torch.float64).cpu()
    scores = torch.as_tensor(scores).reshape(-1).to(torch.float64).cpu()
    image_ids = torch.as_tensor(np.asarray(image_ids) if not isinstance(image_ids, torch.Tensor)
                                else image_ids).reshape(-1).cpu()
    if scores.shape[0] != count or image_ids.shape[0] != count:
        raise ValueError(f"expected {count} scores and image ids (one per person), got "
                         f"{scores.shape[0]} and {image_ids.shape[0]}")
    if ground_truth.num_keypoints is not None and keypoints.shape[1] != ground_truth.num_keypoints:
        raise ValueError(f"results have {keypoints.shape[1]} keypoints per person, the ground "
                         f"truth {ground_truth.num_keypoints}")
    if category_id is None:
        if ground_truth.num_categories != 1:
            raise ValueError(f"the ground truth has {ground_truth.num_categories} categories: "
                             "say which one the results are with category_id=")
        category_position = 0
    else:
        category_position = ground_truth.category_index.get(category_id, -1)
    if ground_truth.sorted_int_image_ids is None:
        raise ValueError("the tensor input path needs integer image ids in the ground truth; "
                         "use evaluate_coco_keypoints with result dicts")
    known = ground_truth.sorted_int_image_ids
    image_ids = image_ids.to(torch.int64)
    image_index = torch.searchsorted(known, image_ids).clamp(max=max(len(known) - 1, 0))
    unknown = known[image_index] != image_ids
    finite = torch.ones(count, dtype=torch.bool)
    # A non-finite value makes the sum non-finite, so a finite sum proves every coordinate
    # finite: one contiguous sum is ~8x cheaper than isfinite over the coordinates.
    if not bool(torch.isfinite(keypoints.sum())):
        finite = torch.isfinite(keypoints[..., :2]).all(dim=2).all(dim=1)
    for problem, where in ((unknown, "has an image id that is not in the ground truth"),
                           (~finite, "has non-finite (NaN or infinite) keypoint coordinates"),
                           (torch.isnan(scores), "has a NaN score")):
        if bool(problem.any()):
            position = int(torch.nonzero(problem)[0, 0])
            raise ValueError(f"result {position} (image_id {int(image_ids[position])}) {where}")
    detections = _Detections(
        image_index=image_index,
        category_index=torch.full((count,), category_position, dtype=torch.int64),
        keypoints=keypoints, scores=scores, areas=None)
    return _finish(ground_truth, detections, sigmas, device, return_arrays)
