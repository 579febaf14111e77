"""PCK and EPE against hand-worked cases; the matching of people to detections; what the COCO
and MPII evaluators report with them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pose.evaluation import load_coco_keypoint_ground_truth
from pose.evaluation.evaluators import (
    UNIFORM_OKS_SIGMA,
    CocoEvaluator,
    EvaluationSettings,
    MpiiEvaluator,
)
from pose.evaluation.pck import (
    PersonGroundTruth,
    box_iou,
    epe,
    match_by_box,
    pck,
    person_metrics,
)
from pose.evaluation.pckh import PckhGroundTruth
from pose.evaluation.predictions import Predictions

NAN = float("nan")


def two_people():
    """Person A (box 100 x 50: normaliser 100) and person B (box 40 x 80: normaliser 80), two
    joints each; B's second joint is unlabelled (its huge error must not count)."""
    gt = torch.tensor([[[10.0, 10.0], [50.0, 20.0]], [[5.0, 5.0], [20.0, 30.0]]])
    offsets = torch.tensor([[[3.0, 4.0], [6.0, 8.0]], [[0.0, 2.0], [500.0, 0.0]]])
    labelled = torch.tensor([[True, True], [True, False]])
    boxes = torch.tensor([[0.0, 0.0, 100.0, 50.0], [0.0, 0.0, 40.0, 80.0]])
    return gt + offsets, gt, labelled, boxes


def test_pck_is_the_mean_of_each_keypoints_pck_as_worked_by_hand():
    pred, gt, labelled, boxes = two_people()
    # Normalised errors: A 5/100 = 0.05 and 10/100 = 0.1; B 2/80 = 0.025 (strictly below α
    # counts). Joint 0 (A, B): 1/2, 2/2, 2/2; joint 1 (A only): 0, 0, 1.
    metrics = pck(pred, gt, labelled, boxes[:, 2:].amax(dim=1))
    assert metrics == {"PCK@0.05": 0.25, "PCK@0.1": 0.5, "PCK@0.2": 1.0}
    assert epe(pred, gt, labelled) == pytest.approx((5 + 10 + 2) / 3, abs=1e-15)


def test_a_person_without_prediction_is_wrong_for_pck_and_left_out_of_epe():
    pred, gt, labelled, boxes = two_people()
    # B has no prediction: joint 0 counts A right and B wrong (1/2 at 0.1 and 0.2), joint 1
    # (A only) is right at 0.2.
    pred[1] = NAN
    metrics = pck(pred, gt, labelled, boxes[:, 2:].amax(dim=1))
    assert metrics == {"PCK@0.05": 0.0, "PCK@0.1": 0.25, "PCK@0.2": 0.75}
    assert epe(pred, gt, labelled) == pytest.approx(7.5, abs=1e-15)
    nothing = torch.zeros_like(labelled)
    assert pck(pred, gt, nothing, torch.ones(2))["PCK@0.2"] == 0.0
    assert epe(pred, gt, nothing) == 0.0


def test_box_iou_as_worked_by_hand():
    first = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    second = torch.tensor([[0.0, 0.0, 10.0, 8.0], [5.0, 0.0, 10.0, 10.0], [20.0, 20.0, 5.0, 5.0],
                           [0.0, 0.0, 0.0, 0.0]])
    assert box_iou(first, second).tolist() == [[0.8, 50 / 150, 0.0, 0.0]]


def test_each_person_takes_the_detection_of_highest_iou_in_its_image():
    person_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 0.0, 10.0, 10.0],
                                 [0.0, 0.0, 10.0, 10.0]])
    person_images = torch.tensor([1, 1, 2])
    crop_boxes = torch.tensor([
        [0.0, 0.0, 10.0, 6.0],     # image 1: IoU 0.6 with person 0
        [0.0, 0.0, 10.0, 8.0],     # image 1: IoU 0.8 with person 0: chosen
        [0.0, 0.0, 10.0, 10.0],    # image 2: IoU 1 with person 0, but another image
        [104.0, 0.0, 10.0, 10.0],  # image 1: IoU 6/14 < 0.5 with person 1: a miss
        [0.0, 0.0, 10.0, 5.0],     # image 2: IoU 0.5 with person 2, the crop above is better
    ])
    crop_images = torch.tensor([1, 1, 2, 1, 2])
    assert match_by_box(person_boxes, person_images, crop_boxes, crop_images).tolist() == [
        1, -1, 2]
    # Exactly 0.5 is enough.
    assert match_by_box(person_boxes[2:], person_images[2:], crop_boxes[4:],
                        crop_images[4:]).tolist() == [0]


