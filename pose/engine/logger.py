"""Run logging: TensorBoard scalars and images, and a plain-text log in the run folder."""

from __future__ import annotations

import logging
import sys
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


def progress(iterable, description: str, total: int | None = None,
             disable: bool = False) -> tqdm:
    """A progress bar that redraws in a terminal and prints sparse lines in a log (with its
    ETA and rate); ``disable``: iterate without one (ranks other than 0)."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, desc=description, total=total, dynamic_ncols=True, leave=interactive,
                mininterval=0.5 if interactive else 30.0, disable=disable)


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
