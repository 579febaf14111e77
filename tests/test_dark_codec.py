"""The "dark" codec: DARK's unbiased targets (Zhang et al. CVPR 2020) on the official grid.

The independent references are hand-worked numbers and a numpy transcription of mmpose 0.x's
``TopDownGenerateTarget(unbiased_encoding=True)`` (``_msra_generate_target``), written in this
file from its published formula.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from pose.config import check_eval_config, compose_config
from pose.data import CocoKeypoints, collate_skip_none
from pose.data.targets import (
    BATCH_ENCODERS,
    PERSON_ENCODERS,
    dark_gaussian_heatmaps,
    dark_heatmap_targets,
    gaussian_heatmaps,
    official_peak_offset,
)
from pose.data.transforms import (
    CODECS,
    affine_transform_points,
    box_to_center_scale,
    crop_affine_transform,
    get_affine_transform,
)
from pose.evaluation import decode_heatmaps

COCO_256 = ((192, 256), (48, 64), 2.0)  # input (w, h) px, heatmap (w, h) cells, sigma cells
DEMO = ((128, 192), (32, 48), 1.0)  # the demo preset's sizes and sigma


def _mmpose_unbiased_targets(joints, visible, image_size, heatmap_size, sigma):
    """mmpose 0.x ``_msra_generate_target`` with ``unbiased_encoding=True``, one person."""
    heatmap_width, heatmap_height = heatmap_size
    stride = np.array(image_size, np.float64) / np.array(heatmap_size, np.float64)
    target = np.zeros((len(joints), heatmap_height, heatmap_width), np.float32)
    weight = np.asarray(visible, np.float32).copy()
    x = np.arange(0, heatmap_width, 1, np.float32)
    y = np.arange(0, heatmap_height, 1, np.float32)[:, None]
    for k in range(len(joints)):
        mu_x, mu_y = joints[k][0] / stride[0], joints[k][1] / stride[1]
        upper_left = (mu_x - 3 * sigma, mu_y - 3 * sigma)
        bottom_right = (mu_x + 3 * sigma + 1, mu_y + 3 * sigma + 1)
        if (upper_left[0] >= heatmap_width or upper_left[1] >= heatmap_height
                or bottom_right[0] < 0 or bottom_right[1] < 0):
            weight[k] = 0
        if weight[k] > 0.5:
            target[k] = np.exp(-((x - mu_x) ** 2 + (y - mu_y) ** 2) / (2 * sigma**2))
    return target, weight


def test_dark_targets_peak_at_hand_worked_sub_cell_positions():
    image_size, heatmap_size, sigma = COCO_256
    # Stride 4: crop pixels (42, 81) and (120, 28) are cells (10.5, 20.25) and (30, 7).
    target, weight = dark_gaussian_heatmaps(np.array([[42.0, 81.0], [120.0, 28.0]]), np.ones(2),
                                            image_size, heatmap_size, sigma)
    assert target.dtype == np.float32 and weight.tolist() == [1.0, 1.0]
    v, u = np.mgrid[0:64, 0:48]
    expected = np.exp(-((u - 10.5) ** 2 + (v - 20.25) ** 2) / 8)
    # The whole map; atol covers float32 denormals far from the peak.
    np.testing.assert_allclose(target[0], expected, rtol=1e-7, atol=1e-37)
    # Symmetric about x = 10.5: cells 10 and 11 are equal; the official target instead peaks at
    # the rounded cell (11, 20) with value 1.
    np.testing.assert_array_equal(target[0, :, 10], target[0, :, 11])
    assert target[0, 20, 10] == np.float32(math.exp(-(0.25 + 0.0625) / 8)) and target[0].max() < 1
    official, _ = gaussian_heatmaps(np.array([[42.0, 81.0]]), np.ones(1), image_size,
                                    heatmap_size, sigma)
    assert official[0, 20, 11] == 1.0 and official[0, 20, 10] < official[0, 20, 11]
    # A joint on a cell: peak exactly 1 there, neighbours exp(-1/8).
    assert target[1, 7, 30] == 1.0 and target[1].max() == 1.0
    assert target[1, 7, 31] == target[1, 7, 29] == target[1, 8, 30] == np.float32(math.exp(-1 / 8))


def test_dark_target_weights_follow_mmpose_rules():
    image_size, heatmap_size, sigma = COCO_256
    cells = np.array([
        [-6.9, 10.0],  # window from -12.9 to 0.1: reaches the map, weight 1
        [-7.25, 10.0],  # ends at -0.25 < 0: dropped
        [53.9, 10.0],  # starts at 47.9 < 48: kept
        [54.0, 10.0],  # starts at 48 >= W: dropped
        [20.0, 69.9],  # starts at 63.9 < 64: kept
        [20.0, 30.0],  # invisible
    ])
    target, weight = dark_gaussian_heatmaps(cells * 4, [1, 1, 1, 1, 1, 0], image_size,
                                            heatmap_size, sigma)
    assert weight.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert target[0, 10, 0] == np.float32(math.exp(-(6.9**2) / 8))
    assert target[1].max() == target[3].max() == target[5].max() == 0


@pytest.mark.parametrize("setting", [COCO_256, DEMO, ((128, 192), (32, 48), 0.8)])
def test_dark_targets_match_mmpose_definition(setting):
    image_size, heatmap_size, sigma = setting
    rng = np.random.default_rng(5)
    joints = np.concatenate([rng.uniform(-30, np.array(image_size) + 30, size=(60, 2)),
                             [[0.0, 0.0], [image_size[0] - 1.0, image_size[1] - 1.0]]])
    visible = (rng.random(len(joints)) > 0.2).astype(np.float64)
    target, weight = dark_gaussian_heatmaps(joints, visible, image_size, heatmap_size, sigma)
    expected_target, expected_weight = _mmpose_unbiased_targets(joints, visible, image_size,
                                                                heatmap_size, sigma)
    np.testing.assert_array_equal(weight, expected_weight)
    # Ours: float64 exponentials rounded to float32; mmpose's: float32 grids minus float64 mu.
    np.testing.assert_allclose(target, expected_target, rtol=2e-6, atol=1e-37)
    # The CPU path runs the batched function: bit-equal to it on a batch.
    batched, batched_weight = dark_heatmap_targets(
        torch.from_numpy(np.stack([joints, joints[::-1]])),
        torch.from_numpy(np.stack([visible, visible[::-1]])), image_size, heatmap_size, sigma)
    np.testing.assert_array_equal(batched[0].numpy(), target)
    np.testing.assert_array_equal(batched_weight[1].numpy(), weight[::-1])


def test_dark_targets_reject_bad_input():
    with pytest.raises(ValueError, match="sigma must be positive"):
        dark_gaussian_heatmaps(np.zeros((2, 2)), np.ones(2), (192, 256), (48, 64), 0.0)
    with pytest.raises(ValueError, match="expected joints"):
        dark_gaussian_heatmaps(np.zeros((2, 2)), np.ones(3), (192, 256), (48, 64), 2.0)
    with pytest.raises(ValueError, match="expected joints"):
        dark_heatmap_targets(torch.zeros(1, 2, 2), torch.ones(1, 3), (192, 256), (48, 64), 2.0)


def test_every_codec_has_both_encoders():
    assert set(PERSON_ENCODERS) == set(BATCH_ENCODERS) == set(CODECS)


def _round_trip_cells(setting, codec: str, post_process: str) -> np.ndarray:
    """Keypoints between cells through the official crop, ``codec``'s targets and
    ``post_process``; the errors [N, 2] (x, y) in heatmap cells."""
    image_size, heatmap_size, sigma = setting
    heatmap_width, heatmap_height = heatmap_size
    center, scale = box_to_center_scale([100.0, 50.0, 150.0, 300.0],
                                        image_size[0] / image_size[1])
    # Heatmap positions on and between cells, kept 6 cells from the borders.
    fraction = np.array([0.0, 0.1, 0.25, 0.33, 0.5, 0.67, 0.75, 0.9])
    cells = np.stack([6 + fraction + np.arange(8) * (heatmap_width - 14) / 8,
                      6 + fraction[::-1] + np.arange(8) * (heatmap_height - 14) / 8], axis=1)
    stride = np.array(image_size) / np.array(heatmap_size)
    inverse = get_affine_transform(center, scale, 0.0, image_size, inverse=True)
    keypoints = affine_transform_points(cells * stride, inverse)  # image pixels
    matrix = crop_affine_transform(codec, center, scale, 0.0, image_size)
    target, _ = PERSON_ENCODERS[codec](affine_transform_points(keypoints, matrix),
                                       np.ones(len(keypoints)), image_size, heatmap_size, sigma)
    decoded, _ = decode_heatmaps(torch.from_numpy(target)[None].double(),
                                 torch.from_numpy(center[None]), torch.from_numpy(scale[None]),
                                 post_process=post_process, sigma=sigma)
    pixels_per_cell = scale[0] * 200 / heatmap_width  # the official crop (quirk P1)
    return (decoded[0].numpy() - keypoints) / pixels_per_cell


@pytest.mark.parametrize("setting", [COCO_256, DEMO, ((128, 192), (32, 48), 0.8)])
def test_dark_round_trip_recovers_keypoints_within_002_cells(setting):
    errors = np.abs(_round_trip_cells(setting, "dark", "dark"))
    assert errors.max() < 0.02
    # The quarter offset on the same targets: within a quarter cell.
    assert np.abs(_round_trip_cells(setting, "dark", "quarter_offset")).max() <= 0.25 + 1e-9
    if setting[2] == 0.8:
        return  # the official window is a cell off there (the test below)
    # The official targets under the same decoding: rounded to the nearest cell, so up to half
    # a cell off, which DARK's refinement cannot undo.
    official = np.abs(_round_trip_cells(setting, "heatmap", "dark"))
    assert 0.15 < official.mean() < 0.5 and official.max() >= 0.4


def test_official_window_is_a_cell_off_where_3_sigma_has_a_fraction_below_half():
    # The official generate_target: ul = int(mu - 3 sigma), peak at ul + (6 sigma + 1) // 2. For
    # sigma 0.8 that is int(10 - 2.4) + 5.8 // 2 = 7 + 2 = 9 for a joint on cell 10.
    target, _ = gaussian_heatmaps(np.array([[40.0, 40.0]]), np.ones(1), (128, 192), (32, 48), 0.8)
    assert np.unravel_index(target[0].argmax(), target[0].shape) == (9, 9)
    for sigma in (1.0, 1.25, 1.5, 2.0, 3.0):  # whole 3 sigma or a fraction >= .5: on the cell
        target, _ = gaussian_heatmaps(np.array([[40.0, 40.0]]), np.ones(1), (128, 192),
                                      (32, 48), sigma)
        assert np.unravel_index(target[0].argmax(), target[0].shape) == (10, 10)
    dark, _ = dark_gaussian_heatmaps(np.array([[40.0, 40.0]]), np.ones(1), (128, 192), (32, 48),
                                     0.8)
    assert np.unravel_index(dark[0].argmax(), dark[0].shape) == (10, 10)
    assert [official_peak_offset(sigma) for sigma in (0.5, 0.8, 1.0, 1.1, 1.25, 2.0, 3.0)] == [
        0, 1, 0, 1, 0, 0, 0]


def test_datasets_refuse_a_sigma_the_official_window_puts_a_cell_off(coco_root):
    with pytest.raises(ValueError, match="^sigma=0.8 does not go with codec 'heatmap': .* use "
                                         "codec 'dark'"):
        CocoKeypoints(coco_root, "val2017", sigma=0.8)
    assert len(CocoKeypoints(coco_root, "val2017", sigma=0.8, codec="dark")) > 0


@pytest.fixture(scope="module")
def coco_root(coco_sample_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    (root / "val2017").mkdir()
    (root / "annotations").mkdir()
    for image in coco_sample_dir.glob("*.jpg"):
        shutil.copyfile(image, root / "val2017" / image.name)
    shutil.copyfile(coco_sample_dir / "test_coco.json",
                    root / "annotations" / "person_keypoints_val2017.json")
    return root


def test_coco_dark_items_use_the_official_crop_and_dark_targets(coco_root):
    dataset = CocoKeypoints(coco_root, "val2017", codec="dark")
    official = CocoKeypoints(coco_root, "val2017")
    for index in range(len(dataset)):
        item, official_item, record = dataset[index], official[index], dataset.records[index]
        torch.testing.assert_close(item["image"], official_item["image"], rtol=0, atol=0)
        torch.testing.assert_close(item["joints"], official_item["joints"], rtol=0, atol=0)
        matrix = get_affine_transform(record["center"], record["scale"], 0.0, (192, 256))
        labelled = record["visible"] > 0
        target, weight = dark_gaussian_heatmaps(
            affine_transform_points(np.where(labelled[:, None], record["joints"], 0), matrix),
            record["visible"], (192, 256), (48, 64), 2.0)
        np.testing.assert_array_equal(item["target"].numpy(), target * labelled[:, None, None])
        np.testing.assert_array_equal(item["target_weight"].numpy(), weight)
        assert not torch.equal(item["target"], official_item["target"])


def test_dark_device_path_equals_cpu_path(coco_root):
    cpu = CocoKeypoints(coco_root, "val2017", train=True, seed=4, codec="dark")
    device = CocoKeypoints(coco_root, "val2017", train=True, seed=4, codec="dark",
                           device_augmentation=True)
    transform = device.batch_transform()
    assert transform.codec == "dark"
    for epoch in range(2):
        cpu.set_epoch(epoch)
        device.set_epoch(epoch)
        expected = collate_skip_none([cpu[i] for i in range(len(cpu))])
        batch = transform(collate_skip_none([device[i] for i in range(len(device))]))
        level = 1 / 255 / 0.225  # crops up to interpolation, as for the official codec
        assert ((batch["image"] - expected["image"]).abs() / level).max() < 2.01
        torch.testing.assert_close(batch["target"], expected["target"], rtol=0, atol=0)
        torch.testing.assert_close(batch["target_weight"], expected["target_weight"], rtol=0,
                                   atol=0)


@pytest.mark.parametrize("post_process", ["quarter_offset", "dark", "none"])
def test_dark_codec_decodes_on_the_official_grid(post_process):
    cfg = compose_config("train", ["experiment=demo", "data.codec=dark",
                                   f"eval.post_process={post_process}"])
    check_eval_config(cfg.eval, cfg.data.codec)
    cfg.eval.post_process = "udp"
    with pytest.raises(ValueError, match="^data.codec=dark does not go with eval.post_process=udp"):
        check_eval_config(cfg.eval, cfg.data.codec)
