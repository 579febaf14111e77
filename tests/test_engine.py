"""Engine pieces: checkpoints (atomic, readable errors), the LR schedule against the official
one."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pose.engine.checkpoint import load_checkpoint, save_checkpoint
from pose.engine.logger import ScalarWriter, StepLogger
from pose.engine.optim import build_optimizer, linear_warmup_factor, multistep_lr
from pose.engine.precision import (
    autocast_choice,
    autocast_dtype,
    channels_last_choice,
    grad_scaler_for,
)
from pose.engine.trainer import TrainParts, TrainSettings, TrainState, fit, train_one_epoch
from pose.losses import build_loss
from pose.models.weights import CheckpointError, load_model_weights


def test_checkpoint_round_trip(tmp_path):
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "last.pt", {"model": model.state_dict(), "config": {"a": 1}})
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded["config"] == {"a": 1}
    fresh = nn.Linear(3, 2)
    load_model_weights(fresh, loaded["model"], "last.pt")
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)
    assert [path.name for path in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_failed_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "config": {"version": 1}})

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model": {}, "config": {"version": 2}})
    monkeypatch.undo()
    assert load_checkpoint(path)["config"] == {"version": 1}
    assert [entry.name for entry in tmp_path.iterdir()] == ["last.pt"]


def test_missing_and_foreign_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*garbage.pt"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a pose checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_weights_of_another_architecture_are_refused_with_the_differences():
    source = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1))
    target = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with pytest.raises(CheckpointError) as error:
        load_model_weights(target, source.state_dict(), "w32.pt")
    message = str(error.value)
    assert "w32.pt" in message and "missing keys: 3.weight, 3.bias" in message
    assert "shape mismatches" in message and "0.weight: (8, 3, 3, 3) vs (16, 3, 3, 3)" in message


def test_lr_schedule_follows_the_milestones(reference_dir):
    """Official HRNet LR per epoch (pipeline/lr_schedule_hrnet.json) drops one epoch before its
    configured milestones (quirk P10); ours applies them as written: the same values, one epoch
    later at each drop, and identical everywhere else."""
    official = json.loads((reference_dir / "pipeline" / "lr_schedule_hrnet.json").read_text())
    official = official["lr_per_epoch_index"]
    optimizer = build_optimizer(nn.Linear(1, 1).parameters(), "adam", lr=1e-3)
    scheduler = multistep_lr(optimizer, [170, 200], 0.1)
    ours = []
    for _ in range(210):
        ours.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert len(official) == 210
    assert [e for e in range(210) if abs(ours[e] - official[e]) > 1e-12] == [169, 199]
    # The same schedule, one epoch later: ours[e] == official[e - 1].
    assert ours[1:] == pytest.approx(official[:-1], rel=1e-9) and ours[0] == official[0]
    assert (ours[169], ours[170], ours[199], ours[200]) == pytest.approx((1e-3, 1e-4, 1e-4, 1e-5))


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="train.optimizer='lamb'.*adam, adamw, sgd"):
        build_optimizer(nn.Linear(1, 1).parameters(), "lamb", lr=1e-3)


def test_precision_names_are_checked():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("fp16", cpu) is torch.float16
    assert autocast_dtype("bf16", torch.device("cuda")) is torch.bfloat16
    with pytest.raises(ValueError, match="train.precision='half'.*auto, fp32, bf16, fp16"):
        autocast_dtype("half", cpu)


def test_only_float16_gets_a_grad_scaler():
    cpu = torch.device("cpu")
    assert grad_scaler_for(None, cpu) is None and grad_scaler_for(torch.bfloat16, cpu) is None
    assert isinstance(grad_scaler_for(torch.float16, cpu), torch.amp.GradScaler)


def test_bf16_falls_back_to_fp32_on_cpus_without_it(monkeypatch, caplog):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert autocast_dtype("bf16", torch.device("cpu")) is None
    assert "no native bfloat16" in caplog.text


def _cpu_with(monkeypatch, *, amx: bool, avx512_bf16: bool, capability: str = "AVX512",
              onednn_isa: str | None = None) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if onednn_isa is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", onednn_isa)


@pytest.mark.parametrize(("cpu", "expected", "why"), [
    ({"amx": True, "avx512_bf16": True}, torch.bfloat16, "has AMX"),
    ({"amx": False, "avx512_bf16": True}, torch.bfloat16, "has AVX512-BF16"),
    ({"amx": False, "avx512_bf16": False}, None, "no native bfloat16"),
    # The AVX2 emulation of the demo's budget (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2).
    ({"amx": True, "avx512_bf16": True, "capability": "AVX2"}, None, "AVX2 kernels"),
    ({"amx": True, "avx512_bf16": True, "onednn_isa": "avx2"}, None, "capped at AVX2"),
    ({"amx": True, "avx512_bf16": True, "onednn_isa": "AVX512_CORE_AMX"}, torch.bfloat16, "AMX"),
])
def test_auto_precision_on_the_cpu_is_bf16_only_where_native(monkeypatch, cpu, expected, why):
    _cpu_with(monkeypatch, **cpu)
    dtype, reason = autocast_choice("auto", torch.device("cpu"))
    assert dtype is expected and why in reason
    assert autocast_dtype("bf16", torch.device("cpu")) is expected
    assert autocast_choice("fp32", torch.device("cpu"))[0] is None


def test_auto_precision_keeps_lite_hrnet_in_float32_on_the_cpu(monkeypatch):
    _cpu_with(monkeypatch, amx=True, avx512_bf16=True)
    cpu = torch.device("cpu")
    dtype, reason = autocast_choice("auto", cpu, "lite_hrnet_18")
    assert dtype is None and "lite_hrnet_18 trains faster in float32" in reason
    assert autocast_choice("auto", cpu, "hrnet_w32")[0] is torch.bfloat16
    assert autocast_choice("bf16", cpu, "lite_hrnet_18")[0] is torch.bfloat16  # as asked


def test_channels_last_default_is_on_for_cpu_and_cuda():
    for device in ("cpu", "cuda"):
        assert channels_last_choice(None, torch.device(device))[0] is True
    assert channels_last_choice(None, torch.device("mps"))[0] is False
    assert channels_last_choice(False, torch.device("cpu")) == (False, "train.channels_last=false")


class _Recorder(nn.Module):
    """A 1x1 conv that records the dtype its forward pass computed in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.dtypes: list[torch.dtype] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        heatmaps = self.conv(images)
        self.dtypes.append(heatmaps.dtype)
        return heatmaps


