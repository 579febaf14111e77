"""DeepLabCut / lightning-pose label CSVs (``CollectedData_<scorer>.csv``) to COCO-format jsons.

The CSV has three header rows, ``scorer`` / ``bodyparts`` / ``coords`` (x, y per body part), or
the multi-animal four, with ``individuals`` after ``scorer``; an empty cell or ``NaN`` is an
unlabelled keypoint. The index (the image) is one column holding the image's path, or several
(e.g. ``labeled-data``, ``<video>``, ``<image>``) joined with ``/``; either is relative to the
image root. :func:`convert_dlc` writes ``train.json`` and ``val.json`` (COCO format: one
annotation per labelled individual, ``file_name`` relative to the image root, images referenced,
not copied) and ``keypoints.yaml`` (the body parts, flip pairs inferred from their names, no
sigmas); ``scripts/convert_dlc.py`` is the command line.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pose.data.keypoints import (
    describe_flip_pairs,
    infer_flip_pairs,
    keypoint_spec_from_dict,
    keypoint_spec_yaml,
)

# The box of an individual: its labelled keypoints' extent, widened by BOX_MARGIN times the
# extent's longer side on every side, each side at least MIN_BOX_SIDE pixels (an individual
# with one or two labelled keypoints still gets a usable box), clipped to the image.
BOX_MARGIN = 0.1
MIN_BOX_SIDE = 32.0
OUTPUT_FILES = ("train.json", "val.json", "keypoints.yaml")
CATEGORY_ID = 1


@dataclass
class DlcLabels:
    """A label CSV: the body parts, and per image (``file_name``, relative to the image root) the
    labelled individuals' keypoints ([K, 2] pixels, NaN where unlabelled)."""

    bodyparts: list[str]
    images: list[tuple[str, list[np.ndarray]]]
    scorer: str = ""  # the labeller named in the scorer row
    # Individuals whose body parts are not the animals' (DLC's "single" unique body parts).
    other_individuals: list[str] = field(default_factory=list)
    empty_individuals: int = 0  # individual-image pairs without a labelled keypoint (skipped)


def _header(rows: list[list[str]], path: Path) -> tuple[dict[str, list[str]], int]:
    """The header rows by name and the number of index columns."""
    names = [row[0].strip().lower() if row else "" for row in rows[:4]]
    expected = (["scorer", "individuals", "bodyparts", "coords"] if names[1:2] == ["individuals"]
                else ["scorer", "bodyparts", "coords"])
    if names[:len(expected)] != expected:
        raise ValueError(f"{path}: not a DeepLabCut label CSV: its first column should start "
                         f"with {', '.join(expected)} (scorer / [individuals /] bodyparts / "
                         f"coords header rows), got {names[:len(expected)]}")
    header = {name: rows[position] for position, name in enumerate(expected)}
    coords = header["coords"]
    index_columns = next((column for column, value in enumerate(coords)
                          if value.strip() in ("x", "y")), None)
    if index_columns is None or index_columns == 0:
        raise ValueError(f"{path}: the coords row names no x/y columns")
    return header, index_columns


def _columns(header: dict[str, list[str]], index_columns: int, path: Path
             ) -> dict[str, dict[str, dict[str, int]]]:
    """individual -> body part -> coordinate ("x", "y") -> column (likelihoods ignored)."""
    columns: dict[str, dict[str, dict[str, int]]] = {}
    width = len(header["coords"])
    for column in range(index_columns, width):
        coordinate = header["coords"][column].strip()
        if coordinate not in ("x", "y"):
            continue
        individual = header["individuals"][column].strip() if "individuals" in header else ""
        bodypart = header["bodyparts"][column].strip()
        if not bodypart:
            raise ValueError(f"{path}: column {column + 1} has no body part name")
        slot = columns.setdefault(individual, {}).setdefault(bodypart, {})
        if coordinate in slot:
            raise ValueError(f"{path}: body part {bodypart!r} has two {coordinate} columns"
                             + (f" for individual {individual!r}" if individual else ""))
        slot[coordinate] = column
    for individual, bodyparts in columns.items():
        for bodypart, slot in bodyparts.items():
            if set(slot) != {"x", "y"}:
                raise ValueError(f"{path}: body part {bodypart!r} lacks its "
                                 f"{'y' if 'x' in slot else 'x'} column")
    if not columns:
        raise ValueError(f"{path}: no body part columns")
    return columns


