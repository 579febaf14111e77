"""Heatmap losses against the official HRNet core/loss.py values (pipeline/loss_*.npz)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pose.losses import JointsMSELoss, JointsOHKMMSELoss, build_loss

# The official values are float32 reductions in a different summation order: relative 1e-6.
FLOAT32_RTOL = 1e-6


def _load(reference_dir, name):
    fixture = np.load(reference_dir / "pipeline" / f"loss_{name}.npz")
    tensors = tuple(torch.from_numpy(fixture[key]) for key in ("output", "target", "target_weight"))
    return fixture, tensors


def _numpy_ohkm(output, target, weight, topk):
    """Independent float64 statement of the OHKM formula."""
    difference = (output.astype(np.float64) - target) * weight.reshape(*weight.shape[:2], 1, 1)
    joint_losses = 0.5 * (difference ** 2).mean(axis=(2, 3))
    hardest = np.sort(joint_losses, axis=1)[:, ::-1][:, :topk]
    return float((hardest.sum(axis=1) / topk).mean())


@pytest.mark.parametrize("name", ["b4", "b1", "b3_mpii"])
def test_losses_equal_official(reference_dir, name):
    fixture, (output, target, target_weight) = _load(reference_dir, name)
    with (reference_dir / "pipeline" / "losses.json").open() as handle:
        assert json.load(handle)[name]["mse_tw"] == float(fixture["mse_tw"])
    expected = {
        "mse_tw": JointsMSELoss(use_target_weight=True),
        "mse_no_tw": JointsMSELoss(use_target_weight=False),
        "ohkm8_tw": JointsOHKMMSELoss(use_target_weight=True, topk=8),
        "ohkm8_no_tw": JointsOHKMMSELoss(use_target_weight=False, topk=8),
    }
    for key, loss in expected.items():
        value = loss(output, target, target_weight)
        assert value.dim() == 0
        if fixture[key].dtype.kind == "U":  # the official code crashed here
            assert name == "b1" and "IndexError" in str(fixture[key])
            continue
        assert value.item() == pytest.approx(float(fixture[key]), rel=FLOAT32_RTOL), key
    # [N, K] weights give the same as [N, K, 1].
    flat_weight = target_weight.reshape(target_weight.shape[:2])
    assert JointsMSELoss()(output, target, flat_weight).item() == pytest.approx(
        float(fixture["mse_tw"]), rel=FLOAT32_RTOL)


@pytest.mark.parametrize("name", ["b4", "b1", "b3_mpii"])
def test_mmpose_loss_is_exactly_twice_ours(reference_dir, name):
    """Quirk P6: mmpose 0.x has no 0.5 factor."""
    fixture, (output, target, target_weight) = _load(reference_dir, name)
    assert float(fixture["mmpose013_mse_tw"]) == 2 * float(fixture["mse_tw"])
    ours = JointsMSELoss()(output, target, target_weight).item()
    assert 2 * ours == pytest.approx(float(fixture["mmpose013_mse_tw"]), rel=FLOAT32_RTOL)


def test_ohkm_batch_one_without_weights_gives_the_formula(reference_dir):
    """The official OHKM crashes here (recorded IndexError); ours gives the defined value."""
    fixture, (output, target, target_weight) = _load(reference_dir, "b1")
    assert "IndexError" in str(fixture["ohkm8_no_tw"])
    value = JointsOHKMMSELoss(use_target_weight=False)(output, target, target_weight).item()
    ones = np.ones(fixture["target_weight"].shape[:2])
    assert value == pytest.approx(_numpy_ohkm(fixture["output"], fixture["target"], ones, 8),
                                  rel=FLOAT32_RTOL)
    # With weights the independent formula also reproduces the official number.
    weight = fixture["target_weight"][..., 0]
    assert _numpy_ohkm(fixture["output"], fixture["target"], weight, 8) == pytest.approx(
        float(fixture["ohkm8_tw"]), rel=FLOAT32_RTOL)


def test_mse_hand_worked():
    output = torch.zeros(1, 2, 2, 2)
    target = torch.zeros(1, 2, 2, 2)
    output[0, 0, 0, 0] = 2.0  # joint 0: 0.5 * 4 / 4 pixels = 0.5
    output[0, 1] = 1.0  # joint 1: 0.5 * 1 = 0.5, weighted by 3 -> 0.5 * 9 = 4.5
    weight = torch.tensor([[1.0, 3.0]])
    assert JointsMSELoss()(output, target, weight).item() == pytest.approx((0.5 + 4.5) / 2)
    assert JointsMSELoss(use_target_weight=False)(output, target, weight).item() == \
        pytest.approx(0.5)
    assert JointsOHKMMSELoss(topk=1)(output, target, weight).item() == pytest.approx(4.5)
    output.requires_grad_(True)
    JointsOHKMMSELoss(topk=2)(output, target, weight).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0


def test_build_loss_and_bad_input():
    assert isinstance(build_loss("mse"), JointsMSELoss)
    ohkm = build_loss("ohkm", use_target_weight=False, topk=4)
    assert isinstance(ohkm, JointsOHKMMSELoss) and ohkm.topk == 4 and not ohkm.use_target_weight
    with pytest.raises(ValueError, match=r"'mse', 'ohkm'"):
        build_loss("l1")
    with pytest.raises(ValueError, match="target_weight"):
        JointsMSELoss()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="target shape"):
        JointsMSELoss()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5), torch.ones(2, 3))
    with pytest.raises(ValueError, match="exceeds the number of joints"):
        JointsOHKMMSELoss(topk=8)(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4),
                                  torch.ones(2, 3))
