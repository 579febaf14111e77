"""Geometry and augmentation against the official HRNet pipeline fixtures and hand-worked cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pose.data.keypoints import COCO_KEYPOINTS, MPII_KEYPOINTS
from pose.data.transforms import (
    AugmentationParams,
    adjust_colour,
    affine_transform_points,
    box_to_center_scale,
    compose_affine,
    decode_reduction,
    draw_augmentation,
    flip_center_x,
    flip_joints,
    get_affine_transform,
    half_body_center_scale,
    horizontal_flip_matrix,
    normalise,
    normalise_bgr,
    reduced_to_full_matrix,
    warp_image,
)

UPPER, LOWER = COCO_KEYPOINTS.upper_body_ids, COCO_KEYPOINTS.lower_body_ids


class ScriptedDraws:
    """Returns logged draws in order, checking that each is asked for by the right method."""

    def __init__(self, draws: list[tuple[str, float]]) -> None:
        self.draws = list(draws)
        self.calls: list[str] = []

    def _next(self, kind: str) -> float:
        assert self.draws, f"an extra {kind} draw was requested"
        expected_kind, value = self.draws.pop(0)
        assert expected_kind == kind, f"drew {kind} where the official code draws {expected_kind}"
        self.calls.append(kind)
        return value

    def random(self) -> float:
        return self._next("uniform")

    def standard_normal(self) -> float:
        return self._next("normal")


def official_log_to_draws(rng_log: list[list]) -> list[tuple[str, float]]:
    """Map the official numpy/random calls onto our two draw kinds."""
    kinds = {"np.random.rand": "uniform", "random.random": "uniform", "np.random.randn": "normal"}
    return [(kinds[name], value) for name, value in rng_log]


# ------------------------------------------------------------------------------------------------
# Affine


def test_affine_matrices_equal_official(reference_dir):
    data = np.load(reference_dir / "pipeline" / "affine.npz")
    for case in range(len(data["center"])):
        args = (data["center"][case], data["scale"][case], data["rot_deg"][case])
        size = data["output_size"][case]
        forward = get_affine_transform(*args, size)
        inverse = get_affine_transform(*args, size, inverse=True)
        assert forward.dtype == np.float64 and forward.shape == (2, 3)
        np.testing.assert_array_equal(forward, data["trans"][case], err_msg=f"case {case}")
        np.testing.assert_array_equal(inverse, data["trans_inv"][case], err_msg=f"case {case}")
        # Point maps: the official maps points one by one; BLAS may order sums differently.
        np.testing.assert_allclose(
            affine_transform_points(data["points"][case], forward),
            data["points_trans"][case], rtol=0, atol=1e-9,
        )
        np.testing.assert_allclose(
            affine_transform_points(data["points"][case], inverse),
            data["points_trans_inv"][case], rtol=0, atol=1e-9,
        )
        # transform_preds = the inverse map at rotation 0, from heatmap cells to image pixels.
        heatmap_to_image = get_affine_transform(
            data["center"][case], data["scale"][case], 0, size, inverse=True
        )
        np.testing.assert_allclose(
            affine_transform_points(data["tp_coords"][case], heatmap_to_image),
            data["tp_output"][case], rtol=0, atol=1e-9,
        )


def test_affine_hand_worked_and_scale1_ignored():
    # Box 200 x 266.7 px centred at (100, 50) onto 192 x 256: zoom 192 / 200 on both axes.
    matrix = get_affine_transform(
        np.array([100, 50], np.float32), np.array([1, 4 / 3], np.float32), 0, (192, 256)
    )
    zoom = 192 / 200
    expected = np.array([[zoom, 0, 96 - 100 * zoom], [0, zoom, 128 - 50 * zoom]])
    np.testing.assert_allclose(matrix, expected, atol=1e-5)
    # Quirk P1: scale[1] is ignored.
    other = get_affine_transform(
        np.array([100, 50], np.float32), np.array([1, 7.0], np.float32), 0, (192, 256)
    )
    np.testing.assert_array_equal(matrix, other)
    # 90 degrees: the box's right direction becomes the crop's up direction, its up the left.
    rotated = get_affine_transform(
        np.array([100, 50], np.float32), np.array([1, 4 / 3], np.float32), 90, (192, 256)
    )
    mapped = affine_transform_points(np.array([[100.0, 40.0], [110.0, 50.0]]), rotated)
    np.testing.assert_allclose(mapped, [[96 - 10 * zoom, 128], [96, 128 - 10 * zoom]], atol=1e-4)
    # Inverse composes to the identity.
    inverse = get_affine_transform(
        np.array([100, 50], np.float32), np.array([1, 4 / 3], np.float32), 30, (192, 256),
        inverse=True,
    )
    forward = get_affine_transform(
        np.array([100, 50], np.float32), np.array([1, 4 / 3], np.float32), 30, (192, 256)
    )
    points = np.array([[3.0, 4.0], [150.0, -20.0]])
    roundtrip = affine_transform_points(affine_transform_points(points, forward), inverse)
    np.testing.assert_allclose(roundtrip, points, atol=1e-3)


def test_affine_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        get_affine_transform([1, 2, 3], [1, 1], 0, (192, 256))
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        affine_transform_points(np.zeros((3, 3)), np.zeros((2, 3)))


# ------------------------------------------------------------------------------------------------
# Boxes


def test_box_to_center_scale_equals_official(reference_dir):
    data = np.load(reference_dir / "pipeline" / "box2cs_coco_ar0.75.npz")
    for case, box in enumerate(data["box_xywh"]):
        center, scale = box_to_center_scale(box, float(data["aspect_ratio"]))
        assert center.dtype == np.float32 and scale.dtype == np.float32
        np.testing.assert_array_equal(center, data["center"][case], err_msg=f"case {case}")
        np.testing.assert_array_equal(scale, data["scale"][case], err_msg=f"case {case}")


def test_box_to_center_scale_hand_worked():
    # Tall box: the width grows to 0.75 * 80 = 60.
    center, scale = box_to_center_scale([10, 20, 30, 80], 0.75)
    np.testing.assert_array_equal(center, np.float32([25, 60]))
    np.testing.assert_allclose(scale, [60 / 200 * 1.25, 80 / 200 * 1.25], rtol=1e-6)
    # Wide box: the height grows to 120 / 0.75 = 160; no padding.
    _, scale = box_to_center_scale([0, 0, 120, 10], 0.75, padding=1.0)
    np.testing.assert_allclose(scale, [0.6, 0.8], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Crop


def crop_image(image, center, scale, rotation_deg, output_size):
    """The official crop (``JointsDataset.__getitem__``): the affine map of the box, then the
    warp. Returns (crop [out_h, out_w, C] in the image's dtype, [2, 3] image-to-crop matrix)."""
    matrix = get_affine_transform(center, scale, rotation_deg, output_size)
    return warp_image(image, matrix, output_size), matrix


def test_crop_equals_official_warp(reference_dir):
    data = np.load(reference_dir / "pipeline" / "crop.npz")
    size = tuple(int(v) for v in data["output_size"])
    image_float = data["image"].astype(np.float32)
    for case in range(len(data["center"])):
        args = (data["center"][case], data["scale"][case], data["rot_deg"][case], size)
        crop, matrix = crop_image(data["image"], *args)
        assert crop.dtype == np.uint8 and crop.shape == (256, 192, 3)
        np.testing.assert_array_equal(matrix, data["trans"][case])
        np.testing.assert_array_equal(crop, data["crop_uint8"][case], err_msg=f"case {case}")
        crop_float, _ = crop_image(image_float, *args)
        np.testing.assert_array_equal(crop_float, data["crop_float32"][case])


def test_crop_border_is_zero():
    image = np.full((50, 60, 3), 200, np.uint8)
    # A box far to the right of the image: every crop pixel is border.
    crop, _ = crop_image(image, np.float32([1000, 25]), np.float32([0.3, 0.4]), 0, (48, 64))
    assert crop.shape == (64, 48, 3) and not crop.any()
    # A box centred on the image: the middle is image, the corners are border (P12).
    crop, _ = crop_image(image, np.float32([30, 25]), np.float32([0.6, 0.8]), 0, (48, 64))
    assert (crop[32, 24] == 200).all() and (crop[0, 0] == 0).all()


# ------------------------------------------------------------------------------------------------
# Flip


@pytest.mark.parametrize("name, spec", [("coco", COCO_KEYPOINTS), ("mpii", MPII_KEYPOINTS)])
def test_flip_joints_equal_official(reference_dir, name, spec):
    data = np.load(reference_dir / "pipeline" / f"flip_{name}.npz")
    np.testing.assert_array_equal(data["flip_pairs"], np.array(spec.flip_pairs))
    joints, visible = flip_joints(
        data["joints"], data["joints_vis"][:, 0], int(data["image_width"]), spec.flip_pairs
    )
    np.testing.assert_array_equal(joints, data["fliplr_joints"])
    np.testing.assert_array_equal(visible, data["fliplr_joints_vis"][:, 0])


def test_flip_joints_hand_worked():
    joints = np.array([[10.0, 5.0], [20.0, 6.0], [30.0, 7.0]])
    flipped, visible = flip_joints(joints, np.array([1, 1, 0]), 100, [(1, 2)])
    # x' = 100 - 1 - x; joints 1 and 2 swap; the (now) invisible joint 1 is zeroed.
    np.testing.assert_array_equal(flipped, [[89, 5], [0, 0], [79, 6]])
    np.testing.assert_array_equal(visible, [1, 0, 1])
    np.testing.assert_array_equal(flip_center_x(np.float32([10, 5]), 100), np.float32([89, 5]))
    with pytest.raises(ValueError, match=r"flip pair \(1, 3\) is out of range for 3 joints"):
        flip_joints(joints, np.array([1, 1, 0]), 100, [(1, 3)])


# ------------------------------------------------------------------------------------------------
# Half body


def test_half_body_equals_official(reference_dir):
    data = np.load(reference_dir / "pipeline" / "half_body_coco.npz")
    nones = 0
    for case in range(len(data["joints"])):
        result = half_body_center_scale(
            data["joints"][case], data["joints_vis"][case][:, 0], UPPER, LOWER,
            float(data["aspect_ratio"]), float(data["randn_draw"][case]),
        )
        if np.isnan(data["center"][case]).any():
            assert result is None, f"case {case}"
            nones += 1
            continue
        assert result is not None, f"case {case}"
        np.testing.assert_array_equal(result[0], data["center"][case], err_msg=f"case {case}")
        np.testing.assert_array_equal(result[1], data["scale"][case], err_msg=f"case {case}")
    assert nones > 0  # the fixture exercises the "too few joints" branch


def test_half_body_hand_worked():
    joints = np.zeros((17, 2))
    joints[5:11] = [[0, 0], [40, 0], [0, 30], [40, 30], [0, 60], [40, 60]]  # arms: 40 x 60
    joints[11:17] = [[0, 100], [40, 100], [0, 145], [40, 145], [0, 190], [40, 190]]
    visible = np.zeros(17)
    visible[5:17] = 1
    center, scale = half_body_center_scale(joints, visible, UPPER, LOWER, 0.75, upper_draw=0.49)
    np.testing.assert_allclose(center, [20, 30])
    np.testing.assert_allclose(scale, [45 / 200 * 1.5, 60 / 200 * 1.5], rtol=1e-6)
    # A draw >= 0.5 picks the lower body (90 px high).
    center, scale = half_body_center_scale(joints, visible, UPPER, LOWER, 0.75, upper_draw=0.5)
    np.testing.assert_allclose(center, [20, 145])
    np.testing.assert_allclose(scale, [67.5 / 200 * 1.5, 90 / 200 * 1.5], rtol=1e-6)
    # Only 2 visible lower joints: the upper body is used whatever the draw.
    visible[13:17] = 0
    center, _ = half_body_center_scale(joints, visible, UPPER, LOWER, 0.75, upper_draw=3.0)
    np.testing.assert_allclose(center, [20, 30])
    # One visible joint in all: no half-body box.
    assert half_body_center_scale(joints, np.eye(17)[5], UPPER, LOWER, 0.75, 0.0) is None


# ------------------------------------------------------------------------------------------------
# Augmentation draws


def test_draw_order_and_values_hand_worked():
    joints, visible = np.zeros((17, 2)), np.ones(17)
    joints[:, 0], joints[:, 1] = np.arange(17) * 3.0, np.arange(17) * 4.0
    center, scale = np.float32([100, 100]), np.float32([1.0, 4 / 3])
    params = AugmentationParams(scale_factor=0.35, rotation_factor=45, half_body_prob=0.3)
    # Half-body gate fails: scale, rotation gate (passes), rotation, flip gate (fails).
    draws = ScriptedDraws(
        [("uniform", 0.3), ("normal", 5.0), ("uniform", 0.6), ("normal", 3.0), ("uniform", 0.51)]
    )
    drawn = draw_augmentation(joints, visible, center, scale, params, UPPER, LOWER, 0.75, draws)
    assert not draws.draws and not drawn.half_body and not drawn.flip
    np.testing.assert_allclose(drawn.scale, scale * 1.35)  # clipped at 1 + SF
    assert drawn.rotation == 90.0  # clipped at 2 RF
    assert drawn.scale.dtype == np.float64  # as the official s * np.clip(...)
    # Half-body gate passes: the upper/lower draw comes next; rotation gate fails, so no
    # rotation draw; flip gate passes at exactly 0.5.
    draws = ScriptedDraws(
        [("uniform", 0.29), ("normal", 0.0), ("normal", -0.5), ("uniform", 0.61),
         ("uniform", 0.5)]
    )
    drawn = draw_augmentation(joints, visible, center, scale, params, UPPER, LOWER, 0.75, draws)
    assert not draws.draws and drawn.half_body and drawn.flip and drawn.rotation == 0.0
    expected_center, expected_scale = half_body_center_scale(
        joints, visible, UPPER, LOWER, 0.75, 0.0
    )
    np.testing.assert_array_equal(drawn.center, expected_center)
    np.testing.assert_allclose(drawn.scale, expected_scale * 0.825)
    # Only 8 visible joints: no half-body gate draw at all; no flip draw when flip is off.
    visible_8 = np.r_[np.ones(8), np.zeros(9)]
    draws = ScriptedDraws([("normal", 0.0), ("uniform", 0.9)])
    no_flip = AugmentationParams(flip=False)
    drawn = draw_augmentation(joints, visible_8, center, scale, no_flip, UPPER, LOWER, 0.75, draws)
    assert not draws.draws and not drawn.flip and not drawn.half_body
    np.testing.assert_array_equal(drawn.center, center)


def test_draws_replay_official_training_samples(reference_dir, coco_sample_dir):
    db = json.loads((reference_dir / "coco" / "mmpose4_db_gt.json").read_text())["db"]
    samples = json.loads((reference_dir / "coco" / "mmpose4_getitem_train_meta.json").read_text())
    params = AugmentationParams(scale_factor=0.35, rotation_factor=45, half_body_prob=0.3)
    images = json.loads((coco_sample_dir / "test_coco.json").read_text())["images"]
    image_widths = {image["file_name"]: image["width"] for image in images}
    flips = 0
    for sample in samples:
        record = db[sample["db_index"]]
        draws = ScriptedDraws(official_log_to_draws(sample["rng_log"]))
        drawn = draw_augmentation(
            np.array(record["joints_3d"])[:, :2], np.array(record["joints_3d_vis"])[:, 0],
            np.float32(record["center"]), np.float32(record["scale"]), params, UPPER, LOWER,
            192 / 256, draws,
        )
        assert not draws.draws, "not every logged draw was consumed"
        assert drawn.flip == (sample["rng_log"][-1][1] <= 0.5)
        assert drawn.rotation == sample["rotation"]
        np.testing.assert_array_equal(drawn.scale, sample["scale"])  # float64, bit-equal
        center = drawn.center
        if drawn.flip:
            flips += 1
            center = flip_center_x(center, image_widths[record["image"]])
        np.testing.assert_array_equal(center, np.float32(sample["center"]))
    assert flips > 0


def test_augmentation_distributions():
    rng = np.random.default_rng(12345)
    params = AugmentationParams(scale_factor=0.35, rotation_factor=45, half_body_prob=0.3)
    joints = np.stack([np.arange(17) * 5.0, np.arange(17) * 9.0], axis=1)
    center, scale = np.float32([40, 72]), np.float32([1.0, 4 / 3])
    count = 4000
    rotations, flips, half_bodies, uppers, ratios = [], [], [], 0, []
    for _ in range(count):
        drawn = draw_augmentation(
            joints, np.ones(17), center, scale, params, UPPER, LOWER, 0.75, rng
        )
        rotations.append(drawn.rotation)
        flips.append(drawn.flip)
        half_bodies.append(drawn.half_body)
        if drawn.half_body:
            uppers += drawn.center[1] < 72  # upper-body joints are the higher ones
        else:
            ratios.append(drawn.scale[0] / scale[0])
    rotations, ratios = np.array(rotations), np.array(ratios)
    tolerance = 4 * np.sqrt(0.25 / count)  # 4 binomial standard deviations
    assert abs(np.mean(rotations != 0) - 0.6) < tolerance
    assert np.abs(rotations).max() <= 90 and np.abs(rotations).max() > 60
    assert abs(np.mean(flips) - 0.5) < tolerance
    assert abs(np.mean(half_bodies) - 0.3) < tolerance
    # Upper body when a standard normal < 0.5: Phi(0.5) = 0.6915.
    assert abs(uppers / sum(half_bodies) - 0.6915) < 4 * np.sqrt(0.25 / sum(half_bodies))
    assert ratios.min() >= 0.65 - 1e-6 and ratios.max() <= 1.35 + 1e-6
    assert np.mean(ratios == ratios.max()) > 0.1  # about 16% of draws clip at 1 + SF
    assert abs(np.mean(ratios) - 1) < 0.02
    # With exactly 8 visible joints the half-body box is never used.
    for _ in range(200):
        drawn = draw_augmentation(
            joints, np.r_[np.ones(8), np.zeros(9)], center, scale, params, UPPER, LOWER, 0.75, rng
        )
        assert not drawn.half_body


def test_augmentation_params_validation():
    with pytest.raises(ValueError, match="scale_factor"):
        AugmentationParams(scale_factor=1.5)
    with pytest.raises(ValueError, match="rotation_prob"):
        AugmentationParams(rotation_prob=2)


def clipped_normal_cdf(values: np.ndarray, mean: float, std: float, low: float, high: float):
    """CDF of clip(N(mean, std^2), low, high) at ``values``."""
    normal = np.array([0.5 * (1 + math.erf((v - mean) / (std * math.sqrt(2)))) for v in values])
    return np.where(values < low, 0.0, np.where(values >= high, 1.0, normal))


def ks_distance(samples: np.ndarray, cdf) -> float:
    """Kolmogorov-Smirnov distance sup |F_n - F| between ``samples`` and a CDF with atoms:
    compared at every sample point and just left of it."""
    points = np.sort(samples)
    count = len(points)
    right = np.abs(np.searchsorted(points, points, side="right") / count - cdf(points))
    left = np.abs(np.searchsorted(points, points, side="left") / count - cdf(points - 1e-9))
    return float(max(right.max(), left.max()))


def test_scale_and_rotation_follow_the_official_clipped_normals():
    rng = np.random.default_rng(2024)
    params = AugmentationParams(scale_factor=0.35, rotation_factor=45, half_body_prob=0.0)
    joints, center, scale = np.zeros((17, 2)), np.float32([50, 60]), np.float32([1.0, 4 / 3])
    count = 3000
    draws = [draw_augmentation(joints, np.ones(17), center, scale, params, UPPER, LOWER, 0.75,
                               rng) for _ in range(count)]
    ratios = np.array([drawn.scale[0] / scale[0] for drawn in draws])
    rotations = np.array([drawn.rotation for drawn in draws if drawn.rotation != 0])
    # KS critical distance at the 0.1% level: 1.95 / sqrt(n).
    assert ks_distance(ratios, lambda v: clipped_normal_cdf(v, 1, 0.35, 0.65, 1.35)) < \
        1.95 / math.sqrt(count)
    assert ks_distance(rotations, lambda v: clipped_normal_cdf(v, 0, 45, -90, 90)) < \
        1.95 / math.sqrt(len(rotations))
    # The clip atoms: P(|N(0,1)| > 1) = 0.317 of the scales, P(|N(0,1)| > 2) = 0.046 of the
    # rotations sit on a bound.
    assert abs(np.mean(np.isclose(np.abs(ratios - 1), 0.35)) - 0.3173) < 0.035
    assert abs(np.mean(np.abs(rotations) == 90) - 0.0455) < 0.02


def test_half_body_boxes_use_the_official_joint_sets_and_factor():
    rng = np.random.default_rng(7)
    params = AugmentationParams(scale_factor=0.0, rotation_factor=0, half_body_prob=1.0,
                                flip=False)
    joints = rng.uniform(0, 300, (17, 2))
    visible = np.ones(17)
    boxes = {}
    for name, ids in (("upper", UPPER), ("lower", LOWER)):
        points = joints[list(ids)].astype(np.float32)
        width, height = points.max(axis=0) - points.min(axis=0)
        width, height = max(width, 0.75 * height), max(height, width / 0.75)
        boxes[name] = (points.mean(axis=0), np.array([width, height]) / 200 * 1.5)
    assert set(UPPER) == set(range(11)) and set(LOWER) == set(range(11, 17))
    chosen = []
    for _ in range(600):
        drawn = draw_augmentation(joints, visible, np.float32([0, 0]), np.float32([1, 1]),
                                  params, UPPER, LOWER, 0.75, rng)
        assert drawn.half_body
        name = "upper" if np.allclose(drawn.center, boxes["upper"][0], atol=1e-3) else "lower"
        np.testing.assert_allclose(drawn.center, boxes[name][0], atol=1e-3)
        np.testing.assert_allclose(drawn.scale, boxes[name][1], rtol=1e-5)
        chosen.append(name == "upper")
    assert abs(np.mean(chosen) - 0.6915) < 4 * math.sqrt(0.25 / 600)


def test_colour_jitter_draws_after_the_official_ones():
    joints, visible = np.zeros((17, 2)), np.ones(17)
    center, scale = np.float32([100, 100]), np.float32([1.0, 4 / 3])
    params = AugmentationParams(half_body_prob=0.0, brightness=0.4, contrast=0.2,
                                saturation=0.0, brightness_prob=0.5, contrast_prob=0.5)
    # Official draws (half-body gate, drawn even at probability 0; scale; rotation gate,
    # failing; flip gate), then brightness gate and factor, contrast gate (failing); saturation
    # is off and draws nothing.
    draws = ScriptedDraws([("uniform", 0.5), ("normal", 0.0), ("uniform", 0.7), ("uniform", 0.9),
                           ("uniform", 0.1), ("uniform", 0.75), ("uniform", 0.6)])
    drawn = draw_augmentation(joints, visible, center, scale, params, UPPER, LOWER, 0.75, draws)
    assert not draws.draws
    assert drawn.colour == pytest.approx((1.2, 1.0, 1.0))
    assert AugmentationParams().brightness == AugmentationParams().contrast == 0
    with pytest.raises(ValueError, match="brightness"):
        AugmentationParams(brightness=1.5)
    with pytest.raises(ValueError, match="saturation_prob"):
        AugmentationParams(saturation_prob=-0.1)


def test_adjust_colour_hand_worked():
    image = torch.tensor([[[10.0, 200.0]], [[20.0, 100.0]], [[30.0, 0.0]]])  # [3, 1, 2] RGB
    unchanged = adjust_colour(image, torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(unchanged, image, rtol=0, atol=0)
    brighter = adjust_colour(image, torch.tensor([2.0, 1.0, 1.0]))
    torch.testing.assert_close(brighter, torch.tensor([[[20.0, 255.0]], [[40.0, 200.0]],
                                                       [[60.0, 0.0]]]))
    grey = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    flat = adjust_colour(image, torch.tensor([1.0, 0.0, 1.0]))  # contrast 0: the mean grey
    torch.testing.assert_close(flat, grey.mean().round().expand(3, 1, 2))
    desaturated = adjust_colour(image, torch.tensor([1.0, 1.0, 0.0]))  # saturation 0: grey
    torch.testing.assert_close(desaturated, grey.round().expand(3, 1, 2))
    batch = adjust_colour(image.expand(2, 3, 1, 2), torch.tensor([[2.0, 1, 1], [1.0, 1, 1]]))
    torch.testing.assert_close(batch[0], brighter)
    torch.testing.assert_close(batch[1], image)


def test_matrix_helpers_hand_worked():
    crop = get_affine_transform(np.float32([100, 50]), np.float32([1, 4 / 3]), 30, (192, 256))
    points = np.array([[3.0, 4.0], [150.0, 20.0]])
    flipped = points.copy()
    flipped[:, 0] = 640 - 1 - flipped[:, 0]
    np.testing.assert_allclose(affine_transform_points(points, horizontal_flip_matrix(640)),
                               flipped)
    np.testing.assert_allclose(
        affine_transform_points(points, compose_affine(crop, horizontal_flip_matrix(640))),
        affine_transform_points(flipped, crop),
    )
    # Pixel 0 of a 1/4-size decode covers full-size pixels 0..3, centred on 1.5.
    np.testing.assert_allclose(
        affine_transform_points(np.array([[0.0, 0.0], [2.0, 1.0]]), reduced_to_full_matrix(4)),
        [[1.5, 1.5], [9.5, 5.5]],
    )
    # Image pixels per crop pixel: 200 * scale[0] / 192.
    assert [decode_reduction([s, 1], 192) for s in (0.5, 0.96, 1.919, 1.92, 3.9, 7.7, 20)] == \
        [1, 1, 1, 2, 4, 8, 8]


def test_normalise_bgr_equals_normalise():
    crop = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    expected = normalise(torch.from_numpy(crop[:, :, ::-1].copy()).permute(2, 0, 1))
    np.testing.assert_array_equal(normalise_bgr(crop), expected.numpy())
    with pytest.raises(ValueError, match="uint8"):
        normalise_bgr(crop.astype(np.float32))
