"""The Python API for running a trained model on pictures: ``PoseEstimator``.

``estimator(image_bgr, boxes=None) -> list[Person]`` and ``estimator.predict_batch(images,
boxes)`` run the evaluation loop's code path on person boxes: the official crop (the affine of
:mod:`pose.data.transforms`; on CUDA a batched ``grid_sample`` warp, as device augmentation
cuts crops), the model with the flip test (:func:`pose.engine.inference.predict_crops`), the
decoding, and the rescoring and OKS-NMS of :func:`pose.evaluation.coco.rescore_and_nms`. Given
the same boxes and settings, its keypoints are ``pose.eval``'s.

``OnnxPoseEstimator`` is the same on a file ``pose.export`` wrote: crops, network and decoding are
:mod:`pose.runtime`'s (onnxruntime), boxes, rescoring and OKS-NMS these. ``pose.infer`` (images,
folders, videos, detectors, tracking; ``backend=onnx`` for the second) is built on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pose.data.device import warp_images
from pose.data.keypoints import KeypointSpec
from pose.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    box_to_center_scale,
    crop_affine_transform,
    normalise,
    normalise_bgr,
    warp_image,
)
from pose.engine.inference import predict_crops
from pose.evaluation.coco import rescore_and_nms
from pose.evaluation.decode import DecodeSettings
from pose.evaluation.evaluators import EvaluationSettings

# The person box is enlarged by this factor around its centre to make the crop (official).
CROP_PADDING = 1.25


@dataclass
class Person:
    """One predicted person.

    keypoints: [K, 2] float64 image pixels (x, y), 0-based.
    scores: [K] float64 joint confidences (heatmap peak values).
    box: [4] float64 the person box the crop was cut around, ``x, y, w, h`` pixels.
    score: the pose score (the mean of the joint confidences above the visibility threshold,
        times the box score), as ``pose.eval`` rescores.
    box_score: the box's own score (detector or boxes file; 1 for the whole image).
    track_id: the track a video's person belongs to (None for images).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    box: np.ndarray
    score: float
    box_score: float = 1.0
    track_id: int | None = None

    def keypoint_triplets(self) -> np.ndarray:
        """[K, 3] (x, y, score), as COCO results hold keypoints."""
        return np.concatenate([self.keypoints, self.scores[:, None]], axis=1)


@dataclass
class CropBoxes:
    """The person boxes of a batch of images as crops: N rows over all images."""

    image_index: np.ndarray  # [N] int64: which image of the batch
    boxes: np.ndarray  # [N, 5] float64 x, y, w, h (pixels), score
    centers: torch.Tensor  # [N, 2] float32 crop centres, pixels
    scales: torch.Tensor  # [N, 2] float32 crop sizes / 200 px


