"""Training checkpoints: atomic writes, reading ours back, the resume path, random states.

A checkpoint is a dict with ``format`` ("pose-checkpoint"), ``model`` (state dict), ``config``
(the resolved config as plain containers, so ``pose.eval`` needs nothing else), ``epoch``
(epochs completed), ``step`` (optimizer steps), ``metrics``, and for resuming ``optimizer``,
``scheduler``, ``grad_scaler``, ``ema``, ``rng`` and ``epoch_samples`` (what
:func:`pose.engine.trainer.training_checkpoint` writes). Reading weight files and loading weights
into a model is :mod:`pose.models.weights`'s.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pose.io import atomic_file
from pose.models.weights import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    is_pose_checkpoint,
    read_checkpoint_file,
)


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` to ``path`` atomically: a reader, or a run killed mid-write, never
    sees a half-written file. A write that fails (disk full, permission) raises
    :class:`pose.io.FileWriteError` naming ``path``, whose earlier content stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, **checkpoint}, handle)


def load_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Read one of our checkpoints (on the CPU) or raise :class:`CheckpointError` saying why.

    ``trust_checkpoint``: as :func:`pose.models.weights.read_checkpoint_file` (ours need not:
    they hold tensors and plain types only).
    """
    path = Path(path)
    checkpoint = read_checkpoint_file(path, trust_checkpoint=trust_checkpoint)
    if not is_pose_checkpoint(checkpoint):
        raise CheckpointError(
            f"{path} is not a pose checkpoint (expected a dict with format="
            f"{CHECKPOINT_FORMAT!r}, 'model' and 'config', as pose.train writes)")
    return checkpoint


def load_resume_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict[str, Any]:
    """:func:`load_checkpoint` for ``train.resume``: when ``path`` cannot be used, the error
    also names the checkpoint beside it that can (``best.pt``, with its step), and says that
    nothing was changed. A damaged ``last.pt`` never means starting afresh."""
    path = Path(path)
    try:
        return load_checkpoint(path, trust_checkpoint=trust_checkpoint)
    except CheckpointError as error:
        raise CheckpointError(f"{error}; nothing was changed. "
                              f"{_usable_neighbour(path, trust_checkpoint)}") from None


def _usable_neighbour(path: Path, trust_checkpoint: bool) -> str:
    """What to continue from instead of ``path``: ``best.pt`` beside it, if it can be read."""
    best = path.parent / "best.pt"
    if best.resolve() != path.resolve() and best.is_file():
        try:
            step = int(load_checkpoint(best, trust_checkpoint=trust_checkpoint)["step"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            pass
        else:
            return (f"{best} (step {step}) can be read: to continue from it, copy it over "
                    f"{path.name} and run again with train.resume=true")
    return (f"no other checkpoint in {path.parent} can be read (best.pt is absent or "
            "damaged): start afresh in another folder (hydra.run.dir=...)")


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
    CPU generator and the current CUDA device's; as tensors and plain types, which the
    restricted unpickler reads."""
    states = {"python": random.getstate(), "numpy": numpy_rng_state(),
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def numpy_rng_state() -> dict[str, Any]:
    """``np.random.get_state()`` without numpy objects: the MT19937 key (624 words) as an int64
    tensor, the rest as plain numbers."""
    name, key, position, has_gauss, cached_gaussian = np.random.get_state()
    return {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(position), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian)}


def restore_numpy_rng_state(state: dict[str, Any] | tuple) -> None:
    """Put back :func:`numpy_rng_state`'s dict, or ``np.random.get_state()``'s tuple (the form
    checkpoints written before held)."""
    if isinstance(state, dict):
        state = (state["bit_generator"], state["key"].numpy().astype(np.uint32), state["pos"],
                 state["has_gauss"], state["cached_gaussian"])
    np.random.set_state(state)


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back what :func:`rng_states` captured (the CUDA state onto the current device)."""
    random.setstate(states["python"])
    restore_numpy_rng_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
