"""Evaluators: predictions of a val set in, metrics and the results file's entries out.

One evaluator per kind of data, chosen from :data:`EVALUATORS` by the kind's name (the config's
``data.dataset``), never by the dataset's class. An evaluator is built once from the dataset's
annotation source (``for_dataset``), so the ground truth is parsed once, and then scores any
number of :class:`~pose.evaluation.predictions.Predictions` (one per training evaluation).

A new kind of data needs one entry here: a class with ``primary`` (the metric that ranks
checkpoints), ``for_dataset(dataset, settings)`` and ``__call__(predictions) -> Evaluation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from pose.evaluation.coco import coco_result_entries, format_metrics_table, rescore_and_nms
from pose.evaluation.coco_eval import (
    METRIC_NAMES,
    CocoKeypointGroundTruth,
    evaluate_coco_keypoints_tensors,
    load_coco_keypoint_ground_truth,
)
from pose.evaluation.nms import NMS_METHODS, rescore
from pose.evaluation.pckh import PCKH_NAMES, PckhGroundTruth, pckh
from pose.evaluation.predictions import Predictions


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
    """

    visibility_threshold: float = 0.2
    nms: str = "oks"
    nms_threshold: float = 0.9
    device: torch.device | str | None = None

    def __post_init__(self) -> None:
        if self.nms not in NMS_METHODS:
            raise ValueError(f"eval.nms={self.nms!r} is not known: expected one of "
                             f"{', '.join(NMS_METHODS)}")


@dataclass
class Evaluation:
    """A dataset's metrics for one set of predictions."""

    metrics: dict[str, float]  # COCO: the ten stats (fractions); MPII: PCKh (percent)
    results: list[dict[str, Any]]  # what results.json holds
    primary: str  # the metric that ranks checkpoints: "AP" (COCO) or "Mean" (MPII)
    names: tuple[str, ...]  # the metrics in table order

    @property
    def primary_value(self) -> float:
        return self.metrics[self.primary]

    def table(self) -> str:
        """The metrics as the official logs print them (two rows)."""
        return format_metrics_table(self.metrics, self.names)


class Evaluator(Protocol):
    primary: str  # the metric that ranks checkpoints (best.pt)

    @classmethod
    def for_dataset(cls, dataset: Any, settings: EvaluationSettings) -> Evaluator: ...

    def __call__(self, predictions: Predictions) -> Evaluation: ...


class CocoEvaluator:
    """COCO keypoint AP (equal to pycocotools) after the official rescoring and OKS-NMS.

    Args:
        ground_truth: the parsed annotation file (:class:`CocoKeypointGroundTruth`).
        sigmas: [K] OKS sigmas (None: COCO's), for the NMS and the AP.
        settings: rescoring, NMS and device.
    """

    primary = "AP"
    names = METRIC_NAMES

    def __init__(self, ground_truth: CocoKeypointGroundTruth, sigmas: Sequence[float] | None,
                 settings: EvaluationSettings = EvaluationSettings()) -> None:
        self.ground_truth = ground_truth
        self.sigmas = sigmas
        self.settings = settings

    @classmethod
    def for_dataset(cls, dataset: Any, settings: EvaluationSettings) -> CocoEvaluator:
        """From a COCO-format dataset: the ground truth of its annotation file (the dataset's
        parse of it, ``annotations``, when it kept one) and its keypoints' OKS sigmas."""
        source = getattr(dataset, "annotations", None) or dataset.annotation_file
        try:
            ground_truth = load_coco_keypoint_ground_truth(source)
        except ValueError as error:
            raise ValueError(f"{dataset.annotation_file}: {error}") from error
        return cls(ground_truth, dataset.keypoints.oks_sigmas, settings)

    def __call__(self, predictions: Predictions) -> Evaluation:
        """Rescoring, NMS, AP; ``results`` are the official results entries of the kept poses."""
        predictions = predictions.in_dataset_order()
        kept, scores = rescore_and_nms(
            predictions.maxvals, predictions.keypoints, predictions.scales,
            predictions.box_scores, predictions.image_ids, sigmas=self.sigmas,
            visibility_threshold=self.settings.visibility_threshold,
            nms=self.settings.nms, oks_threshold=self.settings.nms_threshold)
        metrics = evaluate_coco_keypoints_tensors(
            self.ground_truth, predictions.image_ids[kept], predictions.keypoints[kept],
            scores[kept], sigmas=self.sigmas, device=self.settings.device)
        results = coco_result_entries(kept, scores, predictions.keypoints, predictions.maxvals,
                                      predictions.centers, predictions.scales,
                                      predictions.image_ids)
        return Evaluation(metrics, results, self.primary, self.names)


class MpiiEvaluator:
    """MPII PCKh (:func:`pose.evaluation.pckh`) of one prediction per annotated person.

    Args:
        ground_truth: joints, visibilities and head boxes of the split's people, in order.
        image_names: image file names by (0-based) image id, for the results entries.
        settings: the rescoring threshold (MPII has no NMS: one crop per annotated person).
    """

    primary = "Mean"
    names = PCKH_NAMES

    def __init__(self, ground_truth: PckhGroundTruth, image_names: Sequence[str],
                 settings: EvaluationSettings = EvaluationSettings()) -> None:
        self.ground_truth = ground_truth
        self.image_names = list(image_names)
        self.settings = settings

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
        metrics = pckh(predictions.keypoints, torch.from_numpy(self.ground_truth.joints),
                       torch.from_numpy(self.ground_truth.visible),
                       torch.from_numpy(self.ground_truth.head_boxes))
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
