"""OKS, OKS-NMS, soft OKS-NMS and rescoring against the official HRNet nms.py (oks_nms.json)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pose.data.keypoints import COCO_KEYPOINTS
from pose.evaluation.nms import oks_iou, oks_matrix, oks_nms, rescore, score_order, soft_oks_nms

# OKS values are float64 sums of 17 exponentials: agree to a few float64 steps.
OKS_TOLERANCE = 1e-15


@pytest.fixture(scope="module")
def groups(reference_dir):
    with (reference_dir / "pipeline" / "oks_nms.json").open() as handle:
        fixture = json.load(handle)
    np.testing.assert_allclose(fixture["sigmas"], COCO_KEYPOINTS.oks_sigmas, rtol=1e-15)
    result = []
    for group in fixture["groups"]:
        keypoints = torch.tensor(group["keypoints"], dtype=torch.float64)
        result.append({**group, "keypoints": keypoints.reshape(len(group["scores"]), -1, 3)})
    return result


def test_oks_iou_matches_official(groups):
    for group in groups:
        keypoints, areas = group["keypoints"], group["areas"]
        oks = oks_iou(keypoints[0], keypoints[1:], areas[0], areas[1:])
        np.testing.assert_allclose(oks.numpy(), group["oks_iou_first_vs_rest"], rtol=0,
                                   atol=OKS_TOLERANCE)
        matrix = oks_matrix(keypoints, areas)
        np.testing.assert_allclose(matrix[0, 1:].numpy(), group["oks_iou_first_vs_rest"],
                                   rtol=0, atol=OKS_TOLERANCE)
        torch.testing.assert_close(matrix, matrix.T, rtol=0, atol=0)


def test_oks_visibility_threshold_reproduces_official_mask_bug(groups):
    """Quirk P7: only the candidate's joint scores select joints, not both poses'."""
    differs_from_both_mask = False
    for group in groups:
        keypoints, areas = group["keypoints"], group["areas"]
        if len(keypoints) < 2:
            continue
        expected = group["oks_iou_first_vs_rest_in_vis_thre0.2"]
        oks = oks_iou(keypoints[0], keypoints[1:], areas[0], areas[1:], visibility_threshold=0.2)
        np.testing.assert_allclose(oks.numpy(), expected, rtol=0, atol=OKS_TOLERANCE)
        # What the official code meant (both scores above the threshold) is a different number.
        unmasked = oks_iou(keypoints[0], keypoints[1:], areas[0], areas[1:])
        both = (keypoints[0, :, 2] > 0.2) & (keypoints[1:, :, 2] > 0.2)
        # mean over the selected joints of exp(-e) = recovered per joint from single-joint OKS
        per_joint = torch.stack([
            oks_iou(keypoints[0, joint:joint + 1], keypoints[1:, joint:joint + 1], areas[0],
                    areas[1:], sigmas=[COCO_KEYPOINTS.oks_sigmas[joint]])
            for joint in range(keypoints.shape[1])
        ], dim=1)
        np.testing.assert_allclose(per_joint.mean(dim=1).numpy(), unmasked.numpy(), atol=1e-15)
        intended = (per_joint * both).sum(dim=1) / both.sum(dim=1).clamp(min=1)
        differs_from_both_mask |= bool((intended - torch.tensor(expected)).abs().max() > 1e-6)
    assert differs_from_both_mask


def test_oks_hand_worked():
    reference = torch.tensor([[10.0, 20.0, 1.0], [30.0, 40.0, 1.0]])
    candidates = torch.tensor([[[10.0, 20.0, 1.0], [33.0, 44.0, 0.1]]])
    sigmas = [0.5, 0.25]
    oks = oks_iou(reference, candidates, 100.0, [300.0], sigmas=sigmas)
    # joint 1: d^2 = 25, var = (2*0.25)^2 = 0.25, area = 200 -> e = 25 / 0.25 / 200 / 2 = 0.25
    assert oks.item() == pytest.approx((1.0 + math.exp(-0.25)) / 2, abs=1e-15)
    masked = oks_iou(reference, candidates, 100.0, [300.0], sigmas=sigmas,
                     visibility_threshold=0.2)
    assert masked.item() == 1.0  # only joint 0 of the candidate is above the threshold
    none_visible = oks_iou(reference, candidates, 100.0, [300.0], sigmas=sigmas,
                           visibility_threshold=5.0)
    assert none_visible.item() == 0.0
    with pytest.raises(ValueError, match="OKS sigmas"):
        oks_iou(reference, candidates, 100.0, [300.0])  # 2 joints, default 17 COCO sigmas


def test_oks_nms_and_soft_oks_nms_match_official(groups):
    for group in groups:
        keypoints, scores, areas = group["keypoints"], group["scores"], group["areas"]
        assert oks_nms(keypoints, scores, areas, threshold=0.9) == group["oks_nms_keep_thr0.9"]
        assert soft_oks_nms(keypoints, scores, areas, threshold=0.9) == \
            group["soft_oks_nms_keep_thr0.9"]
        # Same decisions on float32 input tensors.
        assert oks_nms(keypoints.float(), torch.tensor(scores), torch.tensor(areas)) == \
            group["oks_nms_keep_thr0.9"]


def test_equal_scores_follow_numpy_reversed_argsort():
    """Official order is np.argsort(scores)[::-1]; numpy's default sort is not stable, so equal
    scores come in numpy's order (here checked against numpy itself on this machine)."""
    generator = np.random.default_rng(0)
    cases = [[0.5, 0.3, 0.5, 0.5, 0.1, 0.3], [0.0] * 40, [0.7, 0.7, 0.7]]
    cases += [generator.integers(0, 4, size=size).astype(float).tolist() for size in (5, 17, 70)]
    for scores in cases:
        expected = np.argsort(np.array(scores))[::-1].tolist()
        assert score_order(scores).tolist() == expected
        assert score_order(torch.tensor(scores, dtype=torch.float32)).tolist() == expected
    # Identical poses with equal scores: the first in that order survives, the others go.
    pose = torch.rand(1, 17, 3, generator=torch.Generator().manual_seed(0)) * 100
    keypoints = pose.repeat(6, 1, 1)
    scores = [0.5, 0.3, 0.5, 0.5, 0.1, 0.3]
    assert oks_nms(keypoints, scores, [1000.0] * 6) == [np.argsort(np.array(scores))[::-1][0]]


