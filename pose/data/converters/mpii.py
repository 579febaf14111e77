"""The original MPII Human Pose release (``mpii_human_pose_v1_u12_1.mat``) to HRNet's MPII json.

The json is the layout :class:`pose.data.mpii.MpiiKeypoints` reads, plus each person's
``head_box`` (which PCKh needs); ``scripts/convert_mpii.py`` is the command line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pose.data.keypoints import MPII_KEYPOINTS
from pose.io import atomic_write_text

NUM_JOINTS = MPII_KEYPOINTS.num_joints


def _struct_list(value: Any) -> list[Any]:
    """loadmat(squeeze_me=True) gives one struct, an array of structs, or an empty array."""
    if isinstance(value, np.ndarray):
        return [item for item in value.reshape(-1) if not _is_empty(item)]
    return [] if _is_empty(value) else [value]


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, np.ndarray) and value.size == 0)


def _number(value: Any) -> float | None:
    """A MATLAB scalar (possibly a 1-element array or string), or None when empty."""
    if _is_empty(value):
        return None
    array = np.asarray(value).reshape(-1)
    return float(array[0])


def _release_person(rect: Any, image: str) -> dict[str, Any] | None:
    """One ``annorect`` of the release as our json person, or None if it is not annotated
    (no joints, no scale or no position)."""
    scale = _number(getattr(rect, "scale", None))
    objpos = getattr(rect, "objpos", None)
    annopoints = getattr(rect, "annopoints", None)
    if scale is None or _is_empty(objpos) or _is_empty(annopoints):
        return None
    points = _struct_list(getattr(annopoints, "point", None))
    if not points:
        return None
    joints = [[-1.0, -1.0] for _ in range(NUM_JOINTS)]
    visible = [0] * NUM_JOINTS
    for point in points:
        joint = _number(point.id)
        if joint is None or not 0 <= joint < NUM_JOINTS:
            continue
        joints[int(joint)] = [_number(point.x), _number(point.y)]
        visible[int(joint)] = 1  # annotated (MPII's is_visible says "not occluded")
    corners = [_number(getattr(rect, name, None)) for name in ("x1", "y1", "x2", "y2")]
    if any(value is None for value in corners):
        return None
    return {"image": image, "center": [_number(objpos.x), _number(objpos.y)], "scale": scale,
            "joints": joints, "joints_vis": visible,
            "head_box": [corners[:2], corners[2:]]}


def convert_mpii_release(mat_file: str | Path, out_dir: str | Path, *,
                         valid_images: Sequence[str] | None = None, valid_fraction: float = 0.1,
                         seed: int = 0) -> dict[str, int]:
    """Convert the MPII release (``mpii_human_pose_v1_u12_1.mat``) to our json layout.

    Writes ``<out_dir>/annot/train.json`` and ``valid.json``: the annotated people of the
    release's training images (``img_train`` 1; its test images carry no joints), with their
    head boxes (``head_box``, for PCKh) and MPII's 1-based coordinates, as the HRNet json. The
    validation people are those of ``valid_images`` (image names) or, without it, of a
    ``valid_fraction`` of the training images drawn with ``seed``.

    Returns:
        Counts: ``train_people``, ``valid_people``, ``train_images``, ``valid_images``.

    Raises:
        FileNotFoundError: the .mat file does not exist.
        FileExistsError: an output json exists already (nothing is overwritten).
        ValueError: the file is not the MPII release.
    """
    from scipy.io import loadmat

    mat_file, out_dir = Path(mat_file), Path(out_dir)
    if not mat_file.is_file():
        raise FileNotFoundError(f"MPII release file not found: {mat_file}")
    outputs = [out_dir / "annot" / f"{split}.json" for split in ("train", "valid")]
    for output in outputs:
        if output.exists():
            raise FileExistsError(f"{output} exists already; nothing was changed")
    try:
        release = loadmat(str(mat_file), struct_as_record=False, squeeze_me=True)["RELEASE"]
        annolist = _struct_list(release.annolist)
        is_train = np.asarray(release.img_train).reshape(-1)
    except (KeyError, AttributeError, ValueError) as error:
        raise ValueError(f"{mat_file} is not the MPII release (a RELEASE struct with annolist "
                         f"and img_train): {error!r}") from error
    if len(annolist) != len(is_train):
        raise ValueError(f"{mat_file}: {len(annolist)} annolist entries but {len(is_train)} "
                         "img_train flags")
    people_by_image: dict[str, list[dict[str, Any]]] = {}
    for entry, train_flag in zip(annolist, is_train):
        if not train_flag:
            continue
        image = str(entry.image.name)
        people = [person for rect in _struct_list(getattr(entry, "annorect", None))
                  if (person := _release_person(rect, image)) is not None]
        if people:
            people_by_image.setdefault(image, []).extend(people)
    images = sorted(people_by_image)
    if valid_images is None:
        generator = np.random.default_rng(seed)
        count = round(valid_fraction * len(images))
        chosen = {images[index] for index in generator.permutation(len(images))[:count]}
    else:
        chosen = set(valid_images) & set(images)
    splits = {"train": [image for image in images if image not in chosen],
              "valid": [image for image in images if image in chosen]}
    (out_dir / "annot").mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, output in zip(("train", "valid"), outputs):
        people = [person for image in splits[split] for person in people_by_image[image]]
        atomic_write_text(output, json.dumps(people))
        counts[f"{split}_people"] = len(people)
        counts[f"{split}_images"] = len(splits[split])
    return counts
