"""Synthetic data, drawn with numpy and OpenCV: the embedded COCO-format datasets (people, and
the non-human example: quadrupeds) and the MPII one (for the demos, smoke runs and tests), and
random COCO evaluation sets (for tests and benchmarks).

Modules, from the bottom up: ``figures`` (shapes, figures, colours, shared geometry and paint
order), ``human`` (the person with COCO's 17 joints: pose and body parts), ``quadruped`` (the
four-legged animal with AP-10K's 17 keypoints), ``rendering`` (painting, the part buffer,
background and finish), ``scenes`` (people or other figures and occluders drawn at random,
rendered), ``annotation`` (labels read off the rendered pixels, simulated detections), ``coco``
and ``mpii`` (the dataset writers), ``results`` (random evaluation sets, without images).
"""

from __future__ import annotations

from pose.synthetic.annotation import annotate_scene, box_iou, simulate_detections
from pose.synthetic.coco import (
    DEFAULT_JPEG_QUALITY,
    DETECTIONS_FILE,
    SUBJECTS,
    generate_coco_dataset,
    image_id_for,
    image_rng,
)
from pose.synthetic.figures import PersonFigure, Primitive
from pose.synthetic.human import NUM_PARTS, PART_NAMES, sample_person
from pose.synthetic.mpii import coco_person_to_mpii, generate_mpii_dataset
from pose.synthetic.quadruped import QUADRUPED_KEYPOINTS, sample_quadruped
from pose.synthetic.rendering import BACKGROUND_ID, MAX_PEOPLE, OCCLUDER_ID
from pose.synthetic.results import RandomSetParams, random_keypoint_eval_set
from pose.synthetic.scenes import Scene, SceneParams, render_scene, sample_scene

__all__ = [
    "BACKGROUND_ID",
    "DEFAULT_JPEG_QUALITY",
    "DETECTIONS_FILE",
    "MAX_PEOPLE",
    "NUM_PARTS",
    "OCCLUDER_ID",
    "PART_NAMES",
    "QUADRUPED_KEYPOINTS",
    "SUBJECTS",
    "PersonFigure",
    "Primitive",
    "RandomSetParams",
    "Scene",
    "SceneParams",
    "annotate_scene",
    "box_iou",
    "coco_person_to_mpii",
    "generate_coco_dataset",
    "generate_mpii_dataset",
    "image_id_for",
    "image_rng",
    "random_keypoint_eval_set",
    "render_scene",
    "sample_person",
    "sample_quadruped",
    "sample_scene",
    "simulate_detections",
]