def test_person_metrics_with_detector_boxes_count_the_misses():
    pred, gt, labelled, boxes = two_people()
    people = PersonGroundTruth(image_ids=torch.tensor([7, 7]), joints=gt.double(),
                               labelled=labelled, boxes=boxes.double(),
                               crop_boxes=torch.tensor([[50.0, 50.0, 10.0, 10.0],
                                                        [0.0, 0.0, 100.0, 50.0]]))
    # Crop 1 is A's box; nothing overlaps B's enough (IoU of A's and B's boxes: 2000/5200).
    metrics = person_metrics(people, pred[[1, 0]], torch.tensor([0, 1]), torch.tensor([7, 7]))
    assert metrics == {"PCK@0.05": 0.0, "PCK@0.1": 0.25, "PCK@0.2": 0.75, "EPE": 7.5,
                       "misses": 1}


def test_person_metrics_with_ground_truth_boxes_use_each_persons_own_crop():
    pred, gt, labelled, boxes = two_people()
    people = PersonGroundTruth(image_ids=torch.tensor([7, 7]), joints=gt.double(),
                               labelled=labelled, boxes=boxes.double(),
                               crop_person=torch.tensor([1, 0]))
    # Crop 0 predicts person B, crop 1 person A (the predictions come in dataset order).
    metrics = person_metrics(people, pred[[1, 0]], torch.tensor([0, 1]), torch.tensor([7, 7]))
    assert metrics == {"PCK@0.05": 0.25, "PCK@0.1": 0.5, "PCK@0.2": 1.0,
                       "EPE": pytest.approx(17 / 3, abs=1e-15)}
    with pytest.raises(ValueError, match="exactly one of crop_person"):
        PersonGroundTruth(image_ids=people.image_ids, joints=gt, labelled=labelled, boxes=boxes)


# ------------------------------------------------------------------------------------------------
# The evaluators


def four_joint_dataset(category_id: int = 3) -> tuple[dict, torch.Tensor]:
    """One image, two people of four joints (category ``category_id``), and their joints."""
    joints = torch.tensor([[[20.0, 20.0], [40.0, 22.0], [30.0, 60.0], [31.0, 90.0]],
                           [[120.0, 30.0], [150.0, 35.0], [135.0, 80.0], [140.0, 110.0]]])
    annotations = [
        {"id": index + 1, "image_id": 5, "category_id": category_id, "iscrowd": 0,
         "num_keypoints": 4, "area": 5000.0, "bbox": box,
         "keypoints": [value for point in person.tolist() for value in (*point, 2)]}
        for index, (person, box) in enumerate(zip(joints, ([15, 15, 30, 80], [115, 25, 40, 90]),
                                                  strict=True))]
    return {"images": [{"id": 5, "width": 200, "height": 200, "file_name": "5.jpg"}],
            "categories": [{"id": category_id, "name": "thing",
                            "keypoints": ["a", "b", "c", "d"]}],
            "annotations": annotations}, joints


def predictions_of(keypoints: torch.Tensor) -> Predictions:
    count = keypoints.shape[0]
    return Predictions(keypoints=keypoints.float(), maxvals=torch.full(keypoints.shape[:2], 0.9),
                       centers=torch.zeros(count, 2), scales=torch.ones(count, 2),
                       box_scores=torch.ones(count), image_ids=torch.full((count,), 5),
                       indices=torch.arange(count))


