"""The embedded datasets: synthetic COCO-format keypoints (images, annotations, detections) of
people, or of another subject (:data:`SUBJECTS`: the quadruped of AP-10K's layout).

Nothing is downloaded. Each image holds 1 to 4 cartoon people (:mod:`pose.synthetic.human`) or
animals (:mod:`pose.synthetic.quadruped`) on a textured background
(:mod:`pose.synthetic.scenes`), labelled from the rendered pixels
(:mod:`pose.synthetic.annotation`).

The same seed gives byte-identical images and JSON: every image draws from its own generator
``numpy.random.default_rng([seed, split_code, image_index])`` (:func:`image_rng`), so a scene
can be re-created from its seed alone.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pose.data.keypoints import COCO_KEYPOINTS, KeypointSpec
from pose.synthetic.annotation import annotate_scene, simulate_detections
from pose.synthetic.figures import PersonFigure
from pose.synthetic.quadruped import QUADRUPED_KEYPOINTS, sample_quadruped
from pose.synthetic.scenes import (
    FigureSampler,
    SceneParams,
    render_scene,
    sample_human,
    sample_scene,
)

SPLIT_CODES = {"train2017": 0, "val2017": 1}
RENDER_CHUNK = 100  # images per task when several processes render
DETECTIONS_FILE = "person_detections_val2017.json"
DEFAULT_JPEG_QUALITY = 92


@dataclass(frozen=True)
class Subject:
    """What an embedded dataset shows: its keypoint set, its category (id and name, which also
    names the files: ``annotations/<name>_keypoints_<split>.json``,
    ``annotations/<name>_detections_val2017.json``), the json's description and the figure
    drawer."""

    keypoints: KeypointSpec
    category_id: int
    name: str
    description: str
    sample_figure: FigureSampler

    def annotation_file(self, split: str) -> str:
        return f"{self.name}_keypoints_{split}.json"

    @property
    def detections_file(self) -> str:
        return f"{self.name}_detections_val2017.json"


def _sample_quadruped(rng: np.random.Generator, size_px: float, image_size: tuple[int, int],
                      params: SceneParams) -> PersonFigure:
    return sample_quadruped(rng, size_px, image_size, upright_share=params.upright_share,
                            far_side_shade=params.far_side_shade)


SUBJECTS: dict[str, Subject] = {
    # The description names the generator's first module: unchanged, so that a seed keeps
    # giving the same bytes.
    "person": Subject(COCO_KEYPOINTS, 1, "person",
                      "pose synthetic person keypoints (pose.data.synthetic)", sample_human),
    # Category 2: results and detections carry the dataset's own category, not COCO's person.
    "quadruped": Subject(QUADRUPED_KEYPOINTS, 2, "quadruped",
                         "pose synthetic quadruped keypoints (pose.synthetic.quadruped)",
                         _sample_quadruped),
}


def image_id_for(split: str, index: int) -> int:
    """The COCO image id of image ``index`` (0-based) of ``split``: train 1, 2, ...; val
    100000001, 100000002, ... (distinct across the splits)."""
    return SPLIT_CODES[split] * 100_000_000 + index + 1


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of ``split``: its scene depends on nothing else."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def _categories(subject: Subject) -> list[dict[str, Any]]:
    keypoints = subject.keypoints
    return [{
        "id": subject.category_id, "name": subject.name, "supercategory": subject.name,
        "keypoints": list(keypoints.joint_names),
        # COCO's skeleton is 1-based.
        "skeleton": [[first + 1, second + 1] for first, second in keypoints.skeleton],
    }]


def _render_images(
    image_dir: Path, split: str, indices: range, seed: int, image_size: tuple[int, int],
    jpeg_quality: int, params: SceneParams, subject: Subject,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Render the images ``indices`` of ``split`` into ``image_dir``; their image entries,
    annotations and (val only) detections. Each image depends only on (seed, split, index)."""
    images, annotations, detections = [], [], []
    for index in indices:
        image_id = image_id_for(split, index)
        rng = image_rng(seed, split, index)
        scene = sample_scene(rng, image_size, params, subject.sample_figure)
        image, part_buffer, _ = render_scene(scene)
        file_name = f"{image_id:012d}.jpg"
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {file_name} as JPEG")
        (image_dir / file_name).write_bytes(encoded.tobytes())
        images.append({"id": image_id, "file_name": file_name, "width": image_size[0],
                       "height": image_size[1]})
        people = annotate_scene(scene, part_buffer)
        for person_index, person in enumerate(people):
            annotations.append({"id": image_id * 10 + person_index + 1, "image_id": image_id,
                                "category_id": subject.category_id, "iscrowd": 0, **person})
        if split == "val2017":
            detections.extend(simulate_detections(rng, image_id, people, image_size,
                                                  category_id=subject.category_id))
    return images, annotations, detections


