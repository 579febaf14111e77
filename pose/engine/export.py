"""ONNX export: the graph (with the official decoding inside, optionally), its metadata, parity.

:func:`export_onnx` writes a model as ONNX with ``torch.onnx``'s TorchScript exporter
(``dynamo=False``): it exports every model here, Lite-HRNet's pooling included (the model does
it with fixed-factor pooling), with a dynamic batch and parity to 1e-7, in a few seconds, for
opsets 12 to 20; the torch.export-based exporter gives the same parity but takes six times as
long and writes opset 18 and up only. :func:`check_parity` compares onnxruntime's outputs with
PyTorch's. The metadata's keys are :class:`pose.runtime.PoseMetadata`'s, defined there so that
the torch-free runtime reads what this module writes.

This sits in the engine, beside checkpoints, because it joins a model (``pose.models``), the
decoding (``pose.evaluation``) and the keypoint sets (``pose.data``), which those packages do not
import from each other.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from pose.data.keypoints import KeypointSpec
from pose.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PIXEL_STD
from pose.evaluation.decode import decode_heatmaps, heatmap_maxima, refine_quarter_offset
from pose.runtime import OnnxPoseModel, PoseMetadata

# The TorchScript exporter writes up to opset 20; the in-graph decoding clips int64 indices,
# which ONNX allows from opset 12.
SUPPORTED_OPSETS = range(12, 21)
DEFAULT_OPSET = 17
HEATMAP_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| of the float32 heatmaps
KEYPOINT_TOLERANCE_PX = 0.01  # in-graph keypoints vs PyTorch's decoding, input px
TRACING_BATCH = 2  # the example batch: a batch of 1 could let the tracer fix that dimension
# The detection-box padding of the evaluation crops (pose.data.coco.CocoKeypoints).
BOX_PADDING = 1.25


class ExportGraph(nn.Module):
    """What the ONNX file computes: normalised images [N, 3, H, W] float32 -> heatmaps
    [N, K, H/s, W/s] float32 and, with ``decode``, keypoints [N, K, 2] (x, y input px) and
    scores [N, K] (heatmap maxima).

    The decoding is the official one (``pose.evaluation.decode``): argmax, a quarter cell towards
    the higher neighbour where ``1 < x < W-1`` and ``1 < y < H-1``, times the stride
    ``s`` = input size / heatmap size. With ``half`` the network runs in float16 between casts.
    """

    def __init__(self, model: nn.Module, decode: bool, half: bool) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).half() if half else model
        self.decode = decode
        self.half = half
        self.heatmap_stride = float(model.heatmap_stride)

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        heatmaps = self.model(images.half() if self.half else images).float()
        if not self.decode:
            return heatmaps
        coords, scores = heatmap_maxima(heatmaps)
        coords = refine_quarter_offset(heatmaps, coords)
        return heatmaps, coords * self.heatmap_stride, scores


def check_opset(opset: int) -> None:
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f"opset={opset} is not supported: pose.export writes ONNX opsets "
                         f"{SUPPORTED_OPSETS.start} to {SUPPORTED_OPSETS.stop - 1}")


def export_onnx(model: nn.Module, path: str | Path, input_size: tuple[int, int], *,
                metadata: PoseMetadata, batch: int | None = None, decode: bool = True,
                half: bool = False, opset: int = DEFAULT_OPSET) -> None:
    """Write ``model`` (eval mode, on the CPU) to ``path`` as ONNX with ``metadata``.

    Input ``images`` [N, 3, h, w] float32 for ``input_size`` (w, h) px, N dynamic (``batch``
    None) or fixed; outputs ``heatmaps`` and, with ``decode``, ``keypoints`` and ``scores``
    (:class:`ExportGraph`). Written to a temporary file first: ``path`` either holds the whole
    model or is left as it was.
    """
    check_opset(opset)
    if model.num_joints != metadata.num_joints:
        raise ValueError(f"the model has {model.num_joints} heatmaps, but the keypoint set "
                         f"{metadata.keypoint_set!r} has {metadata.num_joints} joints")
    graph = ExportGraph(model.eval(), decode=decode, half=half).eval()
    width, height = input_size
    example = torch.zeros(batch or TRACING_BATCH, 3, height, width)
    outputs = ["heatmaps", "keypoints", "scores"] if decode else ["heatmaps"]
    dynamic_axes = None if batch else {name: {0: "batch"} for name in ["images", *outputs]}
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # Chosen deliberately (module docstring) under the pinned torch; and the input-size
            # checks the tracer warns about hold for the fixed input size traced here.
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX",
                                    DeprecationWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(graph, (example,), temporary, dynamo=False, opset_version=opset,
                              input_names=["images"], output_names=outputs,
                              dynamic_axes=dynamic_axes)
        proto = onnx.load(temporary)
        del proto.metadata_props[:]
        for key, value in metadata.to_properties().items():
            proto.metadata_props.add(key=key, value=value)
        proto.doc_string = (f"{metadata.model_name} pose model exported by pose.export; "
                            "metadata_props describe its input and outputs")
        onnx.save(proto, temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's file is private; the export is not
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def export_metadata(model_name: str, checkpoint_sha256: str, keypoints: KeypointSpec,
                    input_size: tuple[int, int], heatmap_stride: int, *, decoding: str,
                    target_sigma: float, flip_test: bool, shift_heatmap: bool, decode: bool,
                    half: bool, batch: int | None) -> PoseMetadata:
    """The metadata of an export: the keypoint set's names, flip pairs, skeleton and OKS sigmas;
    the evaluation crops' geometry and normalisation (``pose.data``: ImageNet mean/std on RGB
    values / 255, detection boxes padded by 1.25); the decoding and flip test the model was
    evaluated with; what the graph computes."""
    width, height = input_size
    return PoseMetadata(
        model_name=model_name, checkpoint_sha256=checkpoint_sha256,
        keypoint_set=keypoints.name, keypoint_names=keypoints.joint_names,
        flip_pairs=keypoints.flip_pairs, skeleton=keypoints.skeleton,
        oks_sigmas=keypoints.oks_sigmas, input_size=(width, height),
        heatmap_size=(width // heatmap_stride, height // heatmap_stride),
        heatmap_stride=heatmap_stride, channel_order="RGB", value_range=(0, 255),
        mean=tuple(IMAGENET_MEAN), std=tuple(IMAGENET_STD), box_padding=BOX_PADDING,
        pixel_std=PIXEL_STD, decoding=decoding, target_sigma=float(target_sigma),
        flip_test=flip_test, shift_heatmap=shift_heatmap,
        graph_decoding="quarter_offset" if decode else "off",
        precision="float16" if half else "float32", batch=str(batch) if batch else "dynamic")


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Parity:
    """onnxruntime (CPU provider) against PyTorch float32 on the same crops."""

    num_crops: int
    heatmap_max_diff: float  # max |onnxruntime - PyTorch| over all heatmap cells
    keypoint_max_diff_px: float  # max distance (input px) over the decisive joints
    keypoint_mean_diff_px: float  # mean distance (input px) over all joints
    decisive_joints: int  # joints whose decoding the heatmap differences cannot change
    total_joints: int
    half: bool  # a float16 graph: the deviations are reported, not held to the tolerances

    @property
    def passed(self) -> bool:
        """Finite outputs and, for a float32 graph, the tolerances (NaN compares False)."""
        if self.half:
            return math.isfinite(self.heatmap_max_diff)
        return (self.heatmap_max_diff <= HEATMAP_TOLERANCE
                and self.keypoint_max_diff_px <= KEYPOINT_TOLERANCE_PX)

    def summary(self) -> str:
        """One line: the figures and, for a float32 graph, the tolerances they are held to."""
        if self.half:
            return (f"float16 graph on {self.num_crops} crops: heatmaps max |diff| "
                    f"{self.heatmap_max_diff:.2e}; keypoints deviate by "
                    f"{self.keypoint_mean_diff_px:.3f} px on average, at most "
                    f"{self.keypoint_max_diff_px:.3f} px over "
                    f"{self.decisive_joints}/{self.total_joints} joints with a decisive maximum")
        return (f"{self.num_crops} crops: heatmaps max |diff| {self.heatmap_max_diff:.2e} "
                f"(<= {HEATMAP_TOLERANCE:g}), keypoints max {self.keypoint_max_diff_px:.4f} px "
                f"(<= {KEYPOINT_TOLERANCE_PX:g}) over {self.decisive_joints}/{self.total_joints} "
                "joints with a decisive maximum")


def decisive_joints(heatmaps: Tensor, perturbation: float) -> Tensor:
    """[N, K] bool: joints of ``heatmaps`` [N, K, H, W] whose official decoding no change of the
    cells by at most ``perturbation`` can alter: the maximum exceeds every other cell, and each
    neighbour difference the quarter offset reads exceeds 0, by more than twice that much."""
    margin = 2 * perturbation
    batch_size, num_joints, height, width = heatmaps.shape
    flat = heatmaps.reshape(batch_size, num_joints, -1)
    top_two = flat.topk(2, dim=2).values
    unique = (top_two[..., 0] - top_two[..., 1] > margin) & (top_two[..., 0].abs() > margin)
    coords, _ = heatmap_maxima(heatmaps)
    x, y = coords[..., 0].long(), coords[..., 1].long()
    inside = (x > 1) & (x < width - 1) & (y > 1) & (y < height - 1)
    padded = torch.nn.functional.pad(heatmaps, (1, 1, 1, 1)).reshape(batch_size, num_joints, -1)

    def value_at(ys: Tensor, xs: Tensor) -> Tensor:  # in the padded map: +1 on both axes
        return padded.gather(2, ((ys + 1) * (width + 2) + xs + 1).unsqueeze(2)).squeeze(2)

    diff_x = value_at(y, x + 1) - value_at(y, x - 1)
    diff_y = value_at(y + 1, x) - value_at(y - 1, x)
    clear_offset = (diff_x.abs() > margin) & (diff_y.abs() > margin)
    return unique & (~inside | clear_offset)


def crop_pixel_keypoints(heatmaps: Tensor, input_size: tuple[int, int]) -> Tensor:
    """PyTorch's official decoding (``decode_heatmaps``) of ``heatmaps`` [N, K, h, w] in input
    px [N, K, 2]: the crop seen as an image, centre (w/2, h/2) px, scale (w, h) / pixel_std."""
    width, height = input_size
    count = heatmaps.shape[0]
    centers = torch.tensor([[width / 2, height / 2]], dtype=torch.float64).expand(count, 2)
    scales = torch.tensor([[width / PIXEL_STD, height / PIXEL_STD]],
                          dtype=torch.float64).expand(count, 2)
    keypoints, _ = decode_heatmaps(heatmaps, centers, scales, post_process="quarter_offset")
    return keypoints


@torch.no_grad()
def check_parity(model: nn.Module, path: str | Path, images: Tensor) -> Parity:
    """Run the exported file at ``path`` (onnxruntime, CPU) and ``model`` (PyTorch float32,
    eager) on ``images`` [N, 3, h, w] float32; compare the heatmaps, and the keypoints (the
    graph's, or decoded from its heatmaps) with PyTorch's decoding where the maximum is decisive.
    """
    exported = OnnxPoseModel(path)
    meta = exported.metadata
    outputs = exported.run(images.numpy())
    reference = model.eval()(images).float()
    heatmaps = torch.from_numpy(outputs["heatmaps"])
    heatmap_diff = float((heatmaps - reference).abs().max()) if images.numel() else 0.0
    if "keypoints" in outputs:
        keypoints = torch.from_numpy(outputs["keypoints"]).double()
    else:
        keypoints = crop_pixel_keypoints(heatmaps, meta.input_size).double()
    expected = crop_pixel_keypoints(reference, meta.input_size).double()
    distance = (keypoints - expected).norm(dim=2)
    decisive = decisive_joints(reference, heatmap_diff)
    return Parity(
        num_crops=len(images), heatmap_max_diff=heatmap_diff,
        keypoint_max_diff_px=float(distance[decisive].max()) if decisive.any() else 0.0,
        keypoint_mean_diff_px=float(distance.mean()) if distance.numel() else 0.0,
        decisive_joints=int(decisive.sum()), total_joints=decisive.numel(),
        half=meta.precision == "float16")


def synthetic_crops(input_size: tuple[int, int], count: int, seed: int = 0) -> Tensor:
    """``count`` normalised crops [count, 3, h, w] of generated people (``pose.synthetic``),
    cut as the evaluation cuts detection boxes: for parity checks where no dataset is at hand."""
    from pose.data.transforms import (
        box_to_center_scale,
        get_affine_transform,
        normalise_bgr,
        warp_image,
    )
    from pose.synthetic import annotate_scene, render_scene, sample_scene

    width, height = input_size
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    while len(crops) < count:
        scene = sample_scene(rng, (640, 480))
        image, part_buffer, _ = render_scene(scene)
        for annotation in annotate_scene(scene, part_buffer)[:count - len(crops)]:
            center, scale = box_to_center_scale(annotation["bbox"], width / height, BOX_PADDING)
            matrix = get_affine_transform(center, scale, 0.0, input_size)
            crops.append(normalise_bgr(warp_image(image, matrix, input_size)))
    return torch.from_numpy(np.stack(crops)) if crops else torch.zeros(0, 3, height, width)
