"""The metadata an exported pose model carries in its ONNX ``metadata_props``: written by
``pose.engine.export`` and read by :class:`pose.runtime.OnnxPoseModel`, defined here once.

Torch-free (the standard library only): a runtime reads a model's metadata without torch. Every
value is a string; lists and numbers are JSON. The keys are listed in :data:`METADATA_KEYS` and in
the README ("Export and deployment").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

# Marks a pose model and says which layout of the keys below it uses.
FORMAT_KEY = "pose_format"
FORMAT_VERSION = 1
# Sub-cell refinements the runtime decodes with (the in-graph decoding is one of these).
RUNTIME_DECODINGS = ("quarter_offset", "none")
# What the graph's keypoints output holds: the official decoding, or no such output ("off").
GRAPH_DECODINGS = ("quarter_offset", "off")


class MetadataError(ValueError):
    """An ONNX file whose metadata is missing or does not describe a pose model."""


@dataclass(frozen=True)
class PoseMetadata:
    """What a runtime needs to run an exported model: every field is one metadata key.

    The network input is ``(pixel / value_range[1] - mean) / std`` per channel, channels in
    ``channel_order``, of the crop of ``input_size`` (w, h) px that the top-down affine cuts from
    a person box enlarged to the input's aspect ratio and by ``box_padding`` (``pixel_std`` px per
    scale unit). Heatmaps are ``heatmap_size`` (w, h) cells of ``heatmap_stride`` input px.
    """

    model_name: str
    checkpoint_sha256: str
    keypoint_set: str  # "coco", "mpii"
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]  # (left, right), 0-based joint ids
    skeleton: tuple[tuple[int, int], ...]  # limbs, 0-based joint ids
    oks_sigmas: tuple[float, ...] | None  # None where the set defines none (MPII)
    input_size: tuple[int, int]  # (w, h) px
    heatmap_size: tuple[int, int]  # (w, h) cells
    heatmap_stride: int  # input px per heatmap cell
    channel_order: str  # "RGB" or "BGR"
    value_range: tuple[float, float]  # pixel values before normalisation, e.g. (0, 255)
    mean: tuple[float, float, float]  # per channel (in channel_order), on values in [0, 1]
    std: tuple[float, float, float]
    box_padding: float  # a person box is enlarged by this after the aspect fix
    pixel_std: float  # px per box scale unit
    decoding: str  # sub-cell refinement the model was evaluated with: quarter_offset, dark, none
    target_sigma: float  # the training targets' Gaussian sigma, heatmap cells
    flip_test: bool  # whether the model was evaluated with the flip test
    shift_heatmap: bool  # the official one-column shift of the flipped-back heatmap
    graph_decoding: str  # what the keypoints output holds: "quarter_offset", or "off" (no output)
    precision: str  # "float32" or "float16" (inside the graph; its input is always float32)
    batch: str  # "dynamic" or the fixed batch size

    @property
    def num_joints(self) -> int:
        return len(self.keypoint_names)

    def to_properties(self) -> dict[str, str]:
        """The ``metadata_props`` entries: key -> string (JSON for numbers and lists)."""
        properties = {FORMAT_KEY: str(FORMAT_VERSION)}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            properties[field.name] = value if isinstance(value, str) else json.dumps(value)
        return properties

    @classmethod
    def from_properties(cls, properties: Mapping[str, str], source: str) -> PoseMetadata:
        """Parse ``metadata_props`` (``source`` names the file in errors); a file without them,
        or with keys missing or malformed, is a :class:`MetadataError` saying so."""
        if FORMAT_KEY not in properties:
            raise MetadataError(
                f"{source} is not an exported pose model: its ONNX metadata has no "
                f"'{FORMAT_KEY}' entry (export models with python -m pose.export)")
        if properties[FORMAT_KEY] != str(FORMAT_VERSION):
            raise MetadataError(f"{source} has pose metadata version {properties[FORMAT_KEY]}; "
                                f"this runtime reads version {FORMAT_VERSION}")
        values = {}
        for field in fields(cls):
            text = properties.get(field.name)
            if text is None:
                if field.name == "oks_sigmas":
                    values[field.name] = None
                    continue
                raise MetadataError(f"{source}: the pose metadata lacks '{field.name}'")
            values[field.name] = _parse_value(field.name, text, str(field.type), source)
        metadata = cls(**values)
        metadata.check(source)
        return metadata

    def check(self, source: str) -> None:
        """Raise :class:`MetadataError` unless the values are consistent with each other."""
        problems = []
        joints = self.num_joints
        if any(not (0 <= a < joints and 0 <= b < joints) for a, b in self.flip_pairs):
            problems.append(f"flip_pairs {self.flip_pairs} out of range for {joints} joints")
        if self.oks_sigmas is not None and len(self.oks_sigmas) != joints:
            problems.append(f"{len(self.oks_sigmas)} oks_sigmas for {joints} joints")
        if tuple(size * self.heatmap_stride for size in self.heatmap_size) != self.input_size:
            problems.append(f"heatmap_size {self.heatmap_size} x stride {self.heatmap_stride} "
                            f"is not input_size {self.input_size}")
        if self.channel_order not in ("RGB", "BGR"):
            problems.append(f"channel_order {self.channel_order!r} is not RGB or BGR")
        if self.graph_decoding not in GRAPH_DECODINGS:
            problems.append(f"graph_decoding {self.graph_decoding!r} is not one of "
                            f"{GRAPH_DECODINGS}")
        if problems:
            raise MetadataError(f"{source}: inconsistent pose metadata: {'; '.join(problems)}")


METADATA_KEYS = (FORMAT_KEY, *(field.name for field in fields(PoseMetadata)))


def _parse_value(name: str, text: str, annotation: str, source: str) -> Any:
    """One metadata string as the field's type: str as is, the rest JSON (lists -> tuples)."""
    if annotation == "str":
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise MetadataError(f"{source}: pose metadata '{name}' is not JSON: {text!r}") from error
    if annotation.startswith("tuple"):
        if not isinstance(value, list):
            raise MetadataError(f"{source}: pose metadata '{name}' must be a list, got {text!r}")
        return tuple(tuple(item) if isinstance(item, list) else item for item in value)
    return value
