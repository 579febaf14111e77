"""The training loop's switches, worked against hand-computed updates: schedules, AdamW, gradient
clipping and accumulation, the EMA, the NaN guard, the resumable sampler, channels_last and
torch.compile, the TensorBoard logs and pictures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pose.engine.checkpoint import load_checkpoint, resume_checkpoint_path
from pose.engine.distributed import DistributedContext, ResumableSampler
from pose.engine.ema import ModelEma
from pose.engine.logger import ScalarWriter, StepLogger, prediction_pictures
from pose.engine.optim import build_optimizer, build_scheduler
from pose.engine.precision import prepare_model
from pose.engine.trainer import (
    NonFiniteLossError,
    TrainParts,
    TrainSettings,
    TrainState,
    fit,
    train_one_epoch,
)
from pose.losses import build_loss
from pose.models.weights import CheckpointError, evaluation_weights

CPU = torch.device("cpu")


def _batch(seed: int, size: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(size, 3, 4, 4, generator=generator),
            "target": torch.rand(size, 2, 4, 4, generator=generator),
            "target_weight": torch.ones(size, 2)}


def _conv(seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(3, 2, 1)


def _run(model, batches, optimizer, tmp_path, **settings) -> TrainState:
    state = TrainState()
    train_one_epoch(TrainParts(model, build_loss("mse"), optimizer), batches, CPU, state,
                    TrainSettings(**settings), StepLogger(ScalarWriter(None)))
    return state


def _gradients(model: nn.Module, batches: list[dict]) -> list[torch.Tensor]:
    """d(mean of the batches' losses)/d(weights), by autograd directly."""
    model.zero_grad()
    loss_fn = build_loss("mse")
    loss = sum(loss_fn(model(b["image"]), b["target"], b["target_weight"]) for b in batches)
    (loss / len(batches)).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads


def test_cosine_schedule_per_epoch():
    optimizer = build_optimizer(nn.Linear(1, 1).parameters(), "adam", lr=1e-3)
    scheduler = build_scheduler(optimizer, "cosine", epochs=10, milestones=[], min_lr=1e-5)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(10)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert scheduler.warmup_factor(0) == 1.0  # no warmup asked
    with pytest.raises(ValueError, match="train.scheduler='poly'.*multistep, cosine"):
        build_scheduler(optimizer, "poly", epochs=10, milestones=[])


def test_adamw_decays_the_weights_apart_from_the_gradient():
    """One step on a zero gradient: AdamW shrinks w by lr * wd (0.95); Adam's L2 term becomes a
    gradient of wd * w, which Adam's normalisation turns into a step of lr (0.9)."""
    for name, expected in (("adamw", 1 - 0.1 * 0.5), ("adam", 1 - 0.1)):
        weight = nn.Parameter(torch.ones(1))
        optimizer = build_optimizer([weight], name, lr=0.1, weight_decay=0.5)
        weight.grad = torch.zeros(1)
        optimizer.step()
        assert weight.item() == pytest.approx(expected, abs=1e-6), name


def test_gradient_clipping_scales_the_update(tmp_path):
    batch = _batch(0)
    model = _conv()
    grads = _gradients(model, [batch])
    norm = torch.cat([g.flatten() for g in grads]).norm().item()
    max_norm = norm / 4
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    _run(model, [batch], optimizer, tmp_path, clip_grad_norm=max_norm)
    for weight, start, grad in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(weight.detach(), start - grad * max_norm / norm)


def test_gradient_accumulation_adds_up_to_one_step_per_group(tmp_path):
    """5 batches, groups of 2: steps on (b0, b1), (b2, b3) and the short last group (b4),
    each the mean gradient of its group."""
    batches = [_batch(seed) for seed in range(5)]
    model, reference = _conv(), _conv()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    state = _run(model, batches, optimizer, tmp_path, accumulate_steps=2)
    assert state.step == 3 and state.batches_done == 5
    for group in (batches[0:2], batches[2:4], batches[4:5]):
        grads = _gradients(reference, group)
        with torch.no_grad():
            for weight, grad in zip(reference.parameters(), grads, strict=True):
                weight -= 0.5 * grad
    for ours, expected in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, expected)


