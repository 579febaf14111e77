"""pose.train end to end on the CPU: a run killed with SIGKILL and resumed ends bit-identical to
an uninterrupted one; every training switch at once; the SLURM launcher's config composes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from pose.config import register_configs

CONF = Path(__file__).resolve().parents[1] / "conf"
N = 3  # steps before the kill; the runs take 2N (an epoch is 5 steps)


@pytest.fixture(scope="module")
def dataset(synthetic_coco) -> Path:
    # 23 people: 5 batches of 4 per epoch.
    return synthetic_coco(num_train_images=12, num_val_images=2, seed=4,
                          image_size=(128, 128))


def train_command(dataset: Path, run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "pose.train", "experiment=demo", "model=hrnet_w8_tiny",
            f"data.root={dataset}", "data.image_size=[64,64]", "data.heatmap_size=[16,16]",
            "train.batch_size=4", "device=cpu", "eval.flip_test=false",
            "train.num_log_images=0", f"hydra.run.dir={run_dir}", *overrides]


@pytest.mark.slow
def test_a_killed_and_resumed_run_ends_bit_identical(dataset, tmp_path):
    """2N steps straight, against N steps, SIGKILL, and N more after train.resume=true; with
    loader workers, the EMA and a checkpoint every N steps (the kill lands mid-epoch, and the
    resumed run crosses into the next epoch)."""
    overrides = ["train.precision=fp32", "data.num_workers=2", "train.ema=true",
                 f"train.checkpoint_interval={N}", f"train.max_steps={2 * N}"]
    straight = subprocess.run(train_command(dataset, tmp_path / "straight", *overrides),
                              capture_output=True, text=True, timeout=300, check=False)
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(train_command(dataset, killed_dir, *overrides),
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(300, process.kill)
    watchdog.start()
    seen = []
    for line in process.stderr:  # the kill lands right after the step-N checkpoint
        seen.append(line)
        if f"step {N}: checkpoint saved" in line:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait()
    watchdog.cancel()
    assert process.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    # The kill lands during step N + 1, unless the machine is so busy that the run got further
    # (to the end-of-epoch checkpoint); the run then resumes from there, just as exactly.
    killed_at = torch.load(killed_dir / "last.pt", weights_only=False)
    assert N <= killed_at["step"] < 2 * N

    resumed = subprocess.run(train_command(dataset, killed_dir, *overrides, "train.resume=true"),
                             capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    if killed_at["step"] == N:
        assert f"resumed at epoch 0, step {N} ({N * 4} samples into the epoch)" in resumed.stderr

    expected = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    actual = torch.load(killed_dir / "last.pt", weights_only=False)
    assert actual["step"] == expected["step"] == 2 * N and actual["epoch"] == expected["epoch"]
    for part in ("model", "ema"):
        weights = expected[part] if part == "model" else expected[part]["module"]
        resumed_weights = actual[part] if part == "model" else actual[part]["module"]
        assert weights.keys() == resumed_weights.keys()
        different = [key for key in weights if not torch.equal(weights[key], resumed_weights[key])]
        assert not different, f"{part}: {different[:5]}"
    assert actual["ema"]["updates"] == 2 * N
    moments = [state["exp_avg"] for state in expected["optimizer"]["state"].values()]
    resumed_moments = [state["exp_avg"] for state in actual["optimizer"]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, resumed_moments, strict=True))


@pytest.mark.slow
def test_every_training_switch_at_once(dataset, tmp_path):
    """float16 with loss scaling, channels_last, AdamW, cosine after a warmup, clipping,
    accumulation, the EMA, SyncBN (ignored in one process), checkpoints every step, pictures."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    result = subprocess.run(train_command(
        dataset, run_dir, "train.precision=fp16", "train.channels_last=true",
        "train.optimizer=adamw", "train.weight_decay=0.01", "train.scheduler=cosine",
        "train.warmup_iters=2", "train.clip_grad_norm=1.0", "train.accumulate_steps=2",
        "train.ema=true", "train.sync_bn=true", "train.cudnn_benchmark=false",
        "train.checkpoint_interval=1", "train.max_steps=2", "train.log_interval=1",
        "train.num_log_images=2", "data.num_workers=0"),
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(run_dir / "last.pt", weights_only=False)
    assert checkpoint["step"] == 2 and checkpoint["epoch_samples"] == 2 * 2 * 4
    assert checkpoint["grad_scaler"]["scale"] > 0 and checkpoint["ema"]["updates"] == 2
    assert checkpoint["optimizer"]["param_groups"][0]["weight_decay"] == 0.01
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {"train/loss_scale", "train/grad_norm", "val/AP"} <= set(events.Tags()["scalars"])
    assert {"val/skeletons", "val/heatmaps"} <= set(events.Tags()["images"])
    assert "evaluating the EMA weights" not in result.stderr  # that is pose.eval's line
    evaluation = subprocess.run([sys.executable, "-m", "pose.eval",
                                 f"checkpoint={run_dir / 'best.pt'}", "eval.flip_test=false",
                                 "eval.num_visualize=0", f"hydra.run.dir={tmp_path / 'eval'}"],
                                capture_output=True, text=True, timeout=300, check=False)
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert "evaluating the EMA weights" in evaluation.stderr


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_clear_line(dataset, tmp_path):
    """SGD at LR 1e30: the first step blows the weights up, the second step's loss is not
    finite; the run stops saying so, and last.pt keeps step 1's weights."""
    run_dir = tmp_path / "run"
    result = subprocess.run(train_command(
        dataset, run_dir, "train.optimizer=sgd", "train.lr=1e30", "train.max_steps=4",
        "train.checkpoint_interval=1", "data.num_workers=0", "train.precision=fp32"),
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "pose.train: error: the training loss is" in result.stderr
    assert "at step 2 (epoch 0)" in result.stderr and "Traceback" not in result.stderr
    last = torch.load(run_dir / "last.pt", weights_only=False)
    assert last["step"] == 1
    assert all(torch.isfinite(value).all() for value in last["model"].values())


def test_sync_bn_on_the_cpu_under_ddp_is_refused():
    from pose.engine.distributed import DistributedContext
    from pose.engine.precision import prepare_model

    context = DistributedContext(rank=0, world_size=2)
    with pytest.raises(ValueError, match="train.sync_bn=true needs CUDA"):
        prepare_model(torch.nn.BatchNorm2d(2), context, sync_bn=True)


@pytest.mark.parametrize("launcher", ["slurm", "submitit_slurm"])
def test_the_slurm_launcher_config_composes(launcher):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="train", return_hydra_config=True,
                      overrides=[f"hydra/launcher={launcher}", "hydra.launcher.nodes=2",
                                 "hydra.launcher.partition=gpu", "experiment=hrnet_w32_256x192",
                                 "train.resume=auto"])
    settings = cfg.hydra.launcher
    assert settings._target_ == ("hydra_plugins.hydra_submitit_launcher.submitit_launcher."
                                 "SlurmLauncher")
    assert (settings.nodes, settings.partition) == (2, "gpu")
    if launcher == "slurm":  # our preset: one task per GPU, requeued runs resume
        assert (settings.tasks_per_node, settings.gpus_per_node) == (8, 8)
        assert settings.max_num_timeout == 5
    assert type(instantiate(settings)).__name__ == "SlurmLauncher"
    assert cfg.hydra.sweep.dir.startswith("outputs/hrnet_w32_256x192/")