def test_oks_nms_empty_and_bad_input():
    assert oks_nms(torch.zeros(0, 17, 3), [], []) == []
    assert soft_oks_nms(torch.zeros(0, 17, 3), [], []) == []
    with pytest.raises(ValueError, match="scores"):
        oks_nms(torch.zeros(2, 17, 3), [0.1], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[M, K, 3\]"):
        oks_nms(torch.zeros(2, 17, 2), [0.1, 0.2], [1.0, 1.0])


def test_rescore_hand_worked():
    maxvals = torch.tensor([[0.1, 0.5, 0.9, 0.2], [0.2, 0.0, 0.15, 0.1], [0.3, 0.3, 0.3, 0.3]],
                           dtype=torch.float64)
    scores = rescore(maxvals, [0.5, 0.9, 2.0])
    # 0.2 itself is not above the threshold; no joint above it gives 0.
    assert scores.tolist() == pytest.approx([(0.5 + 0.9) / 2 * 0.5, 0.0, 0.3 * 2.0], abs=1e-15)
    assert scores.dtype == torch.float64
    # float32 confidences compare in float32, as numpy 2 compares float32 values with 0.2.
    float32_maxvals = torch.tensor([[0.2, 0.6]], dtype=torch.float32)
    assert bool(np.float32(0.2) > 0.2) is False
    assert rescore(float32_maxvals, [1.0]).tolist() == [float(np.float32(0.6))]
    with pytest.raises(ValueError, match="box scores"):
        rescore(maxvals, [1.0, 1.0])