def test_ema_follows_the_weights_with_the_ramped_decay():
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    ema = ModelEma(model, decay=0.999)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)  # decay min(0.999, 1/10): 0 * 0.1 + 1 * 0.9
    assert ema.module[0].weight.item() == pytest.approx(0.9)
    ema.update(model)  # decay 2/11
    assert ema.module[0].weight.item() == pytest.approx(0.9 * 2 / 11 + 9 / 11)
    assert ema.module[1].num_batches_tracked.item() == 7  # integers are copied
    assert not ema.module[0].weight.requires_grad
    restored = ModelEma(model, decay=0.999)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 2
    assert torch.equal(restored.module[0].weight, ema.module[0].weight)
    with pytest.raises(ValueError, match="train.ema_decay"):
        ModelEma(model, decay=1.0)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    """Steps 1 and 2 are checkpointed; the third batch's target holds a NaN."""
    poisoned = _batch(2)
    poisoned["target"][0, 0, 0, 0] = math.nan
    batches = [_batch(0), _batch(1), poisoned, _batch(3)]
    model = _conv()
    optimizer = build_optimizer(model.parameters(), "adam", lr=1e-2)
    scheduler = build_scheduler(optimizer, "multistep", epochs=1, milestones=[])
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3 \(epoch 0\)"):
        fit(TrainParts(model, build_loss("mse"), optimizer, scheduler), batches, tmp_path,
            TrainSettings(epochs=1, checkpoint_interval=1, log_interval=50),
            evaluate=lambda _: {"AP": 0.0}, config={})
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["step"] == 2
    assert all(torch.isfinite(value).all() for value in last["model"].values())


def test_fit_keeps_the_ema_and_evaluates_it(tmp_path):
    model = _conv()
    optimizer = build_optimizer(model.parameters(), "adam", lr=1e-2)
    scheduler = build_scheduler(optimizer, "multistep", epochs=1, milestones=[])
    ema = ModelEma(model, decay=0.9)
    evaluated = []
    fit(TrainParts(model, build_loss("mse"), optimizer, scheduler, ema=ema),
        [_batch(0), _batch(1)], tmp_path, TrainSettings(epochs=1, best_metric="Mean"),
        evaluate=lambda module: evaluated.append(module) or {"Mean": 0.5}, config={})
    assert evaluated == [ema.module]
    best = load_checkpoint(tmp_path / "best.pt")
    weights, which = evaluation_weights(best)
    assert which == "ema" and best["ema"]["updates"] == 2 and best["best_metric"] == 0.5
    assert torch.equal(weights["weight"], ema.module.weight)
    assert not torch.equal(weights["weight"], best["model"]["weight"])


def test_a_missing_best_metric_is_named(tmp_path):
    model = _conv()
    optimizer = build_optimizer(model.parameters(), "adam", lr=1e-2)
    scheduler = build_scheduler(optimizer, "multistep", epochs=1, milestones=[])
    with pytest.raises(KeyError, match="no 'Mean' to choose best.pt by .*AP"):
        fit(TrainParts(model, build_loss("mse"), optimizer, scheduler), [_batch(0)], tmp_path,
            TrainSettings(epochs=1, best_metric="Mean"), evaluate=lambda _: {"AP": 0.1},
            config={})


def test_bad_settings_and_a_missing_schedule_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"must be >= 1 .* got 1, 20, 0 and 0"):
        TrainSettings(eval_interval=0)
    with pytest.raises(ValueError, match=r"train.checkpoint_interval >= 0, got 0, 20, 1 and 0"):
        TrainSettings(accumulate_steps=0)
    with pytest.raises(ValueError, match=r"got 1, 20, 1 and -1"):
        TrainSettings(checkpoint_interval=-1)
    model = _conv()
    optimizer = build_optimizer(model.parameters(), "adam", lr=1e-2)
    with pytest.raises(ValueError, match="fit needs parts.scheduler"):
        fit(TrainParts(model, build_loss("mse"), optimizer), [_batch(0)], tmp_path,
            TrainSettings(), evaluate=lambda _: {"AP": 0.1}, config={})
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_resumable_sampler_skips_the_samples_already_trained_on():
    dataset = list(range(23))
    full = ResumableSampler(dataset, seed=5)
    full.set_epoch(3)
    order = list(full)
    assert sorted(order) == dataset and order != dataset
    full.set_epoch(3, samples_done=8)
    assert list(full) == order[8:] and len(full) == 15
    full.set_epoch(4)
    assert list(full) != order  # a new permutation each epoch
    # Two ranks: together they skip the first 8 samples of the global order, and take the
    # same samples as a single process does for the rest of the epoch (23 padded to 24).
    shares = []
    for rank in range(2):
        sampler = ResumableSampler(dataset, num_replicas=2, rank=rank, seed=5)
        sampler.set_epoch(3, samples_done=8)
        shares.append(list(sampler))
    padded = order + order[:1]
    assert shares[0] == padded[8::2] and shares[1] == padded[9::2]


