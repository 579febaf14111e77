"""Run an exported pose model: image and person boxes -> keypoints in image pixels.

The top-down step as ``pose.eval`` runs it (``pose.data`` crops, ``pose.evaluation`` flip test
and decoding), in numpy, OpenCV and onnxruntime, configured only by the file's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from pose.runtime.decode import decode_heatmap_cells, flip_test_average
from pose.runtime.geometry import (
    box_to_center_scale,
    crop_image,
    crop_matrix,
    heatmap_to_image,
    normalisation_table,
    normalise_crop,
)
from pose.runtime.metadata import RUNTIME_DECODINGS, MetadataError, PoseMetadata


@dataclass
class CropBatch:
    """Network inputs for N person boxes of one image."""

    images: np.ndarray  # [N, 3, h, w] float32, normalised as the metadata says
    centers: np.ndarray  # [N, 2] float32 crop centres, image px
    scales: np.ndarray  # [N, 2] float32 crop sizes / pixel_std


def open_session(path: str | Path, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> onnxruntime.InferenceSession:
    """An onnxruntime session of ``path`` (CPU unless ``providers`` say otherwise), or one
    clear error: a missing file, a file that is not ONNX."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(
            str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as error:  # onnxruntime raises its own kinds for a corrupt or foreign file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise MetadataError(f"{path} is not an ONNX model onnxruntime can load: "
                            f"{first_line}") from error


class OnnxPoseModel:
    """An exported pose model (``python -m pose.export``) with its pre- and post-processing.

    ``OnnxPoseModel(path).predict(image_bgr, boxes_xywh)`` -> ``(keypoints [N, K, 2] float32
    image px, scores [N, K] float32 heatmap maxima)``. A file without pose metadata is a
    :class:`MetadataError`. ``providers`` are onnxruntime's (default: the CPU).
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = open_session(self.path, providers, threads)
        properties = self.session.get_modelmeta().custom_metadata_map
        self.metadata = PoseMetadata.from_properties(properties, str(self.path))
        meta = self.metadata
        self.normalisation = normalisation_table(meta.value_range, meta.mean, meta.std)
        self.input_name = self.session.get_inputs()[0].name
        batch = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) else None
        self.output_names = [output.name for output in self.session.get_outputs()]

    def crops(self, image_bgr: np.ndarray, boxes_xywh: np.ndarray) -> CropBatch:
        """The network inputs for ``boxes_xywh`` [N, 4] (x, y, w, h px) in ``image_bgr``
        [H, W, 3] uint8: the official crop of each box, normalised."""
        image_bgr = np.asarray(image_bgr)
        if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected a uint8 BGR image [H, W, 3], got {image_bgr.dtype} "
                             f"{image_bgr.shape}")
        boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
        meta = self.metadata
        width, height = meta.input_size
        images = np.empty((len(boxes), 3, height, width), dtype=np.float32)
        centers = np.empty((len(boxes), 2), dtype=np.float32)
        scales = np.empty((len(boxes), 2), dtype=np.float32)
        for index, box in enumerate(boxes):
            centers[index], scales[index] = box_to_center_scale(
                box, width / height, meta.box_padding, meta.pixel_std)
            matrix = crop_matrix(centers[index], scales[index], meta.input_size, meta.pixel_std)
            crop = crop_image(image_bgr, matrix, meta.input_size)
            images[index] = normalise_crop(crop, self.normalisation, meta.channel_order)
        return CropBatch(images, centers, scales)

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs (``heatmaps``, and ``keypoints`` [N, K, 2] input px and
        ``scores`` [N, K] where it decodes) for ``images`` [N, 3, h, w] float32; a file exported
        with a fixed batch runs in chunks of it (the last one padded)."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        step = self.fixed_batch or max(len(images), 1)
        parts: list[list[np.ndarray]] = []
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            count = len(chunk)
            if count < step:
                chunk = np.concatenate([chunk, np.zeros((step - count, *chunk.shape[1:]),
                                                        dtype=np.float32)])
            outputs = self.session.run(self.output_names, {self.input_name: chunk})
            parts.append([output[:count] for output in outputs])
        if not parts:
            empty = self.session.run(self.output_names, {self.input_name: np.zeros(
                (self.fixed_batch or 1, *images.shape[1:]), dtype=np.float32)})
            return {name: output[:0] for name, output in zip(self.output_names, empty)}
        return {name: np.concatenate([part[i] for part in parts])
                for i, name in enumerate(self.output_names)}

    def decode(self, crops: CropBatch, flip_test: bool | None = None,
               decoding: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [N, K, 2] float32 image px and scores [N, K] for ``crops``.

        ``flip_test`` and ``decoding`` default to the metadata's (how the model was evaluated).
        Without the flip test the graph's own decoding is used where it is the one asked for.
        """
        meta = self.metadata
        flip_test = meta.flip_test if flip_test is None else flip_test
        decoding = meta.decoding if decoding is None else decoding
        if decoding not in RUNTIME_DECODINGS:
            raise ValueError(f"{self.path} was evaluated with {decoding!r} decoding, which "
                             f"pose.runtime does not implement: pass decoding= one of "
                             f"{', '.join(RUNTIME_DECODINGS)}")
        outputs = self.run(crops.images)
        if flip_test:
            flipped = self.run(crops.images[..., ::-1])
            heatmaps = flip_test_average(outputs["heatmaps"], flipped["heatmaps"],
                                         meta.flip_pairs, meta.shift_heatmap)
            coords, scores = decode_heatmap_cells(heatmaps, decoding)
        elif meta.graph_decoding == decoding:  # "off" is never a decoding asked for
            # Input px / stride: exact in float32 (the stride is a power of two).
            coords = outputs["keypoints"] / np.float32(meta.heatmap_stride)
            scores = outputs["scores"]
        else:
            coords, scores = decode_heatmap_cells(outputs["heatmaps"], decoding)
        keypoints = heatmap_to_image(coords, crops.centers, crops.scales, meta.heatmap_size,
                                     meta.pixel_std)
        return keypoints.astype(np.float32), scores.astype(np.float32)

    def predict(self, image_bgr: np.ndarray, boxes_xywh: np.ndarray,
                flip_test: bool | None = None,
                decoding: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [N, K, 2] float32 (x, y image px, 0-based) and scores [N, K] (heatmap
        maxima) of the people in ``boxes_xywh`` [N, 4] px of ``image_bgr`` [H, W, 3] uint8."""
        return self.decode(self.crops(image_bgr, boxes_xywh), flip_test, decoding)
