"""Run logging: a plain-text log in the run folder, TensorBoard scalars and images, progress
bars, and the training loop's step meters (throughput, data wait, ETA)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from pose.evaluation import heatmap_maxima
from pose.visualize import denormalize, draw_crop_comparison, heatmap_overlay

LOGGER_NAME = "pose"


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def setup_logging(run_dir: str | Path | None = None, is_main: bool = True) -> logging.Logger:
    """Log INFO to stderr and, when a run folder is given, to ``<run_dir>/log.txt``.

    ``is_main=False`` (the other ranks of a distributed run): warnings and errors to stderr only.
    """
    logger = get_logger()
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    if not is_main:
        run_dir = None
    logger.propagate = False
    formatter = logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not any(getattr(handler, "_pose_console", False) for handler in logger.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(formatter)
        console._pose_console = True  # type: ignore[attr-defined]
        logger.addHandler(console)
    if run_dir is not None:
        log_file = Path(run_dir) / "log.txt"
        if not any(getattr(handler, "baseFilename", None) == str(log_file.resolve())
                   for handler in logger.handlers):
            file_handler = logging.FileHandler(log_file)
            file_handler.setFormatter(formatter)
            logger.addHandler(file_handler)
    return logger


class ScalarWriter:
    """TensorBoard scalars and images under ``<run_dir>/tensorboard``.

    ``run_dir=None`` writes nothing (the ranks other than 0 of a distributed run).
    ``purge_step``: a resumed run drops the events logged at this step and later by the run it
    continues (they were logged after its checkpoint, and are logged again).
    """

    def __init__(self, run_dir: str | Path | None, purge_step: int | None = None) -> None:
        self.log_dir = None if run_dir is None else Path(run_dir) / "tensorboard"
        self._writer = (None if self.log_dir is None
                        else SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self._writer is None:
            return
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)

    def images(self, tag: str, images: np.ndarray, step: int) -> None:
        """``images``: [N, H, W, 3] uint8 RGB, shown as one grid."""
        if self._writer is not None:
            self._writer.add_images(tag, images, step, dataformats="NHWC")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()


def progress(iterable: Iterable | None, description: str, total: int | None = None,
             disable: bool = False, unit: str = "it") -> tqdm:
    """A progress bar that redraws in a terminal and prints sparse lines in a log (with its
    ETA and rate in ``unit``/s); ``disable``: iterate without one (ranks other than 0)."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, desc=description, total=total, dynamic_ncols=True, leave=interactive,
                mininterval=0.5 if interactive else 30.0, disable=disable, unit=unit)


def format_duration(seconds: float) -> str:
    """``seconds`` as H:MM:SS (whole seconds, rounded down)."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class SmoothedValue:
    """A series' sum and count over the current window and over everything since it began.

    As torchvision's ``SmoothedValue``, but the caller ends a window (:meth:`new_window`, at a
    log step) instead of a fixed count of values.
    """

    def __init__(self) -> None:
        self.window_sum, self.window_count = 0.0, 0
        self.sum, self.count = 0.0, 0

    def update(self, value: float, count: int = 1) -> None:
        """Add ``value``, the sum of ``count`` observations."""
        self.window_sum += value
        self.window_count += count
        self.sum += value
        self.count += count

    def new_window(self) -> None:
        """End the window: the next observations start a new one."""
        self.window_sum, self.window_count = 0.0, 0

    @property
    def window_average(self) -> float | None:
        """The mean of the window's observations (None: none yet)."""
        return self.window_sum / self.window_count if self.window_count else None

    @property
    def global_average(self) -> float:
        """The mean of every observation (0 if none)."""
        return self.sum / max(self.count, 1)


