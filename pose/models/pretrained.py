"""Weights from other implementations' files: official HRNet and Lite-HRNet, mmpose, and ours.

:func:`load_pretrained` loads a whole pose model, strictly, from any of these files:

- official HRNet model zoo (``pose_hrnet_w32_256x192.pth``): a bare state dict, keys
  ``conv1.weight``, ..., ``final_layer.weight``;
- official HRNet training ``checkpoint.pth``: ``{'state_dict', 'epoch', ...}``, keys
  ``module.`` + the above;
- official Lite-HRNet, mmpose 0.x: ``{'meta', 'state_dict', 'optimizer'}``, keys
  ``backbone.*``, ``keypoint_head.*``;
- mmpose 1.x: ``{'meta', 'state_dict', ...}``, keys ``backbone.*``, ``head.*``;
- ours (pose.train): ``{'format': 'pose-checkpoint', 'model', ...}``, the model's own keys.

Any of these state dicts may come as a ``.safetensors`` file. Nothing here knows a file format
by name. The container is unwrapped (our ``model``, else a
``state_dict`` entry, else the file itself), DataParallel's ``module.`` is stripped, and then the
file's names are mapped onto the model's own: first as stored, else by the name under the role
prefix (``backbone.``, ``keypoint_head.``, ``head.``), so ``head.final_layer.weight`` (mmpose 1.x)
meets ``final_layer.weight`` (our HRNet, official naming) and ``keypoint_head.final_layer.weight``
(our Lite-HRNet, mmpose 0.x naming). The mapping under which every key fits is used; where none
fits, the error lists the missing, unexpected and mismatched keys under the closest one.

:func:`load_backbone_weights` loads the backbone part of a file (an official HRNet ImageNet
classification checkpoint) and leaves the pose head initialised, as ``model.pretrained=`` in
training; it reports what was and was not loaded. The pose head it leaves alone is
``model.head`` (the :class:`~pose.models.base.PoseModel` interface), whatever the model names it.
Nothing is ever downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pose.models.base import PoseModel
from pose.models.weights import (
    CheckpointError,
    format_keys,
    is_pose_checkpoint,
    load_model_weights,
    read_checkpoint_file,
)

__all__ = ["BackboneWeightsReport", "load_backbone_weights", "load_pretrained", "read_state_dict"]

# Prefixes naming the part of a top-down model a key belongs to: mmpose 0.x (and the official
# Lite-HRNet) say backbone./keypoint_head., mmpose 1.x backbone./head.; official HRNet none.
ROLE_PREFIXES = ("backbone.", "keypoint_head.", "head.")
_DATA_PARALLEL_PREFIX = re.compile(r"^module\.")


def _role_free(key: str) -> str:
    """``key`` without its role prefix: ``backbone.stage2.0...`` → ``stage2.0...``."""
    for prefix in ROLE_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _source_name(checkpoint: object, source: str | None) -> str:
    """What errors call the checkpoint: ``source``, else its path."""
    if source:
        return source
    return str(checkpoint) if isinstance(checkpoint, (str, Path)) else "the checkpoint given"


def _is_state_dict(value: Any) -> bool:
    return (isinstance(value, Mapping) and len(value) > 0
            and all(isinstance(key, str) and isinstance(tensor, Tensor)
                    for key, tensor in value.items()))


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        keys = [str(key) for key in value]
        return f"a dict with keys {format_keys(keys)}" if keys else "an empty dict"
    return f"a {type(value).__name__}"


def read_state_dict(checkpoint: str | Path | Mapping[str, Any], source: str | None = None,
                    trust_checkpoint: bool = False) -> tuple[dict[str, Tensor], str]:
    """The state dict inside ``checkpoint`` (``module.`` stripped) and what held it.

    ``checkpoint`` is a path (read by :func:`pose.models.weights.read_checkpoint_file`, with
    ``trust_checkpoint``) or what it returned for one; ``source`` names it in errors (defaults
    to the path). Raises :class:`CheckpointError` when no state dict is found.
    """
    source = _source_name(checkpoint, source)
    if isinstance(checkpoint, (str, Path)):
        checkpoint = read_checkpoint_file(checkpoint, trust_checkpoint=trust_checkpoint)
    if is_pose_checkpoint(checkpoint):
        state_dict, container = checkpoint.get("model"), "pose checkpoint"
    elif isinstance(checkpoint, Mapping) and _is_state_dict(checkpoint.get("state_dict")):
        # mmcv/mmengine ({'meta', 'state_dict', 'optimizer'}) and the official HRNet training
        # checkpoint ({'epoch', 'model': <name>, 'state_dict', 'optimizer', ...}).
        state_dict = checkpoint["state_dict"]
        container = "mmcv checkpoint" if "meta" in checkpoint else "training checkpoint"
    elif isinstance(checkpoint, Mapping) and _is_state_dict(checkpoint.get("model")):
        state_dict, container = checkpoint["model"], "checkpoint with 'model'"
    else:
        state_dict, container = checkpoint, "state dict"
    if not _is_state_dict(state_dict):
        raise CheckpointError(
            f"{source} holds no model weights: expected a state dict (name → tensor), a dict "
            f"with 'state_dict' (official HRNet training, Lite-HRNet, mmpose) or a pose "
            f"checkpoint; it holds {_describe(checkpoint)}")
    unwrapped = {_DATA_PARALLEL_PREFIX.sub("", key): value for key, value in state_dict.items()}
    return unwrapped, container


def _head_keys(model: PoseModel) -> set[str]:
    """The keys of ``model.state_dict()`` that hold ``model.head``'s parameters and buffers.

    Found by identity, not by name, so any head module (wherever it is registered) counts.
    """
    head = model.head
    head_tensors = {id(tensor) for tensor in (*head.parameters(), *head.buffers())}
    return {key for key, tensor in model.state_dict(keep_vars=True).items()
            if id(tensor) in head_tensors}


def _renamings(file_keys: list[str], model_keys: list[str]) -> list[tuple[str, dict[str, str]]]:
    """Candidate maps from the file's key names to the model's, most literal first."""
    renamings = [("as stored", {key: key for key in file_keys})]
    model_names = [_role_free(key) for key in model_keys]
    file_names = [_role_free(key) for key in file_keys]
    # Matching by the role-free name is only unambiguous where it names one key on each side.
    if len(set(model_names)) == len(model_names) and len(set(file_names)) == len(file_names):
        model_by_name = dict(zip(model_names, model_keys, strict=True))
        renamings.append(("mapped by name under the backbone./keypoint_head./head. prefixes",
                          {key: model_by_name.get(name, key)
                           for key, name in zip(file_keys, file_names, strict=True)}))
    return renamings


def load_pretrained(model: nn.Module, checkpoint: str | Path | Mapping[str, Any], *,
                    source: str | None = None, model_name: str | None = None,
                    trust_checkpoint: bool = False) -> None:
    """Load every weight of ``model`` from ``checkpoint``, strictly, whatever its naming.

    ``checkpoint`` is a path or what ``torch.load`` returned for one: an official HRNet model-zoo
    file or training checkpoint, an official Lite-HRNet / mmpose 0.x or mmpose 1.x checkpoint, or
    ours (see the module docstring). ``source`` (default: the path) and ``model_name`` name them
    in errors; ``trust_checkpoint`` as :func:`read_state_dict`. Raises :class:`CheckpointError`
    listing missing, unexpected and mismatched keys when the weights do not fit ``model`` under
    any key mapping.
    """
    state_dict, container = read_state_dict(checkpoint, source, trust_checkpoint)
    source = _source_name(checkpoint, source)
    own = model.state_dict()
    tried: list[tuple[int, str, dict[str, Tensor]]] = []
    for naming, renaming in _renamings(list(state_dict), list(own)):
        renamed = {renaming[key]: value for key, value in state_dict.items()}
        fitting = sum(1 for key, value in renamed.items()
                      if key in own and own[key].shape == value.shape)
        if fitting == len(own) == len(renamed):
            model.load_state_dict(renamed, strict=True)
            return
        tried.append((fitting, naming, renamed))
    # None fits: the closest mapping (the most literal among equals) says what does not fit.
    _, naming, renamed = max(tried, key=lambda attempt: attempt[0])
    load_model_weights(model, renamed, source=f"{source} ({container}, keys {naming})",
                       model_name=model_name)


@dataclass(frozen=True)
class BackboneWeightsReport:
    """What :func:`load_backbone_weights` did; ``str()`` gives counts and a few names."""

    source: str
    loaded: list[str]  # model keys now holding the file's weights
    initialised: list[str]  # model keys left as initialised (the pose head, absent BN counters)
    ignored: list[str]  # file keys not used (the classifier: incre_modules, classifier, ...)

    def __str__(self) -> str:
        parts = [f"backbone weights from {self.source}: loaded {len(self.loaded)} tensors"]
        if self.initialised:
            parts.append(f"kept {len(self.initialised)} as initialised "
                         f"({format_keys(self.initialised, 3)})")
        if self.ignored:
            parts.append(f"ignored {len(self.ignored)} in the file "
                         f"({format_keys(self.ignored, 3)})")
        return "; ".join(parts)


def load_backbone_weights(model: PoseModel, checkpoint: str | Path | Mapping[str, Any], *,
                          source: str | None = None, model_name: str | None = None,
                          trust_checkpoint: bool = False) -> BackboneWeightsReport:
    """Load the backbone of ``model`` from ``checkpoint``; ``model.head`` stays initialised.

    For an official HRNet ImageNet classification checkpoint (``hrnetv2_w32_imagenet_pretrained``
    for ``hrnet_w32``): its classifier (``incre_modules``, ``downsamp_modules``, its own
    ``final_layer``, ``classifier``) and the branches the pose network drops (``stage4``'s last
    multi-scale fuse layers) are ignored, as the official ``init_weights`` ignores them. Unlike
    that ``strict=False`` load, every backbone weight of ``model`` must be in the file with its
    shape (only BN ``num_batches_tracked`` counters may be absent), else :class:`CheckpointError`
    lists what is missing or mismatched. Keys match by name under the role prefixes, so a file
    naming its backbone ``backbone.*`` (mmpose) loads too. ``trust_checkpoint``: as
    :func:`read_state_dict`.
    """
    state_dict, container = read_state_dict(checkpoint, source, trust_checkpoint)
    source = _source_name(checkpoint, source)
    own = model.state_dict()
    head_keys = _head_keys(model)
    backbone = [key for key in own if key not in head_keys]
    file_by_name: dict[str, str] = {}
    for key in state_dict:
        file_by_name.setdefault(_role_free(key), key)

    loaded: dict[str, Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    mismatched: list[str] = []
    for key in backbone:
        file_key = file_by_name.get(_role_free(key))
        if file_key is None:
            # BN step counters are not weights (files from before torch 0.4.1 lack them).
            if not key.endswith("num_batches_tracked"):
                missing.append(key)
            continue
        value = state_dict[file_key]
        if value.shape != own[key].shape:
            mismatched.append(f"{file_key}: {tuple(value.shape)} vs {tuple(own[key].shape)}")
            continue
        loaded[key] = value
        used.add(file_key)
    ignored = [key for key in state_dict if key not in used]
    if missing or mismatched or not loaded:
        parts = [(f"the backbone weights in {source} ({container}) do not fit the backbone of "
                  f"the model {model_name or type(model).__name__} ({len(backbone)} entries; "
                  f"{len(loaded)} fit)")]
        if missing:
            parts.append(f"missing keys: {format_keys(missing)}")
        if mismatched:
            parts.append(f"shape mismatches (file vs model): {format_keys(mismatched)}")
        if ignored:
            parts.append(f"keys of the file not used: {format_keys(ignored)}")
        parts.append("is it the ImageNet checkpoint of this model's width (e.g. "
                     "hrnetv2_w32_imagenet_pretrained.pth for hrnet_w32)?")
        raise CheckpointError("\n  ".join(parts))
    with torch.no_grad():
        model.load_state_dict({**own, **loaded}, strict=True)
    # The head first: what a reader of the log most wants to see kept as initialised.
    head = [key for key in own if key in head_keys]
    return BackboneWeightsReport(
        source=source, loaded=list(loaded),
        initialised=head + [key for key in backbone if key not in loaded], ignored=ignored)