@pytest.mark.parametrize(("autocast", "expected"), [(None, torch.float32),
                                                    (torch.bfloat16, torch.bfloat16),
                                                    (torch.float16, torch.float16)])
def test_training_step_under_autocast(tmp_path, autocast, expected):
    """bf16 and fp16 autocast run the forward pass in their dtype (fp16 with loss scaling);
    weights and their update stay float32."""
    torch.manual_seed(0)
    model = _Recorder()
    batch = {"image": torch.randn(4, 3, 8, 8), "target": torch.rand(4, 2, 8, 8),
             "target_weight": torch.ones(4, 2)}
    optimizer = build_optimizer(model.parameters(), "adam", lr=1e-2)
    before = model.conv.weight.detach().clone()
    writer = ScalarWriter(tmp_path)
    scaler = grad_scaler_for(autocast, torch.device("cpu"))
    parts = TrainParts(model, build_loss("mse"), optimizer, grad_scaler=scaler)
    mean_loss, _ = train_one_epoch(parts, [batch, batch], torch.device("cpu"), TrainState(),
                                   TrainSettings(autocast=autocast), StepLogger(writer))
    writer.close()
    assert model.dtypes == [expected, expected]
    assert model.conv.weight.dtype == torch.float32
    assert not torch.equal(model.conv.weight, before) and mean_loss > 0


def _mmcv_warmup_lr(base_lr: float, step: int, warmup_iters: int, ratio: float) -> float:
    """mmcv LrUpdaterHook.get_warmup_lr('linear'), written out by hand."""
    if step >= warmup_iters:
        return base_lr
    return base_lr * (1 - (1 - step / warmup_iters) * (1 - ratio))


def test_linear_warmup_factor_matches_mmcv():
    assert linear_warmup_factor(0, 500, 0.001) == pytest.approx(0.001)
    assert linear_warmup_factor(250, 500, 0.001) == pytest.approx(0.5005)
    assert linear_warmup_factor(500, 500, 0.001) == 1.0
    assert linear_warmup_factor(0, 0, 0.001) == 1.0  # no warmup


def _record_step_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """The LR of param group 0 at every optimizer step from now on."""
    used: list[float] = []
    optimizer.register_step_pre_hook(
        lambda optimizer, args, kwargs: used.append(optimizer.param_groups[0]["lr"]))
    return used


