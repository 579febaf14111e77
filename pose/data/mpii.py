"""MPII Human Pose in the HRNet json layout, for top-down training and PCKh evaluation.

Dataset layout (see data/README.md)::

    <root>/annot/<split>.json      e.g. train.json, valid.json (a list of people)
    <root>/annot/gt_<split>.mat    optional: the official evaluation's ground truth (gt_valid.mat)
    <root>/images/<image>

Each person is ``{"image", "center": [x, y], "scale": s, "joints": [[x, y]] * 16,
"joints_vis": [0/1] * 16}`` in MPII's 1-based pixel coordinates (person height ~ ``s * 200``),
plus, in the files ``scripts/convert_mpii.py`` writes, ``"head_box": [[x1, y1], [x2, y2]]``.
As the official loader does, the centre moves down by ``15 * s``, the scale grows by 1.25 (the
crop then holds the whole person) and coordinates become 0-based.

PCKh needs head boxes: from ``gt_<split>.mat`` when present (the official evaluation's file; its
joints and visibilities are then the ones evaluated), else from the json's ``head_box``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pose.data.keypoints import MPII_KEYPOINTS, KeypointSpec
from pose.data.topdown import TopDownDataset
from pose.data.transforms import PIXEL_STD, AugmentationParams
from pose.evaluation.pckh import PckhGroundTruth

_LAYOUT_HELP = ("expected <root>/annot/<split>.json (HRNet's MPII json) with images in "
                "<root>/images/ (see data/README.md)")
# The official loader's centre shift (in units of the scale) and crop enlargement.
CENTER_SHIFT = 15.0
SCALE_FACTOR = 1.25
NUM_JOINTS = 16


def mpii_record(annotation: dict[str, Any], where: str) -> dict[str, Any]:
    """The official ``MPIIDataset._get_db`` record of one json person (0-based, shifted centre,
    enlarged square scale)."""
    try:
        center = np.array(annotation["center"], dtype=np.float64)
        scale_value = float(annotation["scale"])
        joints = np.array(annotation["joints"], dtype=np.float64)
        visible = np.array(annotation["joints_vis"], dtype=np.float64)
        image = str(annotation["image"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where} is not an MPII person ({{'image', 'center', 'scale', "
                         f"'joints', 'joints_vis'}}): {error!r}") from error
    if center.shape != (2,) or joints.shape != (NUM_JOINTS, 2) or visible.shape != (NUM_JOINTS,):
        raise ValueError(f"{where} must have a 2-value center, 16 joints [x, y] and 16 "
                         f"joints_vis, got shapes {center.shape}, {joints.shape}, "
                         f"{visible.shape}")
    not_finite = [name for name, values in (("center", center), ("joints", joints),
                                            ("joints_vis", visible))
                  if not np.isfinite(values).all()]
    if not_finite or not (np.isfinite(scale_value) and scale_value > 0):
        raise ValueError(f"{where} needs finite numbers (unlabelled joints are -1) and a "
                         f"positive scale; it has non-finite {', '.join(not_finite) or 'none'} "
                         f"and scale {scale_value}")
    scale = np.array([scale_value, scale_value])
    if center[0] != -1:
        center[1] = center[1] + CENTER_SHIFT * scale[1]
        scale = scale * SCALE_FACTOR
    center = center - 1
    return {"image": image, "center": center, "scale": scale, "joints": joints - 1,
            "visible": visible}


def read_mpii_gt_mat(path: str | Path) -> PckhGroundTruth:
    """The official evaluation's ground truth (``gt_valid.mat``: ``pos_gt_src`` 16x2xN 1-based,
    ``jnt_missing`` 16xN, ``headboxes_src`` 2x2xN), 0-based."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        contents = loadmat(str(path))
        joints = np.transpose(contents["pos_gt_src"], [2, 0, 1]).astype(np.float64) - 1
        missing = np.transpose(contents["jnt_missing"], [1, 0])
        head_boxes = np.transpose(contents["headboxes_src"], [2, 0, 1]).astype(np.float64) - 1
    except (KeyError, ValueError, OSError) as error:
        raise ValueError(f"{path} is not an MPII gt_*.mat file (pos_gt_src, jnt_missing, "
                         f"headboxes_src): {error!r}") from error
    return PckhGroundTruth(joints=joints, visible=(1 - missing.astype(np.int64)),
                           head_boxes=head_boxes, source=str(path))