def _number(text: str, path: Path, row: int, column: int) -> float:
    text = text.strip()
    if not text or text.lower() == "nan":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}: row {row + 1}, column {column + 1} is {text!r}, not a "
                         "coordinate") from None
    return value if math.isfinite(value) else math.nan


def read_dlc_csv(path: str | Path) -> DlcLabels:
    """Read a DeepLabCut label CSV (single- or multi-animal header; see the module docstring).

    The keypoint set is the first individual's body parts in column order; other individuals
    with the same body parts are animals of the set, those with others (DLC's ``single``) are
    left out and named in ``other_individuals``.

    Raises:
        ValueError: not a DLC label CSV (header rows, missing x or y columns, a coordinate that
            is not a number), naming the file and the row or column.
    """
    path = Path(path)
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, index_columns = _header(rows, path)
    columns = _columns(header, index_columns, path)
    first = next(iter(columns))
    bodyparts = list(columns[first])
    animals = [name for name, parts in columns.items() if list(parts) == bodyparts]
    labels = DlcLabels(bodyparts=bodyparts, images=[],
                       scorer=next((cell.strip() for cell in header["scorer"][index_columns:]
                                    if cell.strip()), ""),
                       other_individuals=[name for name in columns if name not in animals])
    for row_number in range(len(header), len(rows)):
        row = rows[row_number]
        if not any(cell.strip() for cell in row):
            continue
        row = row + [""] * (len(header["coords"]) - len(row))
        file_name = "/".join(cell.strip() for cell in row[:index_columns] if cell.strip())
        if not file_name:
            raise ValueError(f"{path}: row {row_number + 1} names no image")
        individuals = []
        for animal in animals:
            points = np.array([[_number(row[columns[animal][part][coordinate]], path, row_number,
                                        columns[animal][part][coordinate])
                                for coordinate in ("x", "y")] for part in bodyparts])
            if np.isfinite(points).all(axis=1).any():
                individuals.append(points)
            else:
                labels.empty_individuals += 1
        labels.images.append((file_name, individuals))
    return labels


def individual_box(points: np.ndarray, width: int, height: int) -> list[float]:
    """The COCO box [x, y, w, h] (pixels) of one individual's keypoints ([K, 2], NaN where
    unlabelled): see :data:`BOX_MARGIN` and :data:`MIN_BOX_SIDE`."""
    labelled = points[np.isfinite(points).all(axis=1)]
    low, high = labelled.min(axis=0), labelled.max(axis=0)
    margin = BOX_MARGIN * float((high - low).max())
    low, high = low - margin, high + margin
    centre = (low + high) / 2
    half = np.maximum((high - low) / 2, MIN_BOX_SIDE / 2)
    low = np.maximum(centre - half, 0.0)
    high = np.minimum(centre + half, [width, height])
    return [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])]


def _image_size(image_root: Path, file_name: str) -> tuple[int, int]:
    """(width, height) of an image as stored (EXIF orientation ignored, as the loader does)."""
    from PIL import Image

    path = image_root / file_name
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise FileNotFoundError(f"image {file_name} (from the CSV) not found under the image root "
                                f"{image_root}") from None
    except OSError as error:
        raise ValueError(f"image {path} cannot be read: {error}") from None