def test_resume_argument(tmp_path):
    assert resume_checkpoint_path(None, tmp_path) is None
    assert resume_checkpoint_path("False", tmp_path) is None
    assert resume_checkpoint_path("auto", tmp_path) is None  # nothing to continue: start
    with pytest.raises(CheckpointError, match="train.resume=true: there is no last.pt"):
        resume_checkpoint_path("True", tmp_path)
    with pytest.raises(CheckpointError, match="train.resume=.*nope.pt: checkpoint not found"):
        resume_checkpoint_path(str(tmp_path / "nope.pt"), tmp_path)
    (tmp_path / "last.pt").write_bytes(b"")
    assert resume_checkpoint_path("true", tmp_path) == tmp_path / "last.pt"
    assert resume_checkpoint_path("auto", tmp_path) == tmp_path / "last.pt"


def test_channels_last_switch_trains_in_nhwc(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    train_model = prepare_model(model, DistributedContext(), channels_last=True)
    assert train_model is model
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), "sgd", lr=0.1)
    before = model[2].weight.detach().clone()
    _run(train_model, [_batch(0), _batch(1)], optimizer, tmp_path)
    assert not torch.equal(before, model[2].weight)
    # null: on the CPU too (oneDNN's NHWC convolutions train as fast or faster)
    assert prepare_model(nn.Conv2d(3, 2, 3), DistributedContext(), channels_last=None
                         ).weight.is_contiguous(memory_format=torch.channels_last)
    assert not prepare_model(nn.Conv2d(3, 2, 3), DistributedContext(), channels_last=False
                             ).weight.is_contiguous(memory_format=torch.channels_last)


def test_torch_compile_switch_trains_as_eager(tmp_path):
    """The tiniest case: torch.compile on the CPU compiles C++ and takes a while."""
    batches = [_batch(0), _batch(1)]
    eager, compiled = _conv(), _conv()
    train_model = prepare_model(compiled, DistributedContext(), compile_model=True)
    assert train_model is not compiled  # the compiled wrapper trains; the module is saved
    for model, trained in ((eager, eager), (compiled, train_model)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        _run(trained, batches, optimizer, tmp_path)
    for ours, expected in zip(compiled.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(ours, expected)
    assert set(compiled.state_dict()) == {"weight", "bias"}


def test_fit_logs_scalars_and_pictures(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = _conv()
    optimizer = build_optimizer(model.parameters(), "adam", lr=1e-2)
    scheduler = build_scheduler(optimizer, "multistep", epochs=1, milestones=[])
    pictures = {"val/skeletons": np.zeros((2, 8, 8, 3), np.uint8)}
    fit(TrainParts(model, build_loss("mse"), optimizer, scheduler),
        [_batch(seed) for seed in range(4)], tmp_path, TrainSettings(epochs=1, log_interval=2),
        evaluate=lambda _: {"AP": 0.25}, config={}, log_images=lambda _: pictures)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/samples_per_s",
            "train/data_wait_fraction", "val/AP"} <= scalars
    assert [event.step for event in events.Scalars("train/loss")] == [2, 4]
    assert all(0.0 <= event.value <= 1.0 for event in events.Scalars("train/data_wait_fraction"))
    assert "val/skeletons" in events.Tags()["images"]


def test_prediction_pictures_draw_the_ground_truth_where_it_is():
    """A model whose heatmaps peak at cell (2, 1) of 4x4; the crops are 16x16 px (4 px per
    cell): the predicted joints sit at (8, 4) px, the ground truth is drawn where it is."""
    class Peak(nn.Module):
        def forward(self, images):
            heatmaps = torch.zeros(images.shape[0], 2, 4, 4)
            heatmaps[:, :, 1, 2] = 1.0
            return heatmaps

    images = torch.zeros(1, 3, 16, 16)  # mean colour after denormalisation
    joints = torch.tensor([[[3.0, 12.0, 1.0], [12.0, 12.0, 1.0]]])
    pictures = prediction_pictures(Peak(), images, joints, ((0, 1),), CPU,
                                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    skeletons, heatmaps = pictures["val/skeletons"], pictures["val/heatmaps"]
    assert skeletons.shape == heatmaps.shape == (1, 16, 16, 3) and skeletons.dtype == np.uint8
    green = (skeletons[0, :, :, 1] > 150) & (skeletons[0, :, :, 0] < 50)
    assert green[12, 6:10].all()  # the ground-truth limb from (3, 12) to (12, 12)
    assert not green[:8].any()
    # The heatmap overlay is red (JET's high end) at the peak's cell, blue far from it.
    assert heatmaps[0, 5, 9, 0] > 150 > heatmaps[0, 14, 1, 0]
    assert heatmaps[0, 14, 1, 2] > heatmaps[0, 5, 9, 2]
