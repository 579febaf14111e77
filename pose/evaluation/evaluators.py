"""Evaluators: predictions of a val set in, metrics and the results file's entries out.

One evaluator per kind of data, chosen from :data:`EVALUATORS` by the kind's name (the config's
``data.dataset``), never by the dataset's class. An evaluator is built once from the dataset's
annotation source (``for_dataset``), so the ground truth is parsed once, and then scores any
number of :class:`~pose.evaluation.predictions.Predictions` (one per training evaluation).

A new kind of data needs one entry here: a class with ``primary`` (the metric that ranks
checkpoints: ``EvaluationSettings.metric``, or the kind's default), ``for_dataset(dataset,
settings)`` and ``__call__(predictions) -> Evaluation``.

COCO-format data of any keypoint set reports PCK@0.05/0.1/0.2 and EPE (:mod:`pose.evaluation.pck`)
and, when the set has OKS sigmas, COCO AP; MPII reports PCKh and EPE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from pose.evaluation.coco import (
    PERSON_CATEGORY_ID,
    coco_result_entries,
    format_metrics_table,
    rescore_and_nms,
)
from pose.evaluation.coco_eval import (
    METRIC_NAMES,
    CocoKeypointGroundTruth,
    evaluate_coco_keypoints_tensors,
    load_coco_keypoint_ground_truth,
)
from pose.evaluation.nms import NMS_METHODS, rescore
from pose.evaluation.pck import (
    EPE_NAME,
    MISSES_NAME,
    PCK_NAMES,
    PersonGroundTruth,
    epe,
    person_metrics,
)
from pose.evaluation.pckh import PCKH_NAMES, PckhGroundTruth, pckh
from pose.evaluation.predictions import Predictions

# The OKS sigma of every keypoint in the rescoring and OKS-NMS of a set without sigmas: about
# the mean of COCO's 17 (0.067).
UNIFORM_OKS_SIGMA = 0.07
# Metrics that cannot rank checkpoints (best.pt goes to the highest value).
NOT_RANKING = {EPE_NAME: "an error in pixels (lower is better)", MISSES_NAME: "a count"}


@dataclass(frozen=True)
class EvaluationSettings:
    """How predictions are scored (the ``eval.*`` keys that act after decoding).

    visibility_threshold: joints whose peak value is above it count in the pose score
        (official ``IN_VIS_THRE``).
    nms: the per-image suppression of duplicate poses before COCO AP: "oks" (official
        OKS-NMS), "soft_oks" (the official Gaussian soft OKS-NMS) or "none".
    nms_threshold: the OKS threshold of "oks" (official ``OKS_THRE``); the Gaussian width of
        "soft_oks".
    device: where COCO AP is computed (None: the CPU).
    metric: the metric that ranks checkpoints (None: the evaluator's default).
    """

    visibility_threshold: float = 0.2
    nms: str = "oks"
    nms_threshold: float = 0.9
    device: torch.device | str | None = None
    metric: str | None = None

    def __post_init__(self) -> None:
        if self.nms not in NMS_METHODS:
            raise ValueError(f"eval.nms={self.nms!r} is not known: expected one of "
                             f"{', '.join(NMS_METHODS)}")


@dataclass
class Evaluation:
    """A dataset's metrics for one set of predictions."""

    # COCO format: the ten AP stats (with sigmas), PCK (fractions), EPE (pixels); MPII: PCKh
    # (percent), EPE (pixels).
    metrics: dict[str, float]
    results: list[dict[str, Any]]  # what results.json holds
    primary: str  # the metric that ranks checkpoints (eval.metric)
    names: tuple[str, ...]  # the metrics in table order

    @property
    def primary_value(self) -> float:
        return self.metrics[self.primary]

    def table(self) -> str:
        """The metrics as the official logs print them (two rows)."""
        return format_metrics_table(self.metrics, self.names)


class Evaluator(Protocol):
    primary: str  # the metric that ranks checkpoints (best.pt)
    names: tuple[str, ...]  # the metrics it reports, in table order

    @classmethod
    def for_dataset(cls, dataset: Any, settings: EvaluationSettings) -> Evaluator: ...

    def __call__(self, predictions: Predictions) -> Evaluation: ...


def ranking_metric(metric: str | None, names: Sequence[str], default: str) -> str:
    """``metric`` (or ``default`` when None), checked to be one of ``names`` that can rank
    checkpoints; a ValueError naming the choices otherwise."""
    metric = default if metric is None else metric
    choices = [name for name in names if name not in NOT_RANKING]
    if metric in NOT_RANKING:
        raise ValueError(f"eval.metric={metric} cannot pick best.pt, which goes to the highest "
                         f"value: {metric} is {NOT_RANKING[metric]}; choose one of "
                         f"{', '.join(choices)}")
    if metric not in choices:
        raise ValueError(f"eval.metric={metric!r} is not reported here: choose one of "
                         f"{', '.join(choices)}")
    return metric


def coco_metric_names(has_sigmas: bool, detections: bool = False) -> tuple[str, ...]:
    """The metrics :class:`CocoEvaluator` reports: AP's ten (with sigmas), PCK, EPE, and the
    people without a matching detection (with detector boxes)."""
    return ((METRIC_NAMES if has_sigmas else ()) + PCK_NAMES + (EPE_NAME,)
            + ((MISSES_NAME,) if detections else ()))


def default_metric(kind: str, has_sigmas: bool) -> str:
    """What ranks checkpoints when ``eval.metric`` is not given: AP for a COCO-format set with
    sigmas, PCK@0.2 for one without, PCKh's Mean for MPII."""
    if kind == "mpii":
        return "Mean"
    return "AP" if has_sigmas else "PCK@0.2"


def single_category(annotations: dict[str, Any], category_id: Any) -> dict[str, Any]:
    """A COCO json restricted to one category (its entry, its annotations): what pycocotools
    evaluates with ``params.catIds = [category_id]``. A json of one category is returned as is."""
    categories = annotations.get("categories") or []
    if len(categories) <= 1:
        return annotations
    return {**annotations,
            "categories": [entry for entry in categories if entry.get("id") == category_id],
            "annotations": [entry for entry in annotations.get("annotations", [])
                            if isinstance(entry, dict) and entry.get("category_id") == category_id]}


class CocoEvaluator:
    """COCO-format keypoints of any set: PCK and EPE for every set; COCO keypoint AP (equal to
    pycocotools with the same sigmas) after the official rescoring and OKS-NMS when the set has
    OKS sigmas.

    Args:
        ground_truth: the parsed annotation file (:class:`CocoKeypointGroundTruth`), of the
            dataset's category only.
        sigmas: [K] OKS sigmas for the NMS and the AP; None: a set without sigmas (no AP; the
            NMS uses :data:`UNIFORM_OKS_SIGMA`).
        settings: rescoring, NMS, device and the ranking metric.
        people: the people of the PCK and EPE (None: neither is reported).
        category_id: the category of the results entries (None: the ground truth's only
            category, else COCO's person).
    """

    def __init__(self, ground_truth: CocoKeypointGroundTruth, sigmas: Sequence[float] | None,
                 settings: EvaluationSettings = EvaluationSettings(), *,
                 people: PersonGroundTruth | None = None, category_id: Any = None) -> None:
        self.ground_truth = ground_truth
        self.sigmas = sigmas
        self.settings = settings
        self.people = people
        if category_id is None:
            category_id = (ground_truth.category_ids[0] if ground_truth.num_categories == 1
                           else PERSON_CATEGORY_ID)
        self.category_id = category_id
        names = coco_metric_names(sigmas is not None,
                                  people is not None and people.crop_boxes is not None)
        self.names = names if people is not None else tuple(
            name for name in names if name in METRIC_NAMES)
        self.primary = ranking_metric(settings.metric, self.names,
                                      default_metric("coco", sigmas is not None))

    @classmethod
    def for_dataset(cls, dataset: Any, settings: EvaluationSettings) -> CocoEvaluator:
        """From a COCO-format dataset: the ground truth of its annotation file (the dataset's
        parse of it, ``annotations``, when it kept one) for its category, its keypoints' OKS
        sigmas, its people (``person_ground_truth()``) and its ``category_id``."""
        source = getattr(dataset, "annotations", None)
        category_id = getattr(dataset, "category_id", None)
        if source is None:
            source = dataset.annotation_file
        elif category_id is not None:
            source = single_category(source, category_id)
        try:
            ground_truth = load_coco_keypoint_ground_truth(source)
        except ValueError as error:
            raise ValueError(f"{dataset.annotation_file}: {error}") from error
        return cls(ground_truth, dataset.keypoints.oks_sigmas, settings,
                   people=dataset.person_ground_truth(), category_id=category_id)

    def __call__(self, predictions: Predictions) -> Evaluation:
        """Rescoring, NMS, AP (with sigmas), PCK and EPE; ``results`` are the official results
        entries of the kept poses, with the dataset's category."""
        predictions = predictions.in_dataset_order()
        num_joints = predictions.keypoints.shape[1]
        nms_sigmas = (self.sigmas if self.sigmas is not None
                      else (UNIFORM_OKS_SIGMA,) * num_joints)
        kept, scores = rescore_and_nms(
            predictions.maxvals, predictions.keypoints, predictions.scales,
            predictions.box_scores, predictions.image_ids, sigmas=nms_sigmas,
            visibility_threshold=self.settings.visibility_threshold,
            nms=self.settings.nms, oks_threshold=self.settings.nms_threshold)
        metrics: dict[str, float] = {}
        if self.sigmas is not None:
            metrics.update(evaluate_coco_keypoints_tensors(
                self.ground_truth, predictions.image_ids[kept], predictions.keypoints[kept],
                scores[kept], category_id=self.category_id, sigmas=self.sigmas,
                device=self.settings.device))
        if self.people is not None:
            metrics.update(person_metrics(self.people, predictions.keypoints,
                                          predictions.indices, predictions.image_ids))
        results = coco_result_entries(kept, scores, predictions.keypoints, predictions.maxvals,
                                      predictions.centers, predictions.scales,
                                      predictions.image_ids, category_id=self.category_id)
        return Evaluation(metrics, results, self.primary, self.names)


class MpiiEvaluator:
    """MPII PCKh (:func:`pose.evaluation.pckh`) and EPE (pixels, :func:`pose.evaluation.pck.epe`)
    of one prediction per annotated person.

    Args:
        ground_truth: joints, visibilities and head boxes of the split's people, in order.
        image_names: image file names by (0-based) image id, for the results entries.
        settings: the rescoring threshold (MPII has no NMS: one crop per annotated person) and
            the ranking metric.
    """

    names = (*PCKH_NAMES, EPE_NAME)

    def __init__(self, ground_truth: PckhGroundTruth, image_names: Sequence[str],
                 settings: EvaluationSettings = EvaluationSettings()) -> None:
        self.ground_truth = ground_truth
        self.image_names = list(image_names)
        self.settings = settings
        self.primary = ranking_metric(settings.metric, self.names, default_metric("mpii", False))

    @classmethod
    def for_dataset(cls, dataset: Any, settings: EvaluationSettings) -> MpiiEvaluator:
        """From an MPII dataset: its PCKh ground truth and image names."""
        return cls(dataset.pckh_ground_truth(), dataset.image_names, settings)

    def __call__(self, predictions: Predictions) -> Evaluation:
        """The PCKh table (percent); ``results`` hold one entry per person: ``index``,
        ``image``, ``image_id``, ``keypoints`` ([x, y, maxval] * 16, 0-based pixels),
        ``score`` (mean maxval above the visibility threshold), ``center``, ``scale``."""
        predictions = predictions.in_dataset_order()
        count = self.ground_truth.joints.shape[0]
        if predictions.indices.tolist() != list(range(count)):
            raise ValueError(f"PCKh needs one prediction per person of the split: got "
                             f"{predictions.indices.shape[0]} for {count} people")
        joints = torch.from_numpy(self.ground_truth.joints)
        visible = torch.from_numpy(self.ground_truth.visible)
        metrics = pckh(predictions.keypoints, joints, visible,
                       torch.from_numpy(self.ground_truth.head_boxes))
        metrics[EPE_NAME] = epe(predictions.keypoints, joints, visible > 0)
        scores = rescore(predictions.maxvals, predictions.box_scores,
                         self.settings.visibility_threshold)
        poses = torch.cat([predictions.keypoints, predictions.maxvals[..., None]], dim=2)
        results = [
            {"index": index, "image": self.image_names[image_id], "image_id": image_id,
             "keypoints": pose, "score": score, "center": center, "scale": scale}
            for index, image_id, pose, score, center, scale in zip(
                predictions.indices.tolist(), predictions.image_ids.tolist(),
                poses.reshape(poses.shape[0], -1).to(torch.float64).tolist(), scores.tolist(),
                predictions.centers.to(torch.float64).tolist(),
                predictions.scales.to(torch.float64).tolist(), strict=True)
        ]
        return Evaluation(metrics, results, self.primary, self.names)


# The evaluator of each kind of data (the config's data.dataset).
EVALUATORS: dict[str, type[Evaluator]] = {"coco": CocoEvaluator, "mpii": MpiiEvaluator}


def evaluator_for(kind: str, dataset: Any,
                    settings: EvaluationSettings = EvaluationSettings()) -> Evaluator:
    """The evaluator of ``dataset``, a dataset of the kind ``kind`` (a key of
    :data:`EVALUATORS`)."""
    if kind not in EVALUATORS:
        raise ValueError(f"no evaluator for data of kind {kind!r}: expected one of "
                         f"{', '.join(EVALUATORS)}")
    return EVALUATORS[kind].for_dataset(dataset, settings)