class PoseEstimator:
    """A trained top-down model on images with person boxes: keypoints in image pixels.

    Args:
        model: ``crops [B, 3, h, w] (normalised RGB) -> heatmaps [B, K, h/4, w/4]``; a torch
            module is put in eval mode on ``device``.
        image_size: the model's input (width, height) in pixels.
        decoding: flip test and heatmap decoding (as ``pose.eval``'s).
        scoring: rescoring and NMS settings (``visibility_threshold``, ``nms``,
            ``nms_threshold``), as ``pose.eval``'s.
        keypoints: the keypoint set (flip pairs, OKS sigmas; a set without OKS sigmas gets no
            NMS).
        device: where crops are cut (on CUDA) and the model runs.
        batch_size: crops per forward pass.
        padding: box enlargement around the person (official 1.25).
        codec: how the model's training crops were cut, "heatmap" (official) or "udp"
            (``data.codec``); the crops here are cut the same way.
    """

    def __init__(self, model: Callable[[torch.Tensor], torch.Tensor],
                 image_size: Sequence[int], decoding: DecodeSettings,
                 scoring: EvaluationSettings, keypoints: KeypointSpec,
                 device: torch.device | str = "cpu", batch_size: int = 32,
                 padding: float = CROP_PADDING, codec: str = "heatmap") -> None:
        self.device = torch.device(device)
        self.model = model
        if isinstance(model, torch.nn.Module):
            self.model = model.eval().to(self.device)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        # A Python float, as the dataset's: it sets the float32/float64 rounding of the boxes.
        self.aspect_ratio = self.image_size[0] * 1.0 / self.image_size[1]
        self.decoding = decoding
        self.scoring = scoring
        self.keypoints = keypoints
        self.batch_size = max(1, int(batch_size))
        self.padding = padding
        self.codec = codec
        self.nms = scoring.nms if keypoints.oks_sigmas is not None else "none"
        # Cut crops with grid_sample on the device (CUDA) rather than with OpenCV on the CPU.
        self.crops_on_device = self.device.type == "cuda"

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto",
                        overrides: Sequence[str] = (), batch_size: int = 32,
                        flip_test: bool | None = None,
                        post_process: str | None = None) -> PoseEstimator:
        """The estimator of a checkpoint pose.train wrote (its config says the model, crop size,
        keypoint set and evaluation settings), or of official / mmpose weights with
        ``overrides`` naming the model (``["experiment=hrnet_w32_256x192"]`` or
        ``["model=lite_hrnet_18", ...]``), as ``pose.eval`` takes them.

        ``device``: auto, cpu, cuda or cuda:N. ``flip_test`` and ``post_process`` default to the
        checkpoint's evaluation settings; ``overrides`` may also set ``eval.*`` keys.
        """
        from pose.config import estimator_from_checkpoint

        estimator, _ = estimator_from_checkpoint(str(path), device, list(overrides), batch_size,
                                                 flip_test, post_process)
        return estimator

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None = None) -> list[Person]:
        """The people of one image.

        Args:
            image: BGR uint8 [H, W, 3] (as ``cv2.imread`` gives it).
            boxes: [M, 4] person boxes ``x, y, w, h`` in pixels, or [M, 5] with a score each
                (1 without); None: the whole image is one person's box.

        Returns:
            The people after rescoring and NMS, best first.
        """
        return self.predict_batch([image], None if boxes is None else [boxes])[0]

    def predict_batch(self, images: Sequence[np.ndarray],
                      boxes: Sequence[np.ndarray | None] | None = None) -> list[list[Person]]:
        """The people of several images; the crops of all their boxes go through the model
        together, ``batch_size`` at a time.

        Args:
            images: BGR uint8 [H, W, 3] each.
            boxes: per image, [M, 4] or [M, 5] boxes as in :meth:`__call__`, or None for the
                whole image; None: the whole image for every image.

        Returns:
            Per image, its people after rescoring and NMS (each image's own NMS), best first.
        """
        if boxes is None:
            boxes = [None] * len(images)
        if len(boxes) != len(images):
            raise ValueError(f"got {len(images)} images but {len(boxes)} box arrays")
        crops = self.crop_boxes(images, boxes)
        keypoints, maxvals = self.predict_crop_boxes(images, crops)
        return self.select_people(len(images), crops, keypoints, maxvals)

    def crop_boxes(self, images: Sequence[np.ndarray],
                   boxes: Sequence[np.ndarray | None]) -> CropBoxes:
        """The crop of every usable box (positive width and height), in image then box order."""
        rows, image_index = [], []
        for index, (image, image_boxes) in enumerate(zip(images, boxes, strict=True)):
            image_boxes = _as_boxes(image, image_boxes)
            usable = (image_boxes[:, 2] > 0) & (image_boxes[:, 3] > 0)
            rows.append(image_boxes[usable])
            image_index.extend([index] * int(usable.sum()))
        all_boxes = np.concatenate(rows) if rows else np.zeros((0, 5))
        centers = np.zeros((len(all_boxes), 2), dtype=np.float32)
        scales = np.zeros((len(all_boxes), 2), dtype=np.float32)
        for row, box in enumerate(all_boxes):
            centers[row], scales[row] = box_to_center_scale(box[:4], self.aspect_ratio,
                                                            self.padding)
        return CropBoxes(np.asarray(image_index, dtype=np.int64), all_boxes,
                         torch.from_numpy(centers), torch.from_numpy(scales))

    @torch.no_grad()
    def predict_crop_boxes(self, images: Sequence[np.ndarray], crops: CropBoxes
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints [N, K, 2] (image pixels) and confidences [N, K] of the crops, on the CPU."""
        keypoints, maxvals = [], []
        for start in range(0, len(crops.boxes), self.batch_size):
            rows = slice(start, start + self.batch_size)
            centers, scales = crops.centers[rows], crops.scales[rows]
            batch = self.cut_crops(images, crops.image_index[rows], centers, scales)
            batch_keypoints, batch_maxvals = predict_crops(
                self.model, batch, centers.to(self.device), scales.to(self.device),
                self.decoding)
            keypoints.append(batch_keypoints.cpu())
            maxvals.append(batch_maxvals.cpu())
        if not keypoints:
            num_joints = self.keypoints.num_joints
            return torch.zeros((0, num_joints, 2)), torch.zeros((0, num_joints))
        return torch.cat(keypoints), torch.cat(maxvals)

    def cut_crops(self, images: Sequence[np.ndarray], image_index: np.ndarray,
                  centers: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Normalised crops [n, 3, h, w] on the device: on the CPU exactly the evaluation
        loader's (``cv2.warpAffine``), on CUDA (:attr:`crops_on_device`) a batched
        ``grid_sample`` warp per image (equal up to interpolation rounding)."""
        matrices = [crop_affine_transform(self.codec, center, scale, 0, self.image_size)
                    for center, scale in zip(centers.numpy(), scales.numpy(), strict=True)]
        if not self.crops_on_device:
            crops = [normalise_bgr(warp_image(images[int(index)], matrix, self.image_size))
                     for index, matrix in zip(image_index, matrices, strict=True)]
            return torch.from_numpy(np.stack(crops)).to(self.device)
        return cut_crops_on_device(images, image_index, np.stack(matrices), self.image_size,
                                   self.device)

    def select_people(self, num_images: int, crops: CropBoxes, keypoints: torch.Tensor,
                      maxvals: torch.Tensor) -> list[list[Person]]:
        """Rescoring and per-image NMS, as ``pose.eval`` does them; the kept people per image
        in keep order (best first)."""
        people: list[list[Person]] = [[] for _ in range(num_images)]
        if len(crops.boxes) == 0:
            return people
        kept, scores = rescore_and_nms(
            maxvals, keypoints, crops.scales, crops.boxes[:, 4], crops.image_index,
            sigmas=self.keypoints.oks_sigmas,
            visibility_threshold=self.scoring.visibility_threshold,
            oks_threshold=self.scoring.nms_threshold, nms=self.nms)
        keypoints_np = keypoints.numpy().astype(np.float64)
        maxvals_np = maxvals.numpy().astype(np.float64)
        for row in kept.tolist():
            people[int(crops.image_index[row])].append(Person(
                keypoints=keypoints_np[row], scores=maxvals_np[row],
                box=crops.boxes[row, :4].copy(), score=float(scores[row]),
                box_score=float(crops.boxes[row, 4])))
        return people


class OnnxPoseEstimator(PoseEstimator):
    """:class:`PoseEstimator` of an exported model (``python -m pose.export``): each image's
    crops, the network (onnxruntime on the CPU), the flip test and the decoding are
    :class:`pose.runtime.OnnxPoseModel`'s, configured by the file's metadata; the boxes, the
    rescoring and OKS-NMS are :class:`PoseEstimator`'s, with ``scoring``.

    Args:
        path: the ``.onnx`` file.
        scoring: rescoring and NMS settings (``eval.visibility_threshold``, ``eval.nms``, ...).
        batch_size: crops per run of the network.
        flip_test: None: the metadata's (how the model was evaluated).
        post_process: None: the metadata's; pose.runtime decodes "quarter_offset" and "none".
        threads: onnxruntime's intra-op threads (None: its default).
    """

    def __init__(self, path: str | Path, scoring: EvaluationSettings, batch_size: int = 32,
                 flip_test: bool | None = None, post_process: str | None = None,
                 threads: int | None = None) -> None:
        from pose.runtime import OnnxPoseModel
        from pose.runtime.metadata import RUNTIME_DECODINGS

        runtime = OnnxPoseModel(path, threads=threads)
        meta = runtime.metadata
        post_process = meta.decoding if post_process is None else post_process
        if post_process not in RUNTIME_DECODINGS:
            raise ValueError(f"{path} was evaluated with {post_process!r} decoding, which "
                             "pose.runtime does not implement: pass post_process= one of "
                             f"{', '.join(RUNTIME_DECODINGS)}")
        decoding = DecodeSettings(
            flip_pairs=meta.flip_pairs, flip_test=meta.flip_test if flip_test is None
            else bool(flip_test), shift_heatmap=meta.shift_heatmap, post_process=post_process,
            sigma=meta.target_sigma)
        keypoints = KeypointSpec(meta.keypoint_set, meta.keypoint_names, meta.flip_pairs,
                                 meta.skeleton, (), (), meta.oks_sigmas, source=str(path))

        def heatmaps(crops: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(runtime.run(crops.numpy())["heatmaps"])

        super().__init__(heatmaps, meta.input_size, decoding, scoring, keypoints, "cpu",
                         batch_size, meta.box_padding)
        self.runtime = runtime
        self.model_name = meta.model_name

    def predict_crop_boxes(self, images: Sequence[np.ndarray], crops: CropBoxes
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints [N, K, 2] (image pixels) and confidences [N, K] of the crops, by
        :meth:`pose.runtime.OnnxPoseModel.predict` per image (the rows are in image order)."""
        keypoints, scores = [], []
        for index in np.unique(crops.image_index).tolist():
            rows = np.flatnonzero(crops.image_index == index)
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start:start + self.batch_size]
                image_keypoints, image_scores = self.runtime.predict(
                    images[index], crops.boxes[chunk, :4], self.decoding.flip_test,
                    self.decoding.post_process)
                keypoints.append(torch.from_numpy(image_keypoints))
                scores.append(torch.from_numpy(image_scores))
        if not keypoints:
            num_joints = self.keypoints.num_joints
            return torch.zeros((0, num_joints, 2)), torch.zeros((0, num_joints))
        return torch.cat(keypoints), torch.cat(scores)


def _as_boxes(image: np.ndarray, boxes: np.ndarray | None) -> np.ndarray:
    """[M, 5] float64 boxes with scores: the whole image for None, score 1 for [M, 4]."""
    if boxes is None:
        height, width = image.shape[:2]
        return np.array([[0.0, 0.0, width - 1.0, height - 1.0, 1.0]])
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 5))
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
        raise ValueError(f"boxes must be [M, 4] (x, y, w, h) or [M, 5] (with a score), got "
                         f"shape {boxes.shape}")
    if boxes.shape[1] == 4:
        boxes = np.concatenate([boxes, np.ones((len(boxes), 1))], axis=1)
    return boxes


def cut_crops_on_device(images: Sequence[np.ndarray], image_index: np.ndarray,
                        matrices: np.ndarray, image_size: tuple[int, int],
                        device: torch.device) -> torch.Tensor:
    """Normalised crops [n, 3, h, w] cut on ``device``: each image is uploaded once and its
    crops warped together (:func:`pose.data.device.warp_images`, bilinear, 0 outside), rounded to
    whole levels as the uint8 crops of the CPU path, then normalised.

    Args:
        images: BGR uint8 [H, W, 3] each.
        image_index: [n] which image each crop comes from.
        matrices: [n, 2, 3] image-pixel to crop-pixel maps.
        image_size: crop (width, height) in pixels.
    """
    crops = torch.empty((len(image_index), 3, image_size[1], image_size[0]), device=device)
    all_matrices = torch.from_numpy(matrices)
    for index in np.unique(image_index).tolist():
        rows = np.flatnonzero(image_index == index)
        source = torch.from_numpy(np.ascontiguousarray(images[index])).to(device)
        # Float once, then a view per crop: the image is not copied for each of its boxes.
        rgb = source.permute(2, 0, 1).flip(0)[None].float()  # [1, 3, H, W]
        warped = warp_images(rgb.expand(len(rows), -1, -1, -1), all_matrices[rows], image_size)
        crops[torch.from_numpy(rows).to(device)] = warped.round_().clamp_(0, 255)
    return normalise(crops, IMAGENET_MEAN, IMAGENET_STD)