def _write_split(
    root: Path, split: str, num_images: int, seed: int, image_size: tuple[int, int],
    jpeg_quality: int, params: SceneParams, subject: Subject, pool: Executor | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Render ``num_images`` images into ``root/split`` (in ``pool``'s processes if given, in
    chunks joined in index order); the annotation dict and the detections."""
    image_dir = root / split
    image_dir.mkdir(parents=True)
    render = (image_dir, split)
    settings = (seed, image_size, jpeg_quality, params, subject)
    chunks = [range(start, min(start + RENDER_CHUNK, num_images))
              for start in range(0, num_images, RENDER_CHUNK)]
    if pool is None:
        parts = [_render_images(*render, chunk, *settings) for chunk in chunks]
    else:
        parts = list(pool.map(_render_images, *zip(*[(*render, chunk, *settings)
                                                     for chunk in chunks], strict=True)))
    images = [entry for part in parts for entry in part[0]]
    annotations = [entry for part in parts for entry in part[1]]
    detections = [entry for part in parts for entry in part[2]]
    dataset = {
        "info": {"description": subject.description, "version": "1.0", "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": _categories(subject),
    }
    return dataset, detections


def _check_arguments(num_train_images: int, num_val_images: int, image_size: Sequence[int],
                     jpeg_quality: int, subject: str) -> tuple[int, int]:
    """ValueError for an argument of :func:`generate_coco_dataset` out of range; the image
    (width, height)."""
    if subject not in SUBJECTS:
        raise ValueError(f"subject {subject!r} is not known: expected one of "
                         f"{', '.join(SUBJECTS)}")
    if len(image_size) != 2:
        raise ValueError(f"image_size must be (width, height), got {image_size!r}")
    width, height = int(image_size[0]), int(image_size[1])
    if width < 64 or height < 64:
        raise ValueError(f"image_size must be at least 64x64 pixels, got {width}x{height}")
    if num_train_images < 0 or num_val_images < 1:
        raise ValueError(
            f"need num_train_images >= 0 and num_val_images >= 1, got {num_train_images} and "
            f"{num_val_images}"
        )
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    return width, height


def generate_coco_dataset(
    out_dir: str | Path,
    num_train_images: int = 2000,
    num_val_images: int = 300,
    seed: int = 0,
    image_size: Sequence[int] = (320, 320),
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    scene_params: SceneParams | None = None,
    subject: str = "person",
    workers: int = 1,
) -> dict[str, Any]:
    """Generate a synthetic COCO-format keypoint dataset in ``out_dir``: people (COCO's 17
    keypoints) or another ``subject`` of :data:`SUBJECTS`.

    Writes ``train2017/`` and ``val2017/`` (JPEG images named ``%012d.jpg`` after their ids, 1
    to 4 figures each), ``annotations/<subject>_keypoints_{train,val}2017.json`` (COCO format)
    and ``annotations/<subject>_detections_val2017.json`` (simulated detector boxes in COCO
    results format). The dataset is built in a temporary sibling folder and moved into place at
    the end, so an interrupted run leaves no partial dataset. The same arguments give
    byte-identical files.

    Args:
        out_dir: dataset root; it may exist but must not hold ``annotations/``, ``train2017/``
            or ``val2017/``.
        num_train_images, num_val_images: image counts (>= 0; val >= 1 for the detections).
        seed: the random seed.
        image_size: (width, height) in pixels, each at least 64.
        jpeg_quality: OpenCV JPEG quality (1..100).
        scene_params: how hard the scenes are (None: the :class:`SceneParams` defaults).
        subject: "person" or "quadruped" (the keypoint set ``conf/keypoints/quadruped.yaml``).
        workers: processes that render the images (1: this one). The files are the same for
            any count.

    Returns:
        A summary: ``root``, ``image_size``, ``train_images``, ``train_people``, ``val_images``,
        ``val_people``, ``val_detections`` and the paths of the three annotation files.

    Raises:
        FileExistsError: ``out_dir`` already holds a dataset (or its image folders).
        ValueError: a count or size is out of range, or the subject is unknown.
    """
    out_dir = Path(out_dir)
    width, height = _check_arguments(num_train_images, num_val_images, image_size, jpeg_quality,
                                     subject)
    drawn = SUBJECTS[subject]
    _refuse_existing(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        annotation_dir = staging / "annotations"
        annotation_dir.mkdir()
        summary: dict[str, Any] = {"root": str(out_dir), "image_size": [width, height]}
        # Spawned, not forked: the caller may hold threads (torch's, OpenCV's) a fork would copy.
        pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                if workers > 1 else None)
        with pool or contextlib.nullcontext():
            for split, count in (("train2017", num_train_images), ("val2017", num_val_images)):
                dataset, detections = _write_split(staging, split, count, seed, (width, height),
                                                   jpeg_quality, scene_params or SceneParams(),
                                                   drawn, pool)
                name = split.removesuffix("2017")
                (annotation_dir / drawn.annotation_file(split)).write_text(json.dumps(dataset))
                summary[f"{name}_images"] = len(dataset["images"])
                summary[f"{name}_people"] = len(dataset["annotations"])
                if split == "val2017":
                    (annotation_dir / drawn.detections_file).write_text(json.dumps(detections))
                    summary["val_detections"] = len(detections)
        _refuse_existing(out_dir)
        if out_dir.exists():
            # Move the image folders first: the annotations folder marks a finished dataset.
            for name in ("train2017", "val2017", "annotations"):
                os.replace(staging / name, out_dir / name)
            staging.rmdir()
        else:
            os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    for split in ("train2017", "val2017"):
        summary[f"{split.removesuffix('2017')}_annotations"] = str(
            out_dir / "annotations" / drawn.annotation_file(split))
    summary["val_detections_file"] = str(out_dir / "annotations" / drawn.detections_file)
    return summary


def _refuse_existing(out_dir: Path) -> None:
    """FileExistsError if ``out_dir`` holds a dataset or anything the generator would replace."""
    if (out_dir / "annotations").exists():
        raise FileExistsError(
            f"{out_dir} already holds a dataset ({out_dir / 'annotations'} exists); "
            "remove it or choose another folder"
        )
    for name in ("train2017", "val2017"):
        if (out_dir / name).exists():
            raise FileExistsError(
                f"{out_dir / name} already exists; the generator does not overwrite images"
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
