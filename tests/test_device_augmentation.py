"""Device-side augmentation on CPU tensors: crops equal the CPU path's up to interpolation,
targets bit-equal, and training steps run through the trainer's batch_transform hook."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pose.data import AugmentationParams, CocoKeypoints, DeviceAugmentation, collate_skip_none
from pose.data.device import warp_images
from pose.data.targets import heatmap_targets
from pose.engine.logger import ScalarWriter, StepLogger
from pose.engine.trainer import TrainParts, TrainSettings, TrainState, train_one_epoch
from pose.losses import build_loss
from pose.models import create_model
from pose.synthetic import generate_coco_dataset

SPLIT = "val2017"
LEVEL = 1 / 255 / 0.225  # one uint8 level after normalisation (the smallest std)


@pytest.fixture(scope="module")
def root(coco_sample_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    (root / SPLIT).mkdir()
    (root / "annotations").mkdir()
    for image in coco_sample_dir.glob("*.jpg"):
        shutil.copyfile(image, root / SPLIT / image.name)
    shutil.copyfile(coco_sample_dir / "test_coco.json",
                    root / "annotations" / f"person_keypoints_{SPLIT}.json")
    return root


def test_warp_images_equals_the_official_crops(reference_dir):
    data = np.load(reference_dir / "pipeline" / "crop.npz")
    image = torch.from_numpy(data["image"]).permute(2, 0, 1)
    count = len(data["center"])
    crops = warp_images(image.expand(count, -1, -1, -1), torch.from_numpy(data["trans"]),
                        (192, 256))
    expected = torch.from_numpy(data["crop_uint8"]).permute(0, 3, 1, 2).float()
    difference = (crops.round() - expected).abs()
    # cv2 samples at 1/32-pixel positions with fixed-point weights: one level at most.
    assert difference.max() <= 1
    assert (difference > 0).float().mean() < 0.01


@pytest.mark.parametrize("name", ["generate_target_coco_256x192_s2.npz",
                                  "generate_target_coco_384x288_s3.npz"])
def test_batched_targets_equal_official(reference_dir, name):
    data = np.load(reference_dir / "pipeline" / name)
    target, weight = heatmap_targets(
        torch.from_numpy(data["joints"]), torch.from_numpy(data["joints_vis"][..., 0]),
        data["image_size"], data["heatmap_size"], float(data["sigma"]),
    )
    assert target.dtype == torch.float32 and weight.dtype == torch.float32
    np.testing.assert_array_equal(target.numpy(), data["target"])
    np.testing.assert_array_equal(weight.numpy(), data["target_weight"][..., 0])


@pytest.mark.parametrize("options", [
    {},
    {"reduced_decoding": True},
    {"augmentation": AugmentationParams(brightness=0.4, contrast=0.4, saturation=0.4)},
])
def test_device_path_equals_cpu_path(root, options):
    size = {"image_size": (96, 128), "heatmap_size": (24, 32)} if options.get(
        "reduced_decoding") else {}
    cpu = CocoKeypoints(root, SPLIT, train=True, seed=2, **size, **options)
    device = CocoKeypoints(root, SPLIT, train=True, seed=2, device_augmentation=True,
                           **size, **options)
    assert cpu.batch_transform() is None
    transform = device.batch_transform()
    assert isinstance(transform, DeviceAugmentation)
    flips = 0
    for epoch in range(3):
        cpu.set_epoch(epoch)
        device.set_epoch(epoch)
        expected = collate_skip_none([cpu[i] for i in range(len(cpu))])
        batch = transform(collate_skip_none([device[i] for i in range(len(device))]))
        assert "source_image" not in batch
        difference = (batch["image"] - expected["image"]).abs() / LEVEL
        assert difference.max() < 2.01
        assert (difference > 0.01).float().mean() < 2e-3
        torch.testing.assert_close(batch["target"], expected["target"], rtol=0, atol=0)
        torch.testing.assert_close(batch["target_weight"], expected["target_weight"], rtol=0,
                                   atol=0)
        flips += int((batch["crop_matrix"][:, 0, 0] < 0).sum())
    assert flips > 0


def test_device_augmentation_names_what_is_missing(root):
    batch = collate_skip_none([CocoKeypoints(root, SPLIT, train=True)[0]])
    with pytest.raises(KeyError, match=r"device_augmentation=True.*'crop_matrix'"):
        DeviceAugmentation((192, 256), (48, 64), 2.0)(batch)


def test_training_steps_through_the_batch_transform_hook(root, tmp_path):
    """A few hrnet_w8_tiny steps with the device-side step on; the first loss equals the one
    of the CPU pipeline for the same batch and weights."""
    size = {"image_size": (64, 96), "heatmap_size": (16, 24), "sigma": 1.0}
    device_set = CocoKeypoints(root, SPLIT, train=True, device_augmentation=True, **size)
    cpu_set = CocoKeypoints(root, SPLIT, train=True, **size)
    loader = torch.utils.data.DataLoader(device_set, batch_size=4, collate_fn=collate_skip_none)
    torch.manual_seed(0)
    model = create_model("hrnet_w8_tiny", num_joints=17)
    loss_fn = build_loss("mse", use_target_weight=True)
    first_cpu_batch = collate_skip_none([cpu_set[i] for i in range(4)])
    model.train()
    expected_loss = loss_fn(model(first_cpu_batch["image"]), first_cpu_batch["target"],
                            first_cpu_batch["target_weight"]).item()
    torch.manual_seed(0)
    model = create_model("hrnet_w8_tiny", num_joints=17)
    before = [p.detach().clone() for p in model.parameters()]
    seen = []
    transform = device_set.batch_transform()

    def recording_transform(batch: dict) -> dict:
        batch = transform(batch)
        seen.append(batch)
        return batch

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    state = TrainState()
    writer = ScalarWriter(tmp_path)
    try:
        parts = TrainParts(model, loss_fn, optimizer, batch_transform=recording_transform)
        mean_loss, _ = train_one_epoch(parts, loader, torch.device("cpu"), state,
                                       TrainSettings(max_steps=2), StepLogger(writer))
    finally:
        writer.close()
    assert state.step == 2 and len(seen) == 2 and np.isfinite(mean_loss)
    assert seen[0]["image"].shape == (4, 3, 96, 64) and seen[0]["target"].shape == (4, 17, 24, 16)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    # The first batch's loss (same initial weights, train mode) equals the CPU path's up to
    # the interpolation differences of the crops.
    torch.manual_seed(0)
    fresh = create_model("hrnet_w8_tiny", num_joints=17).train()
    device_loss = loss_fn(fresh(seen[0]["image"]), seen[0]["target"],
                          seen[0]["target_weight"]).item()
    assert device_loss == pytest.approx(expected_loss, rel=1e-3)


@pytest.mark.slow
def test_pose_train_with_device_augmentation(tmp_path):
    """End to end through pose.train: hrnet_w8_tiny, the device-side step on (with reduced
    decoding and colour jitter), one loader worker, two steps, then the evaluation."""
    root = tmp_path / "coco"
    generate_coco_dataset(root, num_train_images=6, num_val_images=2, seed=5,
                          image_size=(192, 192))
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "pose.train", "experiment=demo", "model=hrnet_w8_tiny",
         f"data.root={root}", "data.device_augmentation=true", "data.reduced_decoding=true",
         "data.brightness=0.3", "data.num_workers=1", "train.max_steps=2", "train.batch_size=4",
         "train.precision=fp32", "device=cpu", "eval.flip_test=false",
         f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint["step"] == 2 and checkpoint["config"]["data"]["device_augmentation"]
    assert (run_dir / "metrics.json").is_file()
    assert "annotations not used for training" in result.stderr
