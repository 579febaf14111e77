"""Weight files: reading one, and loading weights into a model strictly with readable errors.

:func:`read_checkpoint_file` is the one function that reads a weight file (ours, official or
mmpose); everything else (``pose.models.pretrained``, ``pose.engine.checkpoint``, ``pose.eval``)
goes through it. Our own checkpoints are dicts tagged ``format: "pose-checkpoint"`` (written by
``pose.engine.checkpoint.save_checkpoint``) holding the weights under ``model`` and, when
training kept an EMA of them, under ``ema["module"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_FORMAT = "pose-checkpoint"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


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


def evaluation_weights(checkpoint: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """The weights a checkpoint's metrics were measured with, and which they are: the EMA of the
    weights when training kept one ("ema"), else the trained weights ("model")."""
    if checkpoint.get("ema") is not None:
        return checkpoint["ema"]["module"], "ema"
    return checkpoint["model"], "model"


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
        model_name = model_name or type(model).__name__
        parts = [(f"the weights in {source} do not fit the model {model_name} "
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
