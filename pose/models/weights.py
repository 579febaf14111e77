"""Weight files: reading one, and loading weights into a model strictly with readable errors.

:func:`read_checkpoint_file` is the one function that reads a weight file (ours, official or
mmpose, ``.pt``/``.pth`` or ``.safetensors``), without running code the file names unless told
to trust it (``trust_checkpoint``); everything else (``pose.models.pretrained``,
``pose.engine.checkpoint``, ``pose.config``) goes through it. Our own checkpoints are dicts
tagged ``format: "pose-checkpoint"`` (written by ``pose.engine.checkpoint.save_checkpoint``)
holding the weights under ``model`` and, when training kept an EMA of them, under
``ema["module"]``.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_FORMAT = "pose-checkpoint"
SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


def _numpy_data_globals() -> list[Any]:
    """What pickles of numpy arrays and scalars name (numpy 2's module names, and numpy 1's,
    which older checkpoints and the official files hold): they rebuild data, run no code."""
    import numpy as np

    multiarray = np._core.multiarray
    # The classes of the boolean, integer, float and complex dtypes (their state is set).
    numeric_dtypes = list({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"})
    return [multiarray._reconstruct, np.ndarray, np.dtype, multiarray.scalar, *numeric_dtypes,
            (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
            (multiarray.scalar, "numpy.core.multiarray.scalar")]


def _global_names(allowed: list[Any]) -> set[str]:
    return {entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"
            for entry in allowed}


def _code_the_file_names(path: Path, error: Exception, allowed: list[Any]) -> list[str]:
    """The callables (``module.name``) the pickle in ``path`` would call beyond plain data,
    listed without unpickling; from torch's error where the file's format hides them."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, OSError):  # the legacy format: torch's error names one
        names = re.findall(r"GLOBAL (\S+)", str(error))
    return [name for name in names if name not in _global_names(allowed)]


def _reason(error: BaseException) -> str:
    """One line saying why torch could not read a file."""
    text = str(error)
    unpickler = re.search(r"Unpickler error: \s*(.+?)(?:\n|$)", text)
    if unpickler:
        return f"not a PyTorch checkpoint, or a damaged one ({unpickler.group(1).strip()})"
    if isinstance(error, EOFError) or not text:
        return "the file ends early (empty or truncated)"
    return text.strip().splitlines()[0].split(". This is")[0]


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(error)}") from error


def read_checkpoint_file(path: str | Path, trust_checkpoint: bool = False) -> Any:
    """What a weight file holds, on the CPU, or :class:`CheckpointError` saying why not.

    ``.safetensors`` files give their state dict (name → tensor). Other files are read with
    torch's restricted unpickler (``weights_only=True``): tensors, plain containers and numbers,
    and numpy arrays (older checkpoints' random states); a file that needs anything else would
    run code while it is read (a crafted file runs anything that way), so it is refused, naming
    what it would call. ``trust_checkpoint=True`` reads it with the full unpickler, which runs
    that code: only for files from a source you trust. Nothing is downloaded.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    allowed = _numpy_data_globals()
    try:
        if trust_checkpoint:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        code = [] if trust_checkpoint else _code_the_file_names(path, error, allowed)
        if code:
            raise CheckpointError(
                f"refusing to read {path}: it is not only weights, reading it would call "
                f"{', '.join(code)}, and a crafted file runs any code that way; only if you "
                "trust where it comes from, read it with trust_checkpoint=true") from error
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(error)}") from error
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(error)}") from error


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
