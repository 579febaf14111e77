"""OKS, OKS-NMS, soft OKS-NMS and rescoring against the official HRNet nms.py (oks_nms.json)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pose.data.keypoints import COCO_KEYPOINTS
from pose.evaluation.nms import (
    NMS_METHODS,
    batched_nms,
    batched_oks_nms,
    batched_soft_oks_nms,
    grouped_score_order,
    numpy_exp,
    oks_iou,
    oks_matrix,
    oks_nms,
    pairwise_sum,
    rescore,
    score_order,
    soft_oks_nms,
)

# Against the official code run by this numpy on this CPU, OKS values are the same bits: the same
# float64 operations, numpy's own exp and numpy's summation order.
# Against the stored fixture (the official code run once, on a CPU with AVX-512), they may differ
# in the last bits: numpy's float64 exp is its AVX-512F loop there and the C library's exp on a CPU
# without AVX-512. Both are faithfully rounded (error < 1 ulp), so each term exp(-e_k) agrees
# within 1 ulp (<= eps relative); the sum of K positive terms then agrees within K eps relative
# (its K - 1 roundings on each side included) and the division adds one rounding: (K + 1) eps.
# (Measured on AVX2: 2 of 130 values differ, by 1 ulp.) The NMS decisions stay exact.
FIXTURE_OKS_RTOL = (len(COCO_KEYPOINTS.oks_sigmas) + 1) * np.finfo(np.float64).eps


@pytest.fixture(scope="module")
def groups(reference_dir):
    with (reference_dir / "pipeline" / "oks_nms.json").open() as handle:
        fixture = json.load(handle)
    np.testing.assert_array_equal(fixture["sigmas"], COCO_KEYPOINTS.oks_sigmas)
    result = []
    for group in fixture["groups"]:
        keypoints = torch.tensor(group["keypoints"], dtype=torch.float64)
        result.append({**group, "keypoints": keypoints.reshape(len(group["scores"]), -1, 3)})
    return result


def test_oks_iou_matches_official(groups):
    for group in groups:
        keypoints, areas = group["keypoints"], group["areas"]
        oks = oks_iou(keypoints[0], keypoints[1:], areas[0], areas[1:])
        official_here = _numpy_oks(keypoints[0].numpy(), keypoints[1:].numpy(), areas[0],
                                   np.asarray(areas[1:]))
        assert oks.tolist() == official_here.tolist()
        np.testing.assert_allclose(oks.numpy(), group["oks_iou_first_vs_rest"],
                                   rtol=FIXTURE_OKS_RTOL, atol=0)
        matrix = oks_matrix(keypoints, areas)
        assert matrix[0, 1:].tolist() == official_here.tolist()
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
        official_here = _numpy_oks(keypoints[0].numpy(), keypoints[1:].numpy(), areas[0],
                                   np.asarray(areas[1:]), visibility_threshold=0.2)
        assert oks.tolist() == official_here.tolist()
        np.testing.assert_allclose(oks.numpy(), expected, rtol=FIXTURE_OKS_RTOL, atol=0)
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


def test_numpy_exp_is_numpy_exp():
    """The OKS terms' exp is numpy's, bit for bit, whatever the layout: torch's float64 exp
    differs from it by 1 ulp for 0.5% of these values with MKL and numpy restricted to AVX2."""
    exponents = -np.random.default_rng(4).uniform(0, 30, size=(2000, 17))
    strided = torch.from_numpy(exponents)[::2, 1:]
    assert numpy_exp(strided).numpy().tolist() == np.exp(exponents[::2, 1:]).tolist()
    assert numpy_exp(strided).dtype == torch.float64
    np.testing.assert_allclose(numpy_exp(strided).numpy(), torch.exp(strided).numpy(),
                               rtol=2 * np.finfo(np.float64).eps, atol=0)


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


def test_pairwise_sum_is_numpy_sum():
    generator = np.random.default_rng(1)
    for width in (1, 5, 8, 17, 64, 130, 300):
        values = generator.uniform(0, 1, size=(40, width)) ** 3
        counts = generator.integers(0, width + 1, size=40)
        values[np.arange(width)[None] >= counts[:, None]] = 0.0
        expected = [np.sum(row[:count]) for row, count in zip(values, counts)]
        ours = pairwise_sum(torch.from_numpy(values), torch.from_numpy(counts))
        assert ours.tolist() == expected, width


def _numpy_oks(reference, candidates, reference_area, candidate_areas,
               visibility_threshold=None):
    """The official oks_iou (default sigmas), transcribed in numpy: [K, 3] against [M, K, 3]."""
    sigmas = np.asarray(COCO_KEYPOINTS.oks_sigmas)
    variances = (sigmas * 2) ** 2
    values = np.zeros(len(candidates))
    for index, candidate in enumerate(candidates):
        dx, dy = candidate[:, 0] - reference[:, 0], candidate[:, 1] - reference[:, 1]
        error = (dx ** 2 + dy ** 2) / variances / (
            (reference_area + candidate_areas[index]) / 2 + np.spacing(1)) / 2
        if visibility_threshold is not None:  # quirk P7, as written officially
            error = error[list(reference[:, 2] > visibility_threshold)
                          and list(candidate[:, 2] > visibility_threshold)]
        values[index] = np.sum(np.exp(-error)) / error.shape[0] if error.shape[0] != 0 else 0.0
    return values


def _numpy_nms(keypoints, scores, areas, threshold):
    order = np.argsort(scores)[::-1]
    keep = []
    while order.size > 0:
        best = order[0]
        keep.append(int(best))
        overlaps = _numpy_oks(keypoints[best], keypoints[order[1:]], areas[best],
                              areas[order[1:]])
        order = order[np.where(overlaps <= threshold)[0] + 1]
    return keep


def _numpy_soft_nms(keypoints, scores, areas, threshold, max_detections=20):
    order = np.argsort(scores)[::-1]
    scores = scores[order]
    keep = []
    while order.size > 0 and len(keep) < max_detections:
        best = order[0]
        overlaps = _numpy_oks(keypoints[best], keypoints[order[1:]], areas[best],
                              areas[order[1:]])
        order = order[1:]
        scores = scores[1:] * np.exp(-overlaps ** 2 / threshold)
        resort = np.argsort(scores)[::-1]
        order, scores = order[resort], scores[resort]
        keep.append(int(best))
    return keep


def _random_result_set(seed, num_images=25, tie_levels=None):
    """Poses of many images: near-duplicates around a few people, image ids interleaved."""
    generator = np.random.default_rng(seed)
    keypoints, scores, areas, image_ids = [], [], [], []
    for image in range(num_images):
        for _ in range(generator.integers(1, 4)):
            base = generator.uniform(0, 300, size=(17, 2))
            area = generator.uniform(2000, 20000)
            for _ in range(generator.integers(1, 8)):
                pose = base + generator.normal(0, generator.choice([0.5, 3, 15]), size=(17, 2))
                keypoints.append(np.concatenate([pose, generator.uniform(0, 1, (17, 1))], 1))
                score = generator.uniform(0, 1)
                scores.append(round(score * tie_levels) / tie_levels if tie_levels else score)
                areas.append(area * generator.uniform(0.9, 1.1))
                image_ids.append(1000 + (image * 7919) % 97)
    order = generator.permutation(len(scores))
    return (np.asarray(keypoints)[order], np.asarray(scores)[order], np.asarray(areas)[order],
            np.asarray(image_ids)[order])


@pytest.mark.parametrize("tie_levels", [None, 4])
def test_batched_nms_equal_official_per_image(tie_levels):
    keypoints, scores, areas, image_ids = _random_result_set(5, tie_levels=tie_levels)
    expected_nms, expected_soft = [], []
    for image_id in dict.fromkeys(image_ids.tolist()):  # order of first appearance
        members = np.nonzero(image_ids == image_id)[0]
        expected_nms += members[_numpy_nms(keypoints[members], scores[members], areas[members],
                                           0.9)].tolist()
        expected_soft += members[_numpy_soft_nms(keypoints[members], scores[members],
                                                 areas[members], 0.9)].tolist()
    tensors = (torch.from_numpy(keypoints), torch.from_numpy(scores), torch.from_numpy(areas))
    assert batched_oks_nms(*tensors, torch.from_numpy(image_ids)).tolist() == expected_nms
    assert batched_soft_oks_nms(*tensors, image_ids.tolist()).tolist() == expected_soft
    assert len(expected_nms) < len(scores)  # the NMS had work to do


def test_grouped_score_order_is_numpy_order_per_group():
    _, scores, _, image_ids = _random_result_set(2, tie_levels=3)
    expected = []
    for image_id in dict.fromkeys(image_ids.tolist()):
        members = np.nonzero(image_ids == image_id)[0]
        expected += members[np.argsort(scores[members])[::-1]].tolist()
    assert grouped_score_order(torch.from_numpy(scores), torch.from_numpy(image_ids)).tolist() \
        == expected


def _duplicated_poses() -> tuple[torch.Tensor, ...]:
    """Image 7: one pose and a copy one pixel to the right (OKS ~0.97 at area 200 x 200);
    image 9: a lone pose. Scores 0.9, 0.8, 0.5."""
    base = torch.stack([torch.linspace(50, 150, 17), torch.linspace(20, 180, 17),
                        torch.ones(17)], dim=1)
    shifted = base.clone()
    shifted[:, 0] += 1.0
    keypoints = torch.stack([base, shifted, base + 300]).double()
    return (keypoints, torch.tensor([0.9, 0.8, 0.5], dtype=torch.float64),
            torch.full((3,), 200.0 * 200.0, dtype=torch.float64), torch.tensor([7, 7, 9]))


@pytest.mark.parametrize("method", NMS_METHODS)
def test_batched_nms_dispatches_each_method(method):
    keypoints, scores, areas, groups = _duplicated_poses()
    kept = batched_nms(method, keypoints, scores, areas, groups, threshold=0.9)
    expected = {"oks": batched_oks_nms(keypoints, scores, areas, groups, 0.9),
                "soft_oks": batched_soft_oks_nms(keypoints, scores, areas, groups, 0.9),
                "none": grouped_score_order(scores, groups)}[method]
    assert torch.equal(kept, expected)
    # OKS-NMS drops the near copy; the soft variant only lowers its score (at most 20 per
    # image are kept), and "none" keeps everything.
    assert kept.tolist() == {"oks": [0, 2], "soft_oks": [0, 1, 2], "none": [0, 1, 2]}[method]


def test_unknown_nms_method_is_refused():
    keypoints, scores, areas, groups = _duplicated_poses()
    with pytest.raises(ValueError, match="'soft' is not known: expected one of oks, soft_oks"):
        batched_nms("soft", keypoints, scores, areas, groups)