_BATCH = {"image": torch.randn(1, 3, 2, 2), "target": torch.rand(1, 2, 2, 2),
          "target_weight": torch.ones(1, 2)}


def test_warmup_scales_the_first_optimizer_steps(tmp_path):
    """Lite-HRNet's schedule: Adam 2e-3, 500 warmup steps from 0.001x (recipes.md §5)."""
    model = nn.Conv2d(3, 2, 1)
    optimizer = build_optimizer(model.parameters(), "adam", lr=2e-3)
    scheduler = multistep_lr(optimizer, [170, 200], 0.1, warmup_iters=500, warmup_ratio=0.001)
    used = _record_step_lrs(optimizer)
    writer = ScalarWriter(tmp_path)
    train_one_epoch(TrainParts(model, build_loss("mse"), optimizer, scheduler), [_BATCH] * 501,
                    torch.device("cpu"), TrainState(), TrainSettings(), StepLogger(writer))
    writer.close()
    # lr = base * (1 - (1 - step / 500) * (1 - 0.001)), worked by hand:
    # step 0: 2e-3 * 0.001; step 250: 2e-3 * (1 - 0.5 * 0.999) = 2e-3 * 0.5005; step 500: 2e-3.
    assert used[0] == pytest.approx(2e-6, rel=1e-12)
    assert used[250] == pytest.approx(1.001e-3, rel=1e-12)
    assert used[500] == pytest.approx(2e-3, rel=1e-12)
    assert [used[step] for step in (0, 125, 250, 375, 499, 500)] == pytest.approx(
        [_mmcv_warmup_lr(2e-3, step, 500, 0.001) for step in (0, 125, 250, 375, 499, 500)])
    assert optimizer.param_groups[0]["lr"] == 2e-3  # the groups keep the scheduled LR


def test_warmup_across_an_epoch_and_a_milestone(tmp_path):
    """mmcv multiplies the warmup factor onto the regular, already decayed LR; the milestone
    is not disturbed by an epoch ending inside the warmup."""
    model = nn.Conv2d(3, 2, 1)
    optimizer = build_optimizer(model.parameters(), "adam", lr=2e-3)
    scheduler = multistep_lr(optimizer, [1], 0.1, warmup_iters=8, warmup_ratio=0.001)
    used = _record_step_lrs(optimizer)
    writer = ScalarWriter(tmp_path)
    state = TrainState()
    for _ in range(2):  # 6 steps per epoch: epoch 0 ends inside the warmup
        train_one_epoch(TrainParts(model, build_loss("mse"), optimizer, scheduler), [_BATCH] * 6,
                        torch.device("cpu"), state, TrainSettings(), StepLogger(writer))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(scheduler.get_last_lr()[0])
        scheduler.step()
    writer.close()
    regular = [2e-3] * 6 + [2e-4] * 6
    assert used == pytest.approx([_mmcv_warmup_lr(lr, step, 8, 0.001)
                                  for step, lr in enumerate(regular)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)  # one milestone: one drop


def test_fit_applies_the_schedulers_warmup(tmp_path):
    model = nn.Conv2d(3, 2, 1)
    optimizer = build_optimizer(model.parameters(), "adam", lr=1e-2)
    scheduler = multistep_lr(optimizer, [100], 0.1, warmup_iters=4, warmup_ratio=0.5)
    used = _record_step_lrs(optimizer)
    loader = torch.utils.data.DataLoader([0] * 3, batch_size=1, collate_fn=lambda _: _BATCH)
    fit(TrainParts(model, build_loss("mse"), optimizer, scheduler), loader, tmp_path,
        TrainSettings(epochs=2), evaluate=lambda _: {"AP": 0.0}, config={})
    factors = [1 - (1 - step / 4) * 0.5 for step in range(4)] + [1.0, 1.0]
    assert used == pytest.approx([1e-2 * factor for factor in factors])


def test_warmup_settings_are_checked():
    optimizer = build_optimizer(nn.Linear(1, 1).parameters(), "adam", lr=1e-3)
    with pytest.raises(ValueError, match="train.warmup_iters"):
        multistep_lr(optimizer, [1], 0.1, warmup_iters=-1)
    with pytest.raises(ValueError, match="train.warmup_ratio"):
        multistep_lr(optimizer, [1], 0.1, warmup_iters=10, warmup_ratio=0.0)
