"""Checkpoints: atomic writes, readable errors, strict weight loading.

A checkpoint is a dict with ``format`` ("pose-checkpoint"), ``model`` (state dict), ``config``
(the resolved config as plain containers, so ``pose.eval`` needs nothing else), ``epoch``
(epochs completed), ``step`` (optimizer steps), ``metrics``, and for resuming ``optimizer``,
``scheduler``, ``grad_scaler``, ``ema``, ``rng`` and ``epoch_samples`` (what
:func:`pose.engine.trainer.training_checkpoint` writes).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_FORMAT = "pose-checkpoint"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


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


def read_checkpoint_file(path: str | Path) -> Any:
    """``torch.load`` on the CPU, whatever the file holds, or :class:`CheckpointError` saying why.

    Nothing is downloaded: ``path`` must be a local file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        # weights_only=False: official files (mmcv's 'meta', HRNet's training state) hold more
        # than tensors; checkpoints are trusted local files, as in the official code.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many kinds for a corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error


def is_pose_checkpoint(checkpoint: Any) -> bool:
    """Whether ``checkpoint`` (what ``torch.load`` returned) is one that pose.train wrote."""
    return isinstance(checkpoint, dict) and checkpoint.get("format") == CHECKPOINT_FORMAT


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read one of our checkpoints (on the CPU) or raise :class:`CheckpointError` saying why."""
    path = Path(path)
    checkpoint = read_checkpoint_file(path)
    if not is_pose_checkpoint(checkpoint):
        raise CheckpointError(
            f"{path} is not a pose checkpoint (expected a dict with format="
            f"{CHECKPOINT_FORMAT!r}, 'model' and 'config', as pose.train writes)")
    return checkpoint


def format_keys(keys: list[str], limit: int = 5) -> str:
    """The first ``limit`` of ``keys``, comma-separated, with the count when some are left out."""
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def load_model_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str,
                       model_name: str | None = None) -> None:
    """``load_state_dict(strict=True)`` with one readable error listing what does not fit.

    ``source`` (a path) and ``model_name`` only make the error message say what was compared.
    """
    own = model.state_dict()
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    mismatched = [f"{key}: {tuple(state_dict[key].shape)} vs {tuple(own[key].shape)}"
                  for key in own if key in state_dict and state_dict[key].shape != own[key].shape]
    if missing or unexpected or mismatched:
        parts = [(f"the weights in {source} do not fit the model {model_name or type(model).__name__} "
                  f"({len(own)} entries; the file has {len(state_dict)})")]
        if missing:
            parts.append(f"missing keys: {format_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {format_keys(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches (file vs model): {format_keys(mismatched)}")
        parts.append("was the checkpoint trained with another model (model=... override)?")
        raise CheckpointError("\n  ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def evaluation_weights(checkpoint: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """The weights a checkpoint's metrics were measured with, and which they are: the EMA of the
    weights when training kept one ("ema"), else the trained weights ("model")."""
    if checkpoint.get("ema") is not None:
        return checkpoint["ema"]["module"], "ema"
    return checkpoint["model"], "model"


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
