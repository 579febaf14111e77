"""The synthetic people of :mod:`pose.synthetic.coco` in MPII's layout (HRNet's json, 16
joints), for smoke runs of the MPII presets."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pose.data.transforms import PIXEL_STD
from pose.synthetic.coco import generate_coco_dataset

# MPII joint <- COCO joint, for the 14 joints both have (MPII_KEYPOINTS order; pelvis, thorax,
# upper neck and head top are derived).
_MPII_FROM_COCO = {0: 16, 1: 14, 2: 12, 3: 11, 4: 13, 5: 15, 10: 10, 11: 8, 12: 6, 13: 5,
                   14: 7, 15: 9}


def coco_person_to_mpii(annotation: dict[str, Any], image: str) -> dict[str, Any] | None:
    """One synthetic COCO person as an MPII json person (1-based, with a head box), or None when
    it has no labelled joint.

    Pelvis and thorax are the hip and shoulder midpoints; the head centre is the mean of the
    labelled face points, the upper neck halfway from the thorax to it, the head top as far
    beyond it; the head box is a square around upper neck and head top.
    """
    coco = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
    labelled = coco[:, 2] > 0
    if not labelled.any():
        return None
    joints = np.zeros((16, 2))
    visible = np.zeros(16, dtype=int)
    for mpii, source in _MPII_FROM_COCO.items():
        if labelled[source]:
            joints[mpii], visible[mpii] = coco[source, :2], 1
    for mpii, (first, second) in ((6, (11, 12)), (7, (5, 6))):
        if labelled[first] and labelled[second]:
            joints[mpii], visible[mpii] = (coco[first, :2] + coco[second, :2]) / 2, 1
    x, y, width, height = annotation["bbox"]
    face = labelled[:5]
    if face.any() and visible[7]:
        head = coco[:5][face, :2].mean(axis=0)
        joints[8], visible[8] = (joints[7] + head) / 2, 1
        joints[9], visible[9] = head + (head - joints[7]) / 2, 1
        size = max(float(np.linalg.norm(joints[9] - joints[8])), 2.0)
        middle = (joints[8] + joints[9]) / 2
    else:  # no face: a head-sized square at the top of the box
        size = max(0.15 * height, 2.0)
        middle = np.array([x + width / 2, y + size / 2])
    head_box = [(middle - size / 2 + 1).tolist(), (middle + size / 2 + 1).tolist()]
    scale = max(width, height) / PIXEL_STD  # MPII's scale: person size / 200 px
    # The loader moves the centre down by 15 * scale: move it up by as much here.
    center = [x + width / 2 + 1, y + height / 2 + 1 - 15 * scale]
    joints[visible == 0] = -1
    joints[visible == 1] += 1
    return {"image": image, "center": center, "scale": scale,
            "joints": joints.round(2).tolist(), "joints_vis": visible.tolist(),
            "head_box": head_box}


def generate_mpii_dataset(
    out_dir: str | Path,
    num_train_images: int = 8,
    num_val_images: int = 3,
    seed: int = 0,
    image_size: Sequence[int] = (256, 256),
) -> dict[str, Any]:
    """The synthetic people of :func:`generate_coco_dataset` in MPII's layout (16 joints).

    Writes ``<out_dir>/annot/train.json`` and ``valid.json`` (HRNet's MPII json, 1-based, with
    each person's ``head_box``) and the images to ``<out_dir>/images/``; see
    :func:`coco_person_to_mpii` for the joints MPII has and COCO has not.

    Returns:
        ``root``, ``train_people``, ``valid_people``.

    Raises:
        FileExistsError: ``out_dir`` already holds ``annot/`` or ``images/``.
    """
    out_dir = Path(out_dir)
    for name in ("annot", "images"):
        if (out_dir / name).exists():
            raise FileExistsError(f"{out_dir / name} exists already; the generator does not "
                                  "overwrite a dataset")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.coco-", dir=out_dir.parent) as work:
        coco_root = Path(work) / "coco"
        generate_coco_dataset(coco_root, num_train_images=num_train_images,
                              num_val_images=num_val_images, seed=seed, image_size=image_size)
        staging = Path(work) / "mpii"
        (staging / "annot").mkdir(parents=True)
        (staging / "images").mkdir()
        summary: dict[str, Any] = {"root": str(out_dir)}
        for split, name in (("train2017", "train"), ("val2017", "valid")):
            dataset = json.loads(
                (coco_root / "annotations" / f"person_keypoints_{split}.json").read_text())
            files = {image["id"]: image["file_name"] for image in dataset["images"]}
            people = [person for annotation in dataset["annotations"]
                      if (person := coco_person_to_mpii(
                          annotation, files[annotation["image_id"]])) is not None]
            for file_name in files.values():
                os.replace(coco_root / split / file_name, staging / "images" / file_name)
            (staging / "annot" / f"{name}.json").write_text(json.dumps(people))
            summary[f"{name}_people"] = len(people)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("images", "annot"):  # annot last: it marks a finished dataset
            os.replace(staging / name, out_dir / name)
    return summary
