"""Model cost: parameters, MACs and both papers' "FLOPs" reproduce the published tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pose.models.stats import count_ops, count_parameters, model_stats

REPO_ROOT = Path(__file__).resolve().parents[1]

# HRNet README (recipes.md §7): (model, (H, W)) -> (#params in M, GFLOPs).
HRNET_PUBLISHED = {
    ("hrnet_w32", (256, 192)): (28.5, 7.1),
    ("hrnet_w32", (384, 288)): (28.5, 16.0),
    ("hrnet_w48", (256, 192)): (63.6, 14.6),
    ("hrnet_w48", (384, 288)): (63.6, 32.9),
}
# Exact parameter counts measured on the official code (recipes.md §7).
HRNET_PARAMS = {"hrnet_w32": 28_536_113, "hrnet_w48": 63_595_745}

# Lite-HRNet README (recipes.md §7): (model, (H, W), joints) -> (reference key, FLOPs in M).
LITE_PUBLISHED = {
    ("lite_hrnet_18", (256, 192), 17): ("litehrnet_18_coco_256x192", 205.2),
    ("lite_hrnet_30", (256, 192), 17): ("litehrnet_30_coco_256x192", 319.2),
    ("lite_hrnet_18", (384, 288), 17): ("litehrnet_18_coco_384x288", 461.6),
    ("lite_hrnet_30", (384, 288), 17): ("litehrnet_30_coco_384x288", 717.8),
    ("lite_hrnet_18", (256, 256), 16): ("litehrnet_18_mpii_256x256", 273.4),
    ("lite_hrnet_30", (256, 256), 16): ("litehrnet_30_mpii_256x256", 425.3),
    # The naive README rows use the head fixed to 30 input channels (quirk L1), as ours is.
    ("naive_lite_hrnet_18", (256, 192), 17):
        ("naive_litehrnet_18_coco_256x192__HEAD_IN30_PATCHED", 194.8),
    ("wider_naive_lite_hrnet_18", (256, 192), 17): ("wider_naive_litehrnet_18_coco_256x192", 311.1),
}


def _reference_model(reference_dir: Path, key: str) -> dict:
    return json.loads((reference_dir / "models.json").read_text())[key]


@pytest.mark.parametrize(("name", "input_hw"), sorted(HRNET_PUBLISHED))
def test_hrnet_matches_published_table(name, input_hw):
    published_params_m, published_gflops = HRNET_PUBLISHED[name, input_hw]
    stats = model_stats(name, input_hw)
    assert stats.params == HRNET_PARAMS[name]
    assert round(stats.params / 1e6, 1) == published_params_m
    assert round(stats.hrnet_gflops, 1) == published_gflops


@pytest.mark.parametrize(("name", "input_hw"), sorted(HRNET_PUBLISHED))
def test_hrnet_macs_match_official_summary(reference_dir, name, input_hw):
    height, width = input_hw
    width_tag = name.removeprefix("hrnet_")
    reference = _reference_model(reference_dir, f"hrnet_{width_tag}_coco_{height}x{width}")
    stats = model_stats(name, input_hw)
    assert stats.params == reference["num_params"]
    assert stats.macs == reference["macs_conv_linear"]["total"]


def test_hrnet_mpii_macs_match_official_summary(reference_dir):
    reference = _reference_model(reference_dir, "hrnet_w32_mpii_256x256")
    stats = model_stats("hrnet_w32", (256, 256), num_joints=16)
    assert (stats.params, stats.macs) == (reference["num_params"],
                                          reference["macs_conv_linear"]["total"])
    assert round(stats.hrnet_gflops, 3) == 9.493  # the official get_model_summary's print


@pytest.mark.parametrize(("name", "input_hw", "num_joints"), sorted(LITE_PUBLISHED))
def test_lite_hrnet_matches_published_flops(name, input_hw, num_joints):
    _, published_mflops = LITE_PUBLISHED[name, input_hw, num_joints]
    stats = model_stats(name, input_hw, num_joints=num_joints)
    assert round(stats.lite_hrnet_mflops, 1) == published_mflops


@pytest.mark.parametrize(("name", "input_hw", "num_joints"), sorted(LITE_PUBLISHED))
def test_lite_hrnet_matches_official_torchstat(reference_dir, name, input_hw, num_joints):
    key, _ = LITE_PUBLISHED[name, input_hw, num_joints]
    reference = _reference_model(reference_dir, key)
    stats = model_stats(name, input_hw, num_joints=num_joints)
    assert stats.params == reference["num_params"]
    assert stats.torchstat_flops == reference["official_torchstat"]["Flops"]
    # In eval mode our fuse computes the official loop's repeated branch-0 path once (quirk
    # L2), so our executed MACs are the official count with every conv module counted once.
    assert stats.macs == reference["macs_conv_linear"]["conv_first_call_only"]


def test_count_ops_by_hand():
    # conv 3->8 3x3 s2 with bias on 16x16: 8x8 outputs; BN; ReLU; global pool; linear 8->4.
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
                          nn.Unflatten(1, (4, 1, 1)), nn.Upsample(scale_factor=2))
    macs, flops = count_ops(model, (16, 16))
    conv = 8 * 3 * 9 * 64
    assert macs == conv + 8 * 4
    torchstat = (conv + 8 * 64  # conv + bias
                 + 2 * 8 * 64  # affine BN
                 + 8 * 64  # ReLU
                 + 8 * 9 * 9  # global pool: C (H + 1) (W + 1)
                 + 8 * 4  # linear
                 + 2 * 2)  # Upsample: H x W of the output, channels ignored (torchstat's slip)
    assert flops == torchstat
    assert count_parameters(model) == 8 * 27 + 8 + 16 + 8 * 4 + 4
    assert model.training  # the training flag is restored


@pytest.mark.slow
def test_script_prints_json_rows():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "model_stats.py"), "--models", "hrnet_w32",
         "--sizes", "256x192", "--json"],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    rows = json.loads(result.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert {"model", "input", "params", "macs", "hrnet_gflops", "lite_hrnet_mflops"} <= set(row)
    assert (row["model"], row["input"], row["params"]) == ("hrnet_w32", "256x192", 28_536_113)
    assert round(row["hrnet_gflops"], 1) == 7.1


def test_counting_runs_on_the_meta_device():
    stats = model_stats("hrnet_w8_tiny", (64, 64))
    assert stats.macs > 0 and stats.torchstat_flops > stats.macs
    assert not torch.empty(0).is_meta  # the default device is left alone