class StepLogger:
    """The training loop's meters, as torchvision's ``MetricLogger``: the wait for each batch,
    the samples trained on and the optimizer steps of the epoch in progress.

    Each :meth:`log` writes the step's scalars plus the window's ``train/samples_per_s`` (over
    all ``world_size`` ranks) and ``train/data_wait_fraction`` (the share of the window's wall
    time spent waiting for batches) to ``writer``, shows images/s, the loss and the run's ETA
    (from the epoch's mean seconds per step) after the progress bar, and starts a new window.
    The bar itself shows the epoch's ETA. ``total_steps``: the run's optimizer steps (None or
    0: no run ETA). ``show_progress=False``: no bar (ranks other than 0).
    """

    def __init__(self, writer: ScalarWriter, *, world_size: int = 1,
                 total_steps: int | None = None, show_progress: bool = True) -> None:
        self.writer = writer
        self.world_size = world_size
        self.total_steps = total_steps
        self.show_progress = show_progress
        self.bar: tqdm | None = None  # the epoch's progress bar
        self._start_epoch()

    def _start_epoch(self) -> None:
        self.samples = SmoothedValue()  # samples this rank trained on
        self.data_wait = SmoothedValue()  # seconds spent waiting for a batch
        self.steps = 0  # optimizer steps of the epoch
        self.epoch_started = self.window_started = time.perf_counter()

    def batches(self, loader: Iterable[dict], description: str) -> Iterator[dict]:
        """The batches of ``loader`` under a progress bar, each wait for one timed; starts the
        epoch's meters. The bar closes when the iteration ends or is abandoned."""
        self._start_epoch()
        self.bar = bar = progress(loader, description, disable=not self.show_progress)
        try:
            fetch_started = time.perf_counter()
            for batch in bar:
                self.data_wait.update(time.perf_counter() - fetch_started)
                yield batch
                fetch_started = time.perf_counter()
        finally:
            bar.close()

    def count_samples(self, count: int) -> None:
        """``count`` samples of this rank went through the forward and backward pass."""
        self.samples.update(count)

    def step_done(self) -> None:
        """An optimizer step ended."""
        self.steps += 1

    def seconds_per_step(self) -> float:
        """The epoch's mean wall time per optimizer step so far."""
        return (time.perf_counter() - self.epoch_started) / max(self.steps, 1)

    def samples_per_second(self) -> float:
        """The epoch's throughput so far, over all ranks."""
        return self.samples.sum * self.world_size / max(
            time.perf_counter() - self.epoch_started, 1e-9)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Write ``scalars`` (tag: value) with the window's throughput and data wait at
        optimizer step ``step`` (1-based), update the bar's postfix, start a new window."""
        elapsed = max(time.perf_counter() - self.window_started, 1e-9)
        samples_per_second = self.samples.window_sum * self.world_size / elapsed
        self.writer.scalars({**scalars, "train/samples_per_s": samples_per_second,
                             "train/data_wait_fraction": self.data_wait.window_sum / elapsed},
                            step)
        postfix = {"img/s": f"{samples_per_second:.1f}"}
        if "train/loss" in scalars:
            postfix["loss"] = f"{scalars['train/loss']:.3e}"
        if self.total_steps:
            postfix["run ETA"] = format_duration(
                (self.total_steps - step) * self.seconds_per_step())
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
        self.samples.new_window()
        self.data_wait.new_window()
        self.window_started = time.perf_counter()


@torch.no_grad()
def prediction_pictures(model: nn.Module, images: torch.Tensor, joints: torch.Tensor,
                        skeleton: tuple[tuple[int, int], ...], device: torch.device,
                        mean: tuple[float, float, float],
                        std: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """Pictures of the model's predictions on fixed val crops, for TensorBoard.

    ``images``: [N, 3, H, W] normalised crops (``(rgb / 255 - mean) / std``); ``joints``:
    [N, K, 3] ground truth (x, y, visibility) in crop pixels. Returns ``{"val/skeletons":
    predicted (red) against ground-truth (green) skeletons, "val/heatmaps": the predicted
    heatmaps' maximum over joints on the crop}``, each [N, H, W, 3] uint8 RGB. The predicted
    joints are the heatmap argmax (no flip test, no sub-cell refinement).
    """
    model.eval()
    heatmaps = model(images.to(device)).float().cpu()
    coords, maxvals = heatmap_maxima(heatmaps)
    pixels_per_cell = images.shape[-1] / heatmaps.shape[-1]
    predicted = torch.cat([coords * pixels_per_cell, maxvals.unsqueeze(2)], dim=2).numpy()
    rgb = denormalize(images.float().numpy(), mean, std)
    skeletons = [draw_crop_comparison(crop, prediction, truth, skeleton)
                 for crop, prediction, truth in zip(rgb, predicted, joints.numpy(), strict=True)]
    overlays = [heatmap_overlay(crop, maps) for crop, maps in zip(rgb, heatmaps.numpy(),
                                                                   strict=True)]
    return {"val/skeletons": np.stack(skeletons), "val/heatmaps": np.stack(overlays)}
