"""Run logging: TensorBoard scalars and a plain-text log in the run folder."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

LOGGER_NAME = "pose"


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def setup_logging(run_dir: str | Path | None = None) -> logging.Logger:
    """Log INFO to stderr and, when a run folder is given, to ``<run_dir>/log.txt``."""
    logger = get_logger()
    logger.setLevel(logging.INFO)
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
    """TensorBoard scalars under ``<run_dir>/tensorboard``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.log_dir = Path(run_dir) / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()
