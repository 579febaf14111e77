"""Random COCO keypoint ground truth and results (no images), for the equality tests of
:mod:`pose.evaluation.coco_eval` against pycocotools and for ``scripts/bench_eval.py``.

The sets exercise every rule of the evaluation: people of every area range (and exactly on the
range borders), crowd regions, annotations with ``num_keypoints`` 0 (some of them with labelled
joints all the same, some labelled people whose joints are all unlabelled), images without
people, images without results, dropped people, near-duplicates, false positives, more than 20
results in an image, and tied scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RandomSetParams:
    """How a random evaluation set is drawn (the defaults are a small, hard set)."""

    num_images: int = 40
    num_keypoints: int = 17
    mean_people: float = 1.6  # Poisson mean of annotated people per image
    empty_image_share: float = 0.15  # images with no annotation at all
    crowd_share: float = 0.04  # annotations that are crowd regions
    zero_keypoint_share: float = 0.15  # people with num_keypoints 0
    drop_share: float = 0.15  # people without a result
    duplicate_share: float = 0.3  # people with a second, near-duplicate result
    mean_false_positives: float = 1.0  # Poisson mean of false positives per image
    crowded_image_share: float = 0.05  # images that get 15-30 extra false positives
    no_result_image_share: float = 0.1  # images whose results are all dropped
    score_levels: int | None = None  # scores rounded to this many levels (ties); None: none
    results_with_bbox: bool = False  # results carry a "bbox" (loadRes then takes its area)
    # Some annotations whose num_keypoints disagrees with their labelled joints (pycocotools
    # trusts the field; xtcocotools counts the joints).
    inconsistent_counts: bool = True


def _person(rng: np.random.Generator, num_keypoints: int, width: float, height: float
            ) -> tuple[list[float], list[float], float]:
    """A random box (x, y, w, h), keypoints [x, y, v] * K inside it, and an area."""
    side = float(np.exp(rng.uniform(np.log(12.0), np.log(420.0))))
    aspect = rng.uniform(0.4, 1.6)
    box_w, box_h = side * np.sqrt(aspect), side / np.sqrt(aspect)
    x = rng.uniform(-0.1 * box_w, max(width - 0.9 * box_w, 1.0))
    y = rng.uniform(-0.1 * box_h, max(height - 0.9 * box_h, 1.0))
    points = np.stack([x + rng.uniform(0, box_w, num_keypoints),
                       y + rng.uniform(0, box_h, num_keypoints)], axis=1)
    visibility = rng.choice([0, 1, 2], size=num_keypoints, p=[0.25, 0.15, 0.6])
    roll = rng.random()
    if roll < 0.05:  # an area exactly on a range border
        area = float(rng.choice([32 ** 2, 96 ** 2]))
    elif roll < 0.08:  # integer coordinates and area
        points, area = np.round(points), float(round(box_w * box_h * 0.7))
    else:
        area = float(box_w * box_h * rng.uniform(0.45, 0.9))
    keypoints = np.concatenate([points, visibility[:, None]], axis=1)
    keypoints[visibility == 0] = 0.0
    return keypoints.reshape(-1).tolist(), [float(x), float(y), float(box_w), float(box_h)], area


def _noisy(rng: np.random.Generator, keypoints: list[float], box: list[float], area: float
           ) -> tuple[np.ndarray, float]:
    """A prediction of a person: its labelled joints plus noise, the others somewhere in its box;
    and the relative noise (of the person's size)."""
    truth = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    relative_noise = float(rng.choice([0.01, 0.04, 0.1, 0.3]))
    noise = relative_noise * np.sqrt(max(area, 1.0))
    prediction = truth[:, :2] + rng.normal(0, noise, size=(len(truth), 2))
    unlabelled = truth[:, 2] == 0
    prediction[unlabelled, 0] = box[0] + rng.uniform(0, box[2], int(unlabelled.sum()))
    prediction[unlabelled, 1] = box[1] + rng.uniform(0, box[3], int(unlabelled.sum()))
    return prediction, relative_noise


def random_keypoint_eval_set(seed: int | np.random.Generator,
                             params: RandomSetParams | None = None
                             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A random COCO keypoint ground truth (dict) and a results list for it.

    Returns:
        ``(ground_truth, results)``: the ground truth has ``images``, ``annotations`` (with
        ``id``, ``image_id``, ``category_id`` 1, ``keypoints``, ``num_keypoints``, ``area``,
        ``bbox``, ``iscrowd``) and ``categories``; the results are dicts with ``image_id``,
        ``category_id``, ``keypoints`` ([x, y, score] * K) and ``score``. Pixels throughout.
    """
    params = params or RandomSetParams()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_index in range(params.num_images):
        image_id = 1000 + 7 * image_index  # not consecutive, not starting at 0 or 1
        width, height = float(rng.integers(200, 700)), float(rng.integers(200, 700))
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": int(width),
                       "height": int(height)})
        image_people = _image_annotations(rng, params, image_id, width, height,
                                          first_id=len(annotations) + 1)
        annotations.extend(image_people)
        if rng.random() < params.no_result_image_share:
            continue
        results.extend(_image_results(rng, params, image_id, image_people, width, height))
    order = rng.permutation(len(results))  # results of an image need not be together
    results = [results[index] for index in order]
    categories = [{"id": 1, "name": "person", "supercategory": "person",
                   "keypoints": [f"joint_{k}" for k in range(params.num_keypoints)],
                   "skeleton": []}]
    ground_truth = {"info": {"description": "random keypoint evaluation set"}, "licenses": [],
                    "images": images, "annotations": annotations, "categories": categories}
    return ground_truth, results


def _image_annotations(rng: np.random.Generator, params: RandomSetParams, image_id: int,
                       width: float, height: float, first_id: int) -> list[dict[str, Any]]:
    """The annotations of one image (ids from ``first_id``): none, people, crowd regions and
    people with ``num_keypoints`` 0."""
    num_keypoints = params.num_keypoints
    people = 0 if rng.random() < params.empty_image_share else int(
        rng.poisson(params.mean_people))
    annotations = []
    for _ in range(people):
        keypoints, box, area = _person(rng, num_keypoints, width, height)
        num_labelled = sum(1 for v in keypoints[2::3] if v > 0)
        crowd = rng.random() < params.crowd_share
        if crowd:
            keypoints, num_labelled = [0.0] * (3 * num_keypoints), 0
            area = box[2] * box[3] * 4
        elif rng.random() < params.zero_keypoint_share:
            if not params.inconsistent_counts or rng.random() < 0.7:
                keypoints = [0.0] * (3 * num_keypoints)  # as COCO: no joint labelled
            num_labelled = 0  # else labelled joints, yet num_keypoints 0 (ignored anyway)
        elif params.inconsistent_counts and num_labelled and rng.random() < 0.02:
            keypoints = [0.0] * (3 * num_keypoints)  # counted, but no joint labelled
        annotations.append({"id": first_id + len(annotations), "image_id": image_id,
                            "category_id": 1, "keypoints": keypoints,
                            "num_keypoints": num_labelled, "area": area, "bbox": box,
                            "iscrowd": int(crowd)})
    return annotations


def _image_results(rng: np.random.Generator, params: RandomSetParams, image_id: int,
                   people: list[dict[str, Any]], width: float, height: float
                   ) -> list[dict[str, Any]]:
    """The results of one image: noisy predictions of most ``people`` (some twice), then false
    positives."""
    poses: list[tuple[np.ndarray, float]] = []
    for person in people:
        if person["iscrowd"] and rng.random() < 0.5:
            continue
        if rng.random() < params.drop_share:
            continue
        prediction, relative_noise = _noisy(rng, person["keypoints"], person["bbox"],
                                            person["area"])
        # Better predictions tend to score higher, as a detector's do.
        score = float(rng.uniform(0.2, 1.0) * (1.0 - relative_noise))
        poses.append((prediction, score))
        if rng.random() < params.duplicate_share:
            duplicate = prediction + rng.normal(0, 2.0, size=prediction.shape)
            poses.append((duplicate, score * float(rng.choice([1.0, rng.uniform(0.3, 1)]))))
    false_positives = int(rng.poisson(params.mean_false_positives))
    if rng.random() < params.crowded_image_share:
        false_positives += int(rng.integers(15, 30))
    for _ in range(false_positives):
        keypoints, box, area = _person(rng, params.num_keypoints, width, height)
        prediction, _ = _noisy(rng, keypoints, box, area)
        poses.append((prediction, float(rng.uniform(0.01, 0.6))))
    results = []
    for prediction, score in poses:
        if params.score_levels:
            score = round(score * params.score_levels) / params.score_levels
        joint_scores = rng.uniform(0, 1, size=(params.num_keypoints, 1))
        entry = {"image_id": image_id, "category_id": 1,
                 "keypoints": np.concatenate([prediction, joint_scores], axis=1)
                 .reshape(-1).tolist(), "score": score}
        if params.results_with_bbox:
            low, high = prediction.min(axis=0), prediction.max(axis=0)
            entry["bbox"] = [float(low[0]), float(low[1]), float(high[0] - low[0]),
                             float(high[1] - low[1]) * 1.1]
        results.append(entry)
    return results