class MpiiKeypoints(TopDownDataset):
    """MPII people (HRNet json layout), one item per annotated person; items as
    :class:`pose.data.topdown.TopDownDataset` gives them (crop, targets, augmentation).

    Args:
        root: dataset root (layout in the module docstring).
        split: annotation file name without ``.json`` (``"train"``, ``"valid"``).
        image_size, heatmap_size, sigma, train, augmentation, seed, reduced_decoding,
            device_augmentation, codec: see :class:`TopDownDataset`.
        keypoints: the 16-joint MPII layout.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        image_size: Sequence[int] = (256, 256),
        heatmap_size: Sequence[int] = (64, 64),
        sigma: float = 2.0,
        train: bool = False,
        *,
        keypoints: KeypointSpec = MPII_KEYPOINTS,
        augmentation: AugmentationParams | None = None,
        seed: int = 0,
        reduced_decoding: bool = False,
        device_augmentation: bool = False,
        codec: str = "heatmap",
    ) -> None:
        if keypoints.num_joints != NUM_JOINTS:
            raise ValueError(f"MPII has 16 joints, the keypoint layout {keypoints.name!r} "
                             f"{keypoints.num_joints}")
        self.skipped_annotations: dict[str, int] = {}  # every json person is used
        # The json gives no image sizes, which device augmentation needs (so it is refused
        # with a clear error) and reduced decoding needs (so it leaves every image as is).
        super().__init__(root, split, image_size, heatmap_size, sigma, train,
                         keypoints=keypoints, augmentation=augmentation, seed=seed,
                         reduced_decoding=reduced_decoding,
                         device_augmentation=device_augmentation, codec=codec)

    def _load_records(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"MPII root {self.root} does not exist or is not a folder; "
                                    f"{_LAYOUT_HELP}")
        self.annotation_file = self.root / "annot" / f"{self.split}.json"
        self.image_dir = self.root / "images"
        if not self.annotation_file.is_file():
            raise FileNotFoundError(f"MPII annotation file {self.annotation_file} not found; "
                                    f"{_LAYOUT_HELP}")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"MPII image folder {self.image_dir} not found; "
                                    f"{_LAYOUT_HELP}")
        try:
            with self.annotation_file.open() as handle:
                annotations = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{self.annotation_file} is not valid JSON: {error}") from error
        if not isinstance(annotations, list):
            raise ValueError(f"{self.annotation_file} must hold a JSON list of people, got "  # noqa: TRY004
                             f"{type(annotations).__name__}")
        self.annotations = annotations
        self.image_names = sorted({str(entry.get("image")) for entry in annotations
                                   if isinstance(entry, dict)})
        image_ids = {name: index for index, name in enumerate(self.image_names)}
        records = []
        for position, annotation in enumerate(annotations):
            if not isinstance(annotation, dict):
                raise ValueError(f"{self.annotation_file}: entry {position} is not a dict")  # noqa: TRY004
            record = mpii_record(annotation, f"{self.annotation_file}: entry {position}")
            records.append({
                "image_id": image_ids[record["image"]],
                "image_path": self.image_dir / record["image"],
                "center": record["center"], "scale": record["scale"],
                "joints": record["joints"], "visible": record["visible"],
                "score": 1.0, "area": float(np.prod(record["scale"] * PIXEL_STD)),
                "image_size": None,  # not in the json
            })
        return records

    def image_path(self, image_id: int) -> Path:
        """Where the image with (our, 0-based) id ``image_id`` is read from."""
        return self.image_dir / self.image_names[image_id]

    def pckh_ground_truth(self) -> PckhGroundTruth:
        """Joints, visibilities and head boxes for PCKh, in the order of the split's people.

        From ``<root>/annot/gt_<split>.mat`` when it exists (the official evaluation's file),
        else from the json (joints, joints_vis, head_box).

        Raises:
            ValueError: no head boxes (neither the .mat file nor ``head_box`` in the json), or
                a .mat file whose person count differs from the json's.
        """
        mat_file = self.root / "annot" / f"gt_{self.split}.mat"
        if mat_file.is_file():
            ground_truth = read_mpii_gt_mat(mat_file)
            if ground_truth.joints.shape[0] != len(self.records):
                raise ValueError(f"{mat_file} holds {ground_truth.joints.shape[0]} people but "
                                 f"{self.annotation_file} {len(self.records)}")
            return ground_truth
        missing = [position for position, annotation in enumerate(self.annotations)
                   if "head_box" not in annotation]
        if missing:
            raise ValueError(
                f"PCKh needs head boxes: {mat_file} does not exist and entry {missing[0]} of "
                f"{self.annotation_file} has no 'head_box' (write the json with "
                "scripts/convert_mpii.py, or put the official gt_valid.mat beside it)")
        for position, annotation in enumerate(self.annotations):
            try:
                box = np.asarray(annotation["head_box"], dtype=np.float64)
            except (TypeError, ValueError):
                box = None
            if box is None or box.shape != (2, 2) or not np.isfinite(box).all():
                raise ValueError(f"{self.annotation_file}: entry {position} has head_box "
                                 f"{annotation['head_box']!r}, expected [[x1, y1], [x2, y2]]")
        head_boxes = np.array([annotation["head_box"] for annotation in self.annotations],
                              dtype=np.float64)
        return PckhGroundTruth(
            joints=np.stack([record["joints"] for record in self.records]),
            visible=np.stack([record["visible"] for record in self.records]).astype(np.int64),
            head_boxes=head_boxes - 1, source=str(self.annotation_file))