def _split(labels: DlcLabels, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Image positions of train and val: a seeded draw of images with labelled individuals,
    at least one in each split."""
    labelled = [position for position, (_, individuals) in enumerate(labels.images)
                if individuals]
    if len(labelled) < 2:
        raise ValueError(f"{len(labelled)} image(s) with a labelled individual: train and val "
                         "need at least one each")
    count = min(max(round(val_fraction * len(labelled)), 1), len(labelled) - 1)
    order = np.random.default_rng(seed).permutation(len(labelled))
    val = sorted(labelled[index] for index in order[:count])
    chosen = set(val)
    return [position for position in labelled if position not in chosen], val


def _coco_json(labels: DlcLabels, positions: list[int], sizes: dict[int, tuple[int, int]],
               name: str, source: str) -> dict[str, Any]:
    """The COCO keypoint json of the images ``positions`` (ids: CSV order, 1-based)."""
    images, annotations = [], []
    for position in positions:
        file_name, individuals = labels.images[position]
        width, height = sizes[position]
        images.append({"id": position + 1, "file_name": file_name, "width": width,
                       "height": height})
        for points in individuals:
            labelled = np.isfinite(points).all(axis=1)
            keypoints = [value for point, seen in zip(points.tolist(), labelled, strict=True)
                         for value in ((*point, 2) if seen else (0, 0, 0))]
            box = individual_box(points, width, height)
            annotations.append({"id": len(annotations) + 1, "image_id": position + 1,
                                "category_id": CATEGORY_ID, "iscrowd": 0, "bbox": box,
                                "area": box[2] * box[3], "num_keypoints": int(labelled.sum()),
                                "keypoints": keypoints})
    return {"info": {"description": f"converted from {source} by pose's DLC converter"},
            "images": images, "annotations": annotations,
            "categories": [{"id": CATEGORY_ID, "name": name, "supercategory": name,
                            "keypoints": labels.bodyparts, "skeleton": []}]}


def _write_atomically(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file in the same folder (never a partial
    file under the final name)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                         dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def convert_dlc(csv_file: str | Path, image_root: str | Path, out_dir: str | Path,
                val_fraction: float = 0.1, seed: int = 0, name: str | None = None,
                overwrite: bool = False) -> dict[str, Any]:
    """Convert a DeepLabCut label CSV to ``train.json``, ``val.json`` and ``keypoints.yaml``
    under ``out_dir`` (see the module docstring).

    Args:
        csv_file: the label CSV.
        image_root: the folder the CSV's image paths are relative to (each ``file_name`` is).
        out_dir: where the three files go (created if needed).
        val_fraction: the share of labelled images in val (at least one image in each split).
        seed: the seed of that draw.
        name: the keypoint set's and the category's name (None: the CSV's scorer, else "dlc").
        overwrite: replace existing output files (otherwise an existing one is an error and
            nothing is written).

    Returns:
        A summary: the output paths, counts (images, individuals per split, individuals left
        out), the body parts, the inferred flip pairs, the box rule.

    Raises:
        FileExistsError: an output file exists and ``overwrite`` is false.
        FileNotFoundError: the CSV, the image root or an image is missing.
        ValueError: a malformed CSV, fewer than two labelled images, a bad ``val_fraction``.
    """
    csv_file, image_root, out_dir = Path(csv_file), Path(image_root), Path(out_dir)
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if not csv_file.is_file():
        raise FileNotFoundError(f"label CSV {csv_file} not found")
    if not image_root.is_dir():
        raise FileNotFoundError(f"image root {image_root} does not exist or is not a folder")
    outputs = [out_dir / file for file in OUTPUT_FILES]
    existing = [str(path) for path in outputs if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); nothing was written "
                              "(--overwrite replaces them)")
    labels = read_dlc_csv(csv_file)
    train, val = _split(labels, val_fraction, seed)
    sizes = {position: _image_size(image_root, labels.images[position][0])
             for position in train + val}
    name = name or labels.scorer or "dlc"
    pairs = infer_flip_pairs(labels.bodyparts)
    spec = keypoint_spec_from_dict({
        "name": name, "keypoints": labels.bodyparts,
        "flip_pairs": [[labels.bodyparts[a], labels.bodyparts[b]] for a, b in pairs],
        "skeleton": []}, str(csv_file))
    out_dir.mkdir(parents=True, exist_ok=True)
    jsons = {split: _coco_json(labels, positions, sizes, name, csv_file.name)
             for split, positions in (("train", train), ("val", val))}
    for split, data in jsons.items():
        _write_atomically(out_dir / f"{split}.json", json.dumps(data))
    _write_atomically(out_dir / "keypoints.yaml", keypoint_spec_yaml(spec, header=(
        f"Keypoint set of {csv_file.name} (pose's DLC converter). Flip pairs were inferred from\n"
        "the names; add a skeleton (pairs of names) for drawing, and sigmas (one per keypoint,\n"
        "pycocotools units) to get OKS AP.")))
    return {
        "train": str(outputs[0]), "val": str(outputs[1]), "keypoints": str(outputs[2]),
        "images": {split: len(data["images"]) for split, data in jsons.items()},
        "individuals": {split: len(data["annotations"]) for split, data in jsons.items()},
        "unlabelled_images": sum(1 for _, individuals in labels.images if not individuals),
        "empty_individuals_skipped": labels.empty_individuals,
        "other_individuals_left_out": labels.other_individuals,
        "bodyparts": labels.bodyparts,
        "flip_pairs": describe_flip_pairs(labels.bodyparts, pairs),
        "boxes": (f"labelled keypoints' extent + {BOX_MARGIN:g} x its longer side on every side, "
                  f"each side at least {MIN_BOX_SIDE:g} px, clipped to the image"),
    }
