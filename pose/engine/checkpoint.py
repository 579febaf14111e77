"""Training checkpoints: atomic writes, reading ours back, the resume path, random states.

A checkpoint is a dict with ``format`` ("pose-checkpoint"), ``model`` (state dict), ``config``
(the resolved config as plain containers, so ``pose.eval`` needs nothing else), ``epoch``
(epochs completed), ``step`` (optimizer steps), ``metrics``, and for resuming ``optimizer``,
``scheduler``, ``grad_scaler``, ``ema``, ``rng`` and ``epoch_samples`` (what
:func:`pose.engine.trainer.training_checkpoint` writes). Reading weight files and loading weights
into a model is :mod:`pose.models.weights`'s.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pose.models.weights import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    is_pose_checkpoint,
    read_checkpoint_file,
)


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` to ``path`` atomically: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save({"format": CHECKPOINT_FORMAT, **checkpoint}, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read one of our checkpoints (on the CPU) or raise :class:`CheckpointError` saying why."""
    path = Path(path)
    checkpoint = read_checkpoint_file(path)
    if not is_pose_checkpoint(checkpoint):
        raise CheckpointError(
            f"{path} is not a pose checkpoint (expected a dict with format="
            f"{CHECKPOINT_FORMAT!r}, 'model' and 'config', as pose.train writes)")
    return checkpoint


def resume_checkpoint_path(resume: str | None, run_dir: str | Path) -> Path | None:
    """The checkpoint ``train.resume`` names, or None to start afresh.

    ``resume``: None or "false" (start afresh), "true" (``last.pt`` of ``run_dir``, which must
    exist), "auto" (``last.pt`` of ``run_dir`` when there is one: a requeued cluster job
    continues, a first start starts), or the path of a checkpoint file.
    """
    if resume is None or str(resume).lower() == "false":
        return None
    last = Path(run_dir) / "last.pt"
    if str(resume).lower() == "true":
        if not last.is_file():
            raise CheckpointError(f"train.resume=true: there is no last.pt in the run folder "
                                  f"{run_dir} to continue from (point hydra.run.dir= at the run, "
                                  "or give train.resume=<checkpoint file>)")
        return last
    if str(resume).lower() == "auto":
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"train.resume={resume}: checkpoint not found")
    return path


def rng_states() -> dict[str, Any]:
    """The state of every random generator training may draw from: Python's, numpy's, torch's
    CPU generator and the current CUDA device's."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(),
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back what :func:`rng_states` captured (the CUDA state onto the current device)."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
