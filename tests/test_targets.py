"""Heatmap targets: bit-equal to the official generate_target, and the P2/P3 quirks by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pose.data.targets import gaussian_heatmaps

FIXTURES = {
    "generate_target_coco_256x192_s2.npz": 32,  # joints with weight 1 and an all-zero map (P3)
    "generate_target_mpii_256x256_s2.npz": 19,
    "generate_target_coco_384x288_s3.npz": None,
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_targets_equal_official(reference_dir, name):
    data = np.load(reference_dir / "pipeline" / name)
    empty_with_weight = 0
    for person in range(len(data["joints"])):
        target, weight = gaussian_heatmaps(
            data["joints"][person], data["joints_vis"][person][:, 0], data["image_size"],
            data["heatmap_size"], float(data["sigma"]),
        )
        assert target.dtype == np.float32 and weight.dtype == np.float32
        np.testing.assert_array_equal(target, data["target"][person], err_msg=f"person {person}")
        np.testing.assert_array_equal(weight, data["target_weight"][person][:, 0])
        empty_with_weight += int(((weight == 1) & (target.max(axis=(1, 2)) == 0)).sum())
    if FIXTURES[name] is not None:
        assert empty_with_weight == FIXTURES[name]


def one_joint(x: float, y: float, visible: float = 1.0):
    return gaussian_heatmaps(
        np.array([[x, y]]), np.array([visible]), (192, 256), (48, 64), sigma=2.0
    )


def test_peak_and_shape_hand_worked():
    # x = 41 px -> 41 / 4 + 0.5 = 10.75 -> cell 10; y = 82 -> 21.
    target, weight = one_joint(41.0, 82.0)
    assert target.shape == (1, 64, 48) and weight.tolist() == [1.0]
    assert target[0, 21, 10] == 1.0 and target.max() == 1.0
    np.testing.assert_allclose(target[0, 21, 11], np.exp(-1 / 8), rtol=1e-6)
    np.testing.assert_allclose(target[0, 23, 12], np.exp(-8 / 8), rtol=1e-6)
    # The window is 13 x 13 cells (3 sigma each side), nothing outside it.
    assert np.count_nonzero(target) == 13 * 13
    assert target[0, 21, 16] > 0 and target[0, 21, 17] == 0


def test_truncation_toward_zero_quirk_p2():
    # x = -5: -5 / 4 + 0.5 = -0.75; int() gives cell 0 (floor would give -1).
    target, weight = one_joint(-5.0, 82.0)
    assert weight[0] == 1 and target[0, 21, 0] == 1.0


def test_empty_map_with_weight_quirk_p3():
    # x = -31: -7.25 -> cell -7; the window [-13, 0) misses the map but is not dropped.
    target, weight = one_joint(-31.0, 82.0)
    assert weight[0] == 1 and not target.any()
    # x = -35: -8.25 -> cell -8, window ends at -1 < 0: dropped.
    target, weight = one_joint(-35.0, 82.0)
    assert weight[0] == 0 and not target.any()
    # Right edge: x = 213.9 -> cell 53, window starts at 47 (kept); x = 214 -> 54 (dropped).
    target, weight = one_joint(213.9, 82.0)
    assert weight[0] == 1 and target[0, 21, 47] == np.float32(np.exp(-36 / 8))
    target, weight = one_joint(214.0, 82.0)
    assert weight[0] == 0 and not target.any()


def test_invisible_joint_and_many_joints():
    joints = np.array([[41.0, 82.0], [100.0, 100.0], [150.0, 20.0]])
    target, weight = gaussian_heatmaps(joints, np.array([1, 0, 1]), (192, 256), (48, 64), 2.0)
    np.testing.assert_array_equal(weight, [1, 0, 1])
    assert not target[1].any()
    # Each map equals the map of its joint alone.
    alone, _ = one_joint(150.0, 20.0)
    np.testing.assert_array_equal(target[2], alone[0])


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="sigma"):
        gaussian_heatmaps(np.zeros((2, 2)), np.ones(2), (192, 256), (48, 64), 0.0)
    with pytest.raises(ValueError, match=r"\[K, 2\+\]"):
        gaussian_heatmaps(np.zeros(4), np.ones(4), (192, 256), (48, 64), 2.0)