def test_a_set_without_sigmas_reports_pck_and_epe_and_writes_its_category(pycocotools_eval):
    annotations, joints = four_joint_dataset()
    people = PersonGroundTruth(image_ids=torch.tensor([5, 5]), joints=joints.double(),
                               labelled=torch.ones(2, 4, dtype=torch.bool),
                               boxes=torch.tensor([a["bbox"] for a in annotations["annotations"]],
                                                  dtype=torch.float64),
                               crop_person=torch.arange(2))
    shifted = joints + torch.tensor([3.0, 4.0])  # 5 px off: 5/80 and 5/90 of the boxes
    evaluator = CocoEvaluator(load_coco_keypoint_ground_truth(annotations), None, people=people)
    evaluation = evaluator(predictions_of(shifted))
    assert evaluation.primary == "PCK@0.2"
    assert evaluation.metrics == {"PCK@0.05": 0.0, "PCK@0.1": 1.0, "PCK@0.2": 1.0,
                                  "EPE": pytest.approx(5.0, abs=1e-12)}
    assert "AP" not in evaluation.table() and "| EPE" in evaluation.table()
    assert {entry["category_id"] for entry in evaluation.results} == {3}
    assert len(evaluation.results) == 2  # far apart: the uniform-sigma OKS-NMS keeps both
    assert UNIFORM_OKS_SIGMA == 0.07
    # With sigmas: AP as pycocotools computes it on the written results, same sigmas.
    sigmas = [0.03, 0.05, 0.08, 0.1]
    with_ap = CocoEvaluator(load_coco_keypoint_ground_truth(annotations), sigmas, people=people,
                            settings=EvaluationSettings(metric="PCK@0.1"))
    evaluation = with_ap(predictions_of(shifted))
    assert evaluation.primary == "PCK@0.1" and evaluation.metrics["PCK@0.1"] == 1.0
    reference = pycocotools_eval(annotations, evaluation.results, sigmas=sigmas).stats
    assert 0 < evaluation.metrics["AP"] < 1
    assert [evaluation.metrics[name] for name in ("AP", "AP50", "AP75", "AR")] == [
        reference[0], reference[1], reference[2], reference[5]]


def test_mpii_reports_epe_beside_pckh():
    count = 3
    generator = torch.Generator().manual_seed(1)
    joints = torch.rand(count, 16, 2, generator=generator, dtype=torch.float64) * 200
    visible = torch.ones(count, 16, dtype=torch.int64)
    visible[0, :4] = 0
    head_boxes = torch.tensor([[[0.0, 0.0], [30.0, 40.0]]] * count, dtype=torch.float64)
    ground_truth = PckhGroundTruth(joints=joints.numpy(), visible=visible.numpy(),
                                   head_boxes=head_boxes.numpy(), source="test")
    keypoints = joints + torch.tensor([3.0, 4.0], dtype=torch.float64)
    keypoints[0, :4] += 1000.0  # unannotated: left out
    evaluation = MpiiEvaluator(ground_truth, ["a.jpg"])(Predictions(
        keypoints=keypoints.float(), maxvals=torch.full((count, 16), 0.9),
        centers=torch.zeros(count, 2), scales=torch.ones(count, 2), box_scores=torch.ones(count),
        image_ids=torch.zeros(count, dtype=torch.int64), indices=torch.arange(count)))
    assert evaluation.primary == "Mean"
    # float32 keypoints: 5 px up to their rounding.
    assert math.isclose(evaluation.metrics["EPE"], 5.0, abs_tol=1e-4)
    assert evaluation.metrics["Mean"] == 100.0  # 5 px < 0.5 * 0.6 * 50 px
    assert list(evaluation.metrics)[-1] == "EPE" and "| EPE" in evaluation.table()
    with pytest.raises(ValueError, match="eval.metric='AP' is not reported here"):
        MpiiEvaluator(ground_truth, ["a.jpg"], EvaluationSettings(metric="AP"))
    assert np.isfinite(evaluation.metrics["Mean@0.1"])
