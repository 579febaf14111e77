"""The training loop's step meters against a scripted clock: window and global averages,
images/s over all ranks, the data-wait share, the run's ETA, the progress-bar postfix."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import pose.engine.logger as logger_module
from pose.engine.logger import SmoothedValue, StepLogger, format_duration


class Clock:
    """A perf_counter that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowLoader:
    """Batches that each take ``waits[i]`` seconds of the clock to arrive."""

    def __init__(self, clock: Clock, waits: list[float]) -> None:
        self.clock, self.waits = clock, waits

    def __len__(self) -> int:
        return len(self.waits)

    def __iter__(self):
        for index, wait in enumerate(self.waits):
            self.clock.now += wait
            yield {"index": index}


class Captured:
    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.logged.append((step, values))


def test_smoothed_value_window_and_global_averages():
    value = SmoothedValue()
    assert value.window_average is None and value.global_average == 0.0
    value.update(3.0, count=2)
    value.update(1.0)
    assert value.window_average == value.global_average == pytest.approx(4 / 3)
    value.new_window()
    assert value.window_average is None
    value.update(2.0)
    assert value.window_average == 2.0 and value.global_average == pytest.approx(6 / 4)
    assert (value.window_sum, value.sum, value.count) == (2.0, 6.0, 4)


def test_step_logger_windows_throughput_data_wait_and_eta(monkeypatch):
    """Two ranks, 4 samples per batch, one optimizer step per batch taking 3 s after waits of
    1, 1, 1 and 5 s; logs after steps 2 and 4 of a 10-step run, worked by hand:
    step 2 at t=8: 2 * 4 * 2 samples / 8 s = 2.0/s, waits 2 s of 8, ETA 8 steps * 4 s = 32 s;
    step 4 at t=20: 16 / 12 s, waits 6 s of 12, ETA 6 steps * 5 s = 30 s; epoch 32 / 20 s."""
    clock = Clock()
    monkeypatch.setattr(logger_module, "time", SimpleNamespace(perf_counter=clock))
    writer = Captured()
    meter = StepLogger(writer, world_size=2, total_steps=10, show_progress=True)
    for batch in meter.batches(SlowLoader(clock, [1.0, 1.0, 1.0, 5.0]), "epoch 0"):
        clock.now += 3.0
        meter.count_samples(4)
        meter.step_done()
        step = batch["index"] + 1
        if step % 2 == 0:
            meter.log(step, {"train/lr": 1e-3, "train/loss": 0.5})
            postfix = meter.bar.postfix
    (first_step, first), (second_step, second) = writer.logged
    assert first_step == 2 and first["train/samples_per_s"] == pytest.approx(2.0)
    assert first["train/data_wait_fraction"] == pytest.approx(0.25)
    assert first["train/lr"] == 1e-3 and first["train/loss"] == 0.5
    assert second_step == 4 and second["train/samples_per_s"] == pytest.approx(16 / 12)
    assert second["train/data_wait_fraction"] == pytest.approx(0.5)
    assert postfix == "img/s=1.3, loss=5.000e-01, run ETA=0:00:30"
    assert meter.samples_per_second() == pytest.approx(32 / 20)
    assert meter.seconds_per_step() == pytest.approx(5.0)
    # The next epoch starts its meters afresh.
    list(meter.batches(SlowLoader(clock, [2.0]), "epoch 1"))
    assert meter.steps == 0 and meter.data_wait.sum == 2.0 and meter.samples.count == 0


def test_step_logger_without_a_run_length_shows_no_eta(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(logger_module, "time", SimpleNamespace(perf_counter=clock))
    meter = StepLogger(Captured(), show_progress=True)
    for _ in meter.batches(SlowLoader(clock, [1.0]), "epoch 0"):
        clock.now += 1.0
        meter.step_done()
        meter.log(1, {"train/lr": 1e-3})
        assert meter.bar.postfix == "img/s=0.0"


def test_format_duration():
    assert format_duration(0) == "0:00:00"
    assert format_duration(3725.9) == "1:02:05"
