"""The embedded dataset: synthetic COCO-format person keypoints, drawn with numpy and OpenCV.

Nothing is downloaded. Each image holds 1 to 4 cartoon people on a textured background, each an
articulated figure with the 17 COCO joints (:data:`pose.data.keypoints.COCO_KEYPOINTS`): a 3-D
stick skeleton with anthropometric proportions and a random pose (arms from down to overhead,
elbows and knees bending one way, walking, crouching), turned to face the camera, the side or away
from it, projected orthographically, rotated in the image plane, scaled and placed (sometimes
partly outside the image). Its body parts (torso, neck, head with hair, eyes, ears and nose,
tapered limbs, hands, feet) are painted far to near, so that the far arm and leg of a person seen
from the side are hidden by the torso; later people and occluders hide earlier ones.

Every part is painted into the image and, with its own id, into a part buffer. A joint is
*visible* (COCO ``v = 2``) if the pixel at the joint still shows one of the parts that the joint
belongs to (the elbow: upper arm or forearm; the left eye: the left eye's dot), *labelled but
occluded* (``v = 1``) if something else is drawn there (an occluder, another person, the torso
over the far shoulder, the head over the far eye), and *not labelled* (``v = 0``, stored as
``0, 0, 0`` as in COCO) if it lies outside the image.

Coordinates follow the rest of ``pose``: 0-based pixels whose centres are at integer coordinates
(OpenCV's convention), so a joint at ``(x, y)`` lies in pixel ``(round(x), round(y))``; the image
holds the joints with ``0 <= x <= width - 1`` and ``0 <= y <= height - 1``. A box
``[x, y, w, h]`` covers the pixel columns ``x .. x + w - 1`` and rows ``y .. y + h - 1`` (as the
official HRNet box cleaning reads it).

How often the hard cases occur (crowds, people facing away, upside down, crouching, occluders,
background clutter) is set by :class:`SceneParams`.

The same seed gives byte-identical images and JSON: every image draws from its own generator
``numpy.random.default_rng([seed, split_code, image_index])`` (:func:`image_rng`) and the
background, lighting and noise are drawn again from seeds stored in the :class:`Scene`, so a
scene can be re-rendered, for example with some of its parts repainted (:func:`render_scene`),
which is how the tests check the visibility flags against the pixels.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pose.data.keypoints import COCO_KEYPOINTS
from pose.data.transforms import PIXEL_STD

# Body parts, each painted with its own id into the part buffer.
PART_NAMES: tuple[str, ...] = (
    "torso", "neck", "head", "left_eye", "right_eye", "left_ear", "right_ear", "nose",
    "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm",
    "left_hand", "right_hand", "left_thigh", "right_thigh", "left_shin", "right_shin",
    "left_foot", "right_foot",
)
NUM_PARTS = len(PART_NAMES)
MAX_PEOPLE = 4
# Part buffer values: 0 background, 1 + person * NUM_PARTS + part for a body part, OCCLUDER_ID
# for an occluder (a uint8 buffer holds 4 people of 20 parts).
BACKGROUND_ID = 0
OCCLUDER_ID = 255
SPLIT_CODES = {"train2017": 0, "val2017": 1}
DETECTIONS_FILE = "person_detections_val2017.json"
DEFAULT_JPEG_QUALITY = 92

_PART = {name: index for index, name in enumerate(PART_NAMES)}
# The parts a joint belongs to: the joint is visible where one of them shows at its pixel. The
# torso counts for a shoulder or hip only on the near side (see _sample_person).
_JOINT_PARTS: dict[str, tuple[str, ...]] = {"nose": ("nose",)}
for _side in ("left", "right"):
    _JOINT_PARTS.update({
        f"{_side}_eye": (f"{_side}_eye",),
        f"{_side}_ear": (f"{_side}_ear",),
        f"{_side}_shoulder": (f"{_side}_upper_arm",),
        f"{_side}_elbow": (f"{_side}_upper_arm", f"{_side}_forearm"),
        f"{_side}_wrist": (f"{_side}_forearm", f"{_side}_hand"),
        f"{_side}_hip": (f"{_side}_thigh",),
        f"{_side}_knee": (f"{_side}_thigh", f"{_side}_shin"),
        f"{_side}_ankle": (f"{_side}_shin", f"{_side}_foot"),
    })

# Skin tones (RGB), jittered per person.
_SKIN_TONES_RGB = (
    (255, 224, 196), (241, 194, 150), (224, 172, 125), (198, 134, 90), (160, 105, 65),
    (120, 75, 45), (90, 56, 36),
)
_HAIR_COLOURS_RGB = (
    (20, 16, 14), (60, 40, 25), (110, 75, 40), (200, 170, 110), (150, 150, 150), (130, 50, 30),
)
_SHIFT_BITS = 4  # OpenCV drawing with 1/16-pixel precision
_SHIFT_SCALE = 1 << _SHIFT_BITS


# --------------------------------------------------------------------------------------------
# Scene description


@dataclass(frozen=True)
class SceneParams:
    """How hard the scenes are: the shares of the difficult cases.

    ``people_weights``: relative frequency of 1, 2, 3 and 4 people per image;
    ``facing_camera_share``: people turned at most about 50 degrees from the camera (yaw drawn
    from N(0, 25 deg)); the others face any direction (profiles, backs);
    ``upright_share``: people rotated in the image plane within +-30 degrees; the others by any
    angle; ``crouching_share``: people crouching; ``occluder_weights``: relative frequency of 0,
    1, 2, ... occluders per image; ``max_background_shapes``: up to this many random shapes on
    the background; ``far_side_shade``: brightness factor of the limbs on the far side.
    """

    # The defaults keep every hard case present but not dominant, so that the CPU demo's small
    # HRNet learns the task within minutes (harder settings train markedly slower).
    people_weights: tuple[float, ...] = (0.5, 0.3, 0.15, 0.05)
    facing_camera_share: float = 0.8
    upright_share: float = 0.95
    crouching_share: float = 0.1
    occluder_weights: tuple[float, ...] = (0.8, 0.2)
    max_background_shapes: int = 6
    far_side_shade: float = 0.7

    def __post_init__(self) -> None:
        if not 1 <= len(self.people_weights) <= MAX_PEOPLE or min(self.people_weights) < 0:
            raise ValueError(f"people_weights must be 1 to {MAX_PEOPLE} non-negative weights for "
                             f"1, 2, ... people, got {self.people_weights}")
        if not self.occluder_weights or min(self.occluder_weights) < 0:
            raise ValueError(f"occluder_weights must be non-negative weights for 0, 1, ... "
                             f"occluders, got {self.occluder_weights}")
        for name in ("facing_camera_share", "upright_share", "crouching_share", "far_side_shade"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class Primitive:
    """One filled shape of a body part or an occluder, in image pixels (centres at integers).

    ``kind`` is ``"capsule"`` (``points`` [2, 2] ends, ``radii`` (r0, r1): a tapered thick
    segment with round ends), ``"polygon"`` (``points`` [n, 2], convex), ``"circle"``
    (``points`` [1, 2], ``radii`` (r,)), ``"ellipse"`` (``points`` [1, 2] centre, ``radii`` (a, b)
    half-axes, ``angles`` (rotation, start, end) in degrees, clockwise as displayed: a sector).
    ``part`` is an index into :data:`PART_NAMES` (-1 for an occluder); ``colour`` is BGR.
    """

    kind: str
    part: int
    points: np.ndarray
    colour: tuple[int, int, int]
    radii: tuple[float, ...] = ()
    angles: tuple[float, float, float] = (0.0, 0.0, 360.0)


@dataclass
class PersonFigure:
    """One drawn person.

    ``keypoints`` float64 [17, 2]: every joint's image position in pixels (also outside the
    image); ``primitives``: body parts in paint order (far to near); ``joint_parts``: per joint,
    the part ids that make it visible; ``height_px``: standing height in pixels.
    """

    keypoints: np.ndarray
    primitives: list[Primitive]
    joint_parts: list[tuple[int, ...]]
    height_px: float


@dataclass
class Scene:
    """Everything needed to render one image: people in paint order, then occluders.

    ``image_size`` is (width, height) in pixels; ``background_seed`` and ``finish_seed`` seed the
    background texture and the lighting, noise and blur, so a scene renders identically every time.
    """

    image_size: tuple[int, int]
    people: list[PersonFigure]
    occluders: list[Primitive] = field(default_factory=list)
    background_seed: int = 0
    finish_seed: int = 0
    params: SceneParams = field(default_factory=SceneParams)


# --------------------------------------------------------------------------------------------
# Geometry helpers


def _rotation_y(angle: float) -> np.ndarray:
    """Rotation about the body's vertical axis, [3, 3] (angle in radians)."""
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cos, 0.0, sin], [0.0, 1.0, 0.0], [-sin, 0.0, cos]])


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def _bend(direction: np.ndarray, towards: np.ndarray, angle: float) -> np.ndarray:
    """``direction`` turned by ``angle`` radians in the plane that contains ``towards``."""
    perpendicular = towards - np.dot(towards, direction) * direction
    if np.linalg.norm(perpendicular) < 1e-6:
        perpendicular = np.array([0.0, 0.0, 1.0]) - direction[2] * direction
    return math.cos(angle) * direction + math.sin(angle) * _unit(perpendicular)


def _jitter_colour(rng: np.random.Generator, rgb: Sequence[int], amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float64) + rng.normal(0.0, amount, 3), 0, 255)


def _bgr(rgb: np.ndarray, brightness: float = 1.0) -> tuple[int, int, int]:
    red, green, blue = np.clip(np.asarray(rgb) * brightness, 0, 255).round().astype(int)
    return int(blue), int(green), int(red)


def _random_rgb(rng: np.random.Generator) -> np.ndarray:
    """A random clothing or object colour: any hue, mostly not too pale or too dark."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(40, 256), rng.integers(40, 240)]]],
                   dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


# --------------------------------------------------------------------------------------------
# People


@dataclass
class _Pose:
    """A posed body of standing height 1 in the body frame: origin between the hips, X to the
    person's left, Y down, Z forward (towards the camera when the person faces it).

    ``points``: name -> [3] for the body joints (the face is added by :func:`_face_points`) and
    the extra points that the drawing needs (``mid_shoulder``, ``head_center``, ``*_hand``,
    ``*_toe``); ``torso_corners`` [8, 3]; ``head_yaw`` in radians relative to the body;
    ``build`` the width factor of the body and limbs.
    """

    points: dict[str, np.ndarray]
    torso_corners: np.ndarray
    head_radius: float
    head_yaw: float
    build: float


def _sample_pose(rng: np.random.Generator, crouching_share: float) -> _Pose:
    """A random body: anthropometric proportions (shoulder width 0.245, upper arm 0.19, forearm
    0.15, thigh 0.245, shin 0.25 of the height, each +-6%) and a random pose."""
    build = rng.uniform(0.88, 1.15)  # width factor: slim to broad

    def length(nominal: float) -> float:
        return nominal * rng.uniform(0.94, 1.06)

    shoulder_half_width = 0.5 * length(0.245) * build
    hip_half_width = 0.5 * length(0.17) * build
    crouching = rng.random() < crouching_share
    lean = math.radians(rng.uniform(20, 50) if crouching else rng.normal(5, 10))
    side_bend = math.radians(rng.normal(0, 6))
    twist = math.radians(rng.normal(0, 12))
    spine = _unit(np.array([math.sin(side_bend), -math.cos(lean), math.sin(lean)]))
    points: dict[str, np.ndarray] = {}
    mid_shoulder = spine * length(0.30)
    points["mid_shoulder"] = mid_shoulder
    shoulder_axis = _rotation_y(twist) @ np.array([1.0, 0.0, 0.0])
    points["left_shoulder"] = mid_shoulder + shoulder_half_width * shoulder_axis
    points["right_shoulder"] = mid_shoulder - shoulder_half_width * shoulder_axis
    points["left_hip"] = np.array([hip_half_width, 0.0, 0.0])
    points["right_hip"] = np.array([-hip_half_width, 0.0, 0.0])

    head_radius = 0.065 * rng.uniform(0.92, 1.08)
    neck_direction = _unit(spine + rng.normal(0, 0.15, 3) * np.array([1.0, 0.3, 1.0]))
    points["head_center"] = mid_shoulder + neck_direction * (0.055 + head_radius)

    # Arms: the upper arm's elevation from hanging down (0) to overhead (pi) and its azimuth from
    # sideways (0) through forward (pi / 2); the elbow bends the forearm forwards and up.
    upper_arm, forearm = length(0.19), length(0.15)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        band = rng.choice(3, p=(0.5, 0.3, 0.2))
        elevation = math.radians(rng.uniform(*((3, 45), (45, 110), (110, 178))[band]))
        azimuth = math.radians(rng.uniform(-40, 130))
        upper = np.array([sign * math.sin(elevation) * math.cos(azimuth), math.cos(elevation),
                          math.sin(elevation) * math.sin(azimuth)])
        upper = _rotation_y(twist) @ upper
        flexion = math.radians(rng.uniform(0, 40) if rng.random() < 0.6 else rng.uniform(40, 150))
        towards = np.array([-sign * rng.uniform(-0.3, 1.0), -rng.uniform(-0.5, 1.5), 1.0])
        lower = _bend(upper, _rotation_y(twist) @ towards, flexion)
        shoulder = points[f"{side}_shoulder"]
        points[f"{side}_elbow"] = shoulder + upper_arm * upper
        points[f"{side}_wrist"] = points[f"{side}_elbow"] + forearm * lower
        points[f"{side}_hand"] = points[f"{side}_wrist"] + 0.035 * lower

    # Legs: hip flexion (forward), abduction (outward); the knee bends the shin backwards.
    thigh, shin = length(0.245), length(0.25)
    stride = rng.uniform(0, 25) if rng.random() < 0.6 else 0.0
    base_flexion = rng.uniform(55, 105) if crouching else rng.normal(3, 8)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        hip_flexion = base_flexion + sign * stride + rng.normal(0, 5)
        if not crouching and rng.random() < 0.08:  # a kick or a step up
            hip_flexion = rng.uniform(30, 100)
        hip_flexion = math.radians(hip_flexion)
        abduction = math.radians(rng.uniform(-4, 12) if rng.random() < 0.75 else rng.uniform(12, 40))
        upper = np.array([sign * math.sin(abduction), math.cos(abduction) * math.cos(hip_flexion),
                          math.cos(abduction) * math.sin(hip_flexion)])
        if crouching:
            knee_flexion = rng.uniform(85, 140)
        elif hip_flexion > math.radians(25):
            knee_flexion = rng.uniform(20, 120)
        else:
            knee_flexion = rng.uniform(0, 20) if rng.random() < 0.8 else rng.uniform(20, 80)
        lower = _bend(upper, np.array([0.0, 0.0, -1.0]), math.radians(knee_flexion))
        hip = points[f"{side}_hip"]
        points[f"{side}_knee"] = hip + thigh * upper
        points[f"{side}_ankle"] = points[f"{side}_knee"] + shin * lower
        foot_direction = _unit(np.array([sign * rng.uniform(0.0, 0.3), 0.25, 1.0]))
        points[f"{side}_toe"] = points[f"{side}_ankle"] + length(0.10) * foot_direction

    # The torso's outline: a box from the shoulders (chest depth) to the hips (pelvis depth).
    corners = []
    for sign in (1.0, -1.0):
        for depth in (0.055 * build, -0.055 * build):
            corners.append(mid_shoulder + sign * 1.08 * shoulder_half_width * shoulder_axis
                           + np.array([0.0, 0.015, depth]))
            corners.append(np.array([sign * 1.3 * hip_half_width, 0.03, 0.8 * depth]))
    head_yaw = math.radians(float(np.clip(rng.normal(0, 20), -50, 50)))
    return _Pose(points=points, torso_corners=np.array(corners), head_radius=head_radius,
                 head_yaw=head_yaw, build=float(build))


def _face_points(head_radius: float, head_yaw: float) -> dict[str, np.ndarray]:
    """Eyes, ears and nose relative to the head centre in the body frame (units of height)."""
    local = {
        "left_eye": (0.38, -0.08, 0.92), "right_eye": (-0.38, -0.08, 0.92),
        "left_ear": (0.98, 0.05, -0.12), "right_ear": (-0.98, 0.05, -0.12),
        "nose": (0.0, 0.28, 1.05),
    }
    turn = _rotation_y(head_yaw)
    return {name: head_radius * (turn @ np.array(offset)) for name, offset in local.items()}


def _sample_person(
    rng: np.random.Generator, height_px: float, image_size: tuple[int, int], params: SceneParams
) -> PersonFigure:
    """A person of standing height ``height_px``, posed, turned, rotated and placed in the image."""
    width, height = image_size
    body = _sample_pose(rng, params.crouching_share)
    pose = body.points
    head_radius, head_yaw = body.head_radius, body.head_yaw
    head_center = pose["head_center"]
    for name, offset in _face_points(head_radius, head_yaw).items():
        pose[name] = head_center + offset
    pose["head_top"] = head_center + np.array([0.0, -head_radius, 0.0])

    # Facing: mostly towards the camera, otherwise any direction (profiles and backs).
    yaw = math.radians(rng.normal(0, 25) if rng.random() < params.facing_camera_share
                       else rng.uniform(-180, 180))
    roll = math.radians(rng.uniform(-30, 30) if rng.random() < params.upright_share
                        else rng.uniform(-180, 180))
    cos_roll, sin_roll = math.cos(roll), math.sin(roll)
    in_plane = np.array([[cos_roll, -sin_roll], [sin_roll, cos_roll]]) * height_px
    names = list(pose)
    turned = np.concatenate([np.stack([pose[name] for name in names]), body.torso_corners])
    turned = turned @ _rotation_y(yaw).T
    offsets = turned[:, :2] @ in_plane.T  # pixels, before placement
    depth = dict(zip(names, turned[:, 2].tolist(), strict=False))  # body heights, + = nearer
    joint_rows = [names.index(name) for name in COCO_KEYPOINTS.joint_names]

    # Placement: fully inside the image when it fits (mostly), otherwise anywhere near it, with
    # at least 5 joints in the image.
    margin = 0.04 * height_px
    low = offsets.min(axis=0) - margin
    high = offsets.max(axis=0) + margin
    size = np.array([width - 1, height - 1], dtype=np.float64)
    translation = size / 2 - (low + high) / 2
    for attempt in range(20):
        fits = np.all(high - low < size)
        if fits and (attempt == 19 or rng.random() < 0.8):
            translation = rng.uniform(-low, size - high)
        elif attempt == 19:
            translation = rng.uniform(np.minimum(-low, size - high), np.maximum(-low, size - high))
        else:
            translation = rng.uniform(-0.15 * size, 1.15 * size) - (low + high) / 2
        joints = offsets[joint_rows] + translation
        inside = np.all((joints >= 0) & (joints <= size), axis=1)
        if inside.sum() >= 5:
            break
    positions = offsets + translation
    at = dict(zip(names, positions, strict=False))  # name -> image position [2] in pixels

    # Colours (RGB): the same on both sides, so left and right differ only by geometry.
    skin = _jitter_colour(rng, _SKIN_TONES_RGB[rng.integers(len(_SKIN_TONES_RGB))], 8)
    hair = _jitter_colour(rng, _HAIR_COLOURS_RGB[rng.integers(len(_HAIR_COLOURS_RGB))], 10)
    shirt, trousers = _random_rgb(rng), _random_rgb(rng)
    shoes = _jitter_colour(rng, (40, 35, 30), 20) if rng.random() < 0.7 else _random_rgb(rng)
    long_sleeves, long_trousers = rng.random() < 0.5, rng.random() < 0.7
    bald = rng.random() < 0.1

    radius_scale = height_px * body.build
    primitives: list[tuple[float, int, Primitive]] = []  # (depth key, order, primitive)

    def add(key: float, primitive: Primitive) -> None:
        primitives.append((key, len(primitives), primitive))

    def add_capsule(part: str, start: str, end: str, widths: tuple[float, float],
                    rgb: np.ndarray, key: float | None = None) -> float:
        """A limb segment painted at its mean depth (or at ``key``); returns the key."""
        if key is None:
            key = 0.5 * (depth[start] + depth[end])
        shade = params.far_side_shade if key < -0.03 else 1.0  # the far side is in shadow
        add(key, Primitive("capsule", _PART[part], np.stack([at[start], at[end]]),
                           _bgr(rgb, shade), radii=(0.5 * widths[0] * radius_scale,
                                                    0.5 * widths[1] * radius_scale)))
        return key

    # The torso at depth 0, the neck just behind it, limbs at their mean depth, hands and feet
    # just in front of their forearm and shin.
    hull = cv2.convexHull(positions[len(names):].astype(np.float32))[:, 0, :]
    add(0.0, Primitive("polygon", _PART["torso"], hull.astype(np.float64), _bgr(shirt)))
    add(-0.02, Primitive("capsule", _PART["neck"], np.stack([at["mid_shoulder"],
                                                             at["head_center"]]),
                         _bgr(skin, 0.92), radii=(0.028 * radius_scale, 0.024 * radius_scale)))
    for side in ("left", "right"):
        sleeve = shirt if long_sleeves else skin
        key = add_capsule(f"{side}_upper_arm", f"{side}_shoulder", f"{side}_elbow",
                          (0.062, 0.048), shirt)
        key = max(key, add_capsule(f"{side}_forearm", f"{side}_elbow", f"{side}_wrist",
                                   (0.046, 0.034), sleeve))
        add_capsule(f"{side}_hand", f"{side}_wrist", f"{side}_hand", (0.042, 0.05), skin,
                    key + 0.001)
        legging = trousers if long_trousers else skin
        key = add_capsule(f"{side}_thigh", f"{side}_hip", f"{side}_knee", (0.095, 0.062),
                          trousers)
        key = max(key, add_capsule(f"{side}_shin", f"{side}_knee", f"{side}_ankle",
                                   (0.058, 0.042), legging))
        add_capsule(f"{side}_foot", f"{side}_ankle", f"{side}_toe", (0.045, 0.04), shoes,
                    key + 0.001)

    # Head: skin disc, hair cap towards the back of the head, then the face features that turn
    # towards the camera (eyes and nose) and the ears that are not behind the head.
    head_key = depth["head_center"] + 0.01
    radius_px = head_radius * height_px
    head_at = at["head_center"][None]
    add(head_key, Primitive("circle", _PART["head"], head_at, _bgr(skin), radii=(radius_px,)))
    face_yaw = yaw + head_yaw
    facing_x = math.sin(face_yaw)  # where the face points in the image, before the roll
    if not bald:
        if math.cos(face_yaw) < -0.35:
            start, end = 0.0, 360.0
        else:
            centre_angle = 270.0 - 55.0 * facing_x + math.degrees(roll)
            half_span = 85.0 + 25.0 * abs(facing_x)
            start, end = centre_angle - half_span, centre_angle + half_span
        add(head_key + 1e-4, Primitive("ellipse", _PART["head"], head_at, _bgr(hair),
                                       radii=(1.04 * radius_px, 1.04 * radius_px),
                                       angles=(0.0, start, end)))
    dark = _jitter_colour(rng, (35, 25, 20), 8)
    for name, threshold, size, rgb in (
        ("left_ear", -0.45, 0.24, skin * 0.85), ("right_ear", -0.45, 0.24, skin * 0.85),
        ("left_eye", 0.3, 0.14, dark), ("right_eye", 0.3, 0.14, dark),
        ("nose", 0.15, 0.15, skin * 0.72),
    ):
        if (depth[name] - depth["head_center"]) / head_radius > threshold:
            add(head_key + 2e-4, Primitive("circle", _PART[name], at[name][None], _bgr(rgb),
                                           radii=(max(1.0, size * radius_px),)))
    primitives.sort(key=lambda item: (item[0], item[1]))

    # The torso shows a shoulder or hip only on the near side (a person seen from the side hides
    # the far shoulder behind the chest).
    joint_parts = []
    for name in COCO_KEYPOINTS.joint_names:
        parts = [_PART[part] for part in _JOINT_PARTS[name]]
        if name.endswith(("shoulder", "hip")) and depth[name] >= -0.6 * abs(float(pose[name][0])):
            parts.append(_PART["torso"])
        joint_parts.append(tuple(parts))
    return PersonFigure(keypoints=positions[joint_rows], primitives=[item[2] for item in primitives],
                        joint_parts=joint_parts, height_px=float(height_px))


def _sample_occluder(rng: np.random.Generator, person: PersonFigure) -> Primitive:
    """A rectangle, ellipse or blob placed over a random joint of ``person``."""
    centre = person.keypoints[rng.integers(len(person.keypoints))]
    size = person.height_px * rng.uniform(0.12, 0.4)
    centre = centre + rng.normal(0, 0.15 * size, 2)
    colour = _bgr(_random_rgb(rng))
    kind = rng.integers(3)
    if kind == 1:
        return Primitive("ellipse", -1, centre[None], colour,
                         radii=(0.5 * size, 0.5 * size * rng.uniform(0.3, 1.0)),
                         angles=(rng.uniform(0, 180), 0.0, 360.0))
    if kind == 0:
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.5 * np.array(
            [size, size * rng.uniform(0.3, 1.0)])
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(6, 11)))
        corners = 0.5 * size * rng.uniform(0.5, 1.0, (len(angles), 1)) * np.stack(
            [np.cos(angles), np.sin(angles)], axis=1)
    turn = rng.uniform(0, np.pi)
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    points = corners @ rotation.T + centre
    return Primitive("polygon", -1, cv2.convexHull(points.astype(np.float32))[:, 0, :]
                     .astype(np.float64), colour)


# --------------------------------------------------------------------------------------------
# Rendering


def _draw(targets: Sequence[tuple[np.ndarray, Any, int]], primitive: Primitive) -> None:
    """Fill ``primitive`` into each ``(image, colour, line_type)`` target (an image or the part
    buffer), in OpenCV fixed point with ``_SHIFT_BITS`` fraction bits."""
    fixed = np.round(primitive.points * _SHIFT_SCALE).astype(np.int32)
    radii = [max(round(radius * _SHIFT_SCALE), 1) for radius in primitive.radii]
    if primitive.kind == "capsule":
        (x0, y0), (x1, y1) = primitive.points.tolist()
        length = math.hypot(x1 - x0, y1 - y0)
        outline = None
        if length > 1e-6:
            normal_x, normal_y = (y0 - y1) / length, (x1 - x0) / length
            r0, r1 = primitive.radii
            outline = np.round(np.array([
                [x0 + normal_x * r0, y0 + normal_y * r0], [x1 + normal_x * r1, y1 + normal_y * r1],
                [x1 - normal_x * r1, y1 - normal_y * r1], [x0 - normal_x * r0, y0 - normal_y * r0],
            ]) * _SHIFT_SCALE).astype(np.int32)
        ends = fixed.tolist()
        for image, colour, line_type in targets:
            if outline is not None:
                cv2.fillConvexPoly(image, outline, colour, line_type, _SHIFT_BITS)
            for centre, radius in zip(ends, radii, strict=True):
                cv2.circle(image, centre, radius, colour, -1, line_type, _SHIFT_BITS)
    elif primitive.kind == "polygon":
        for image, colour, line_type in targets:
            cv2.fillConvexPoly(image, fixed, colour, line_type, _SHIFT_BITS)
    elif primitive.kind == "circle":
        centre = fixed[0].tolist()
        for image, colour, line_type in targets:
            cv2.circle(image, centre, radii[0], colour, -1, line_type, _SHIFT_BITS)
    elif primitive.kind == "ellipse":
        centre = fixed[0].tolist()
        rotation, start, stop = primitive.angles
        for image, colour, line_type in targets:
            cv2.ellipse(image, centre, radii, rotation, start, stop, colour, -1, line_type,
                        _SHIFT_BITS)
    else:
        raise ValueError(f"unknown primitive kind {primitive.kind!r}")


def _background(
    rng: np.random.Generator, width: int, height: int, max_shapes: int
) -> np.ndarray:
    """A textured background, uint8 [height, width, 3] BGR.

    A base of smooth noise or a gradient, sometimes a second texture below a horizon line,
    sometimes stripes, then random shapes (rectangles, discs, polygons, thick lines).
    """
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]

    # Per-channel [height, width] arrays: numpy broadcasting over a trailing channel axis is
    # several times slower than three plain 2-D operations.
    def texture() -> list[np.ndarray]:
        first, second = _random_rgb(rng)[::-1], _random_rgb(rng)[::-1]
        if rng.random() < 0.5:  # smooth noise, grey or coloured
            cells = int(rng.integers(2, 14))
            channels = 1 if rng.random() < 0.6 else 3
            low = rng.random((cells, cells, channels), dtype=np.float32)
            mix = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
            mixes = [np.clip(mix, 0, 1)] * 3 if channels == 1 else list(
                np.clip(cv2.split(mix), 0, 1))
        else:  # linear gradient
            angle = rng.uniform(0, 2 * np.pi)
            ramp = xs * math.cos(angle) + ys * math.sin(angle)
            mixes = [(ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)] * 3
        channels = [np.float32(low) + mix * np.float32(high - low)
                    for low, high, mix in zip(first, second, mixes, strict=True)]
        if rng.random() < 0.35:  # stripes, soft or hard
            angle = rng.uniform(0, np.pi)
            period = rng.uniform(6, 60)
            wave = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * (2 * np.pi / period)
                          + rng.uniform(0, 2 * np.pi))
            if rng.random() < 0.5:
                wave = np.sign(wave)
            alpha = np.float32(rng.uniform(0.075, 0.3)) * (wave + 1)
            stripe = _random_rgb(rng)[::-1]
            channels = [channel + alpha * (np.float32(value) - channel)
                        for channel, value in zip(channels, stripe, strict=True)]
        return channels

    channels = texture()
    if rng.random() < 0.5:  # a floor below a horizon line
        horizon = rng.uniform(0.3, 0.8) * height + math.tan(rng.uniform(-0.3, 0.3)) * (
            xs - width / 2)
        below = ys > horizon
        channels = [np.where(below, floor, wall)
                    for floor, wall in zip(texture(), channels, strict=True)]
    image = cv2.merge([cv2.convertScaleAbs(cv2.max(channel, 0.0)) for channel in channels])
    scale = min(width, height)
    for _ in range(int(rng.integers(0, max_shapes + 1))):
        colour = _bgr(_random_rgb(rng))
        centre = rng.uniform(0, 1, 2) * (width, height)
        size = scale * rng.uniform(0.03, 0.35)
        kind = rng.integers(4)
        if kind == 0:
            corner = centre + size * rng.uniform(0.3, 1.5, 2)
            cv2.rectangle(image, tuple(int(v) for v in centre), tuple(int(v) for v in corner),
                          colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(image, tuple(int(v) for v in centre), int(size / 2), colour, -1,
                       cv2.LINE_AA)
        elif kind == 2:
            points = centre + rng.normal(0, size / 2, (int(rng.integers(3, 7)), 2))
            cv2.fillPoly(image, [points.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = centre + rng.normal(0, size, 2)
            cv2.line(image, tuple(int(v) for v in centre), tuple(int(v) for v in end), colour,
                     int(rng.integers(2, max(3, int(0.05 * scale)))), cv2.LINE_AA)
    return image


def render_scene(
    scene: Scene, hide_person: int | None = None, draw_image: bool = True, finish: bool = True
) -> tuple[np.ndarray | None, np.ndarray, list[int]]:
    """Paint a scene.

    Args:
        scene: what to paint.
        hide_person: index into ``scene.people`` of a person to leave out (for tests), or None.
        draw_image: False paints only the part buffer (faster; the image is None).
        finish: False leaves out the outlines, lighting, noise and blur (which spread a pixel's
            change to its neighbours), so that each pixel shows only what is painted on it.

    Returns:
        ``image`` uint8 [height, width, 3] BGR (or None); ``part_buffer`` uint8 [height, width]:
        per pixel ``BACKGROUND_ID``, ``1 + person * NUM_PARTS + part`` or ``OCCLUDER_ID``;
        ``drawn_area``: per person, its pixel count before later people and occluders cover it
        (0 for the hidden person).
    """
    width, height = scene.image_size
    part_buffer = np.zeros((height, width), dtype=np.uint8)
    image = None
    if draw_image:
        image = _background(np.random.default_rng(scene.background_seed), width, height,
                            scene.params.max_background_shapes)
    drawn_area = []
    for index, person in enumerate(scene.people):
        if index == hide_person:
            drawn_area.append(0)
            continue
        first_id = 1 + index * NUM_PARTS
        for primitive in person.primitives:
            targets = [(part_buffer, first_id + primitive.part, cv2.LINE_8)]
            if image is not None:
                targets.append((image, primitive.colour, cv2.LINE_AA))
            _draw(targets, primitive)
        drawn_area.append(int(np.count_nonzero(
            (part_buffer >= first_id) & (part_buffer < first_id + NUM_PARTS))))
    for occluder in scene.occluders:
        targets = [(part_buffer, OCCLUDER_ID, cv2.LINE_8)]
        if image is not None:
            targets.append((image, occluder.colour, cv2.LINE_AA))
        _draw(targets, occluder)
    if image is not None and finish:
        image = _finish(image, part_buffer, np.random.default_rng(scene.finish_seed))
    return image, part_buffer, drawn_area


# Part buffer value -> outline group: every person's face parts (head, eyes, ears, nose) form one
# group, so that outlines are drawn between parts but not inside the face.
_OUTLINE_GROUPS = np.arange(256, dtype=np.uint8)
for _person in range(MAX_PEOPLE):
    for _name in ("left_eye", "right_eye", "left_ear", "right_ear", "nose"):
        _OUTLINE_GROUPS[1 + _person * NUM_PARTS + _PART[_name]] = (
            1 + _person * NUM_PARTS + _PART["head"])


def _finish(image: np.ndarray, part_buffer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Outlines between parts, smooth lighting, grey sensor noise and sometimes blur (uint8 BGR
    in and out)."""
    height, width = part_buffer.shape
    groups = cv2.LUT(part_buffer, _OUTLINE_GROUPS)
    edge = np.zeros((height, width), dtype=bool)
    edge[:, :-1] |= groups[:, :-1] != groups[:, 1:]
    edge[:-1, :] |= groups[:-1, :] != groups[1:, :]
    cells = int(rng.integers(2, 5))
    light = cv2.resize(rng.uniform(0.75, 1.15, (cells, cells)).astype(np.float32),
                       (width, height), interpolation=cv2.INTER_CUBIC)
    light[edge] *= np.float32(rng.uniform(0.55, 0.8))
    # Uniform noise from raw bytes: as good as Gaussian here and far cheaper to draw.
    noise_bytes = np.frombuffer(rng.bytes(height * width), dtype=np.uint8).reshape(height, width)
    noise = (noise_bytes.astype(np.float32) - np.float32(127.5)) * np.float32(
        rng.uniform(1, 6) / 73.9)
    # Per channel (see _background); convertScaleAbs rounds and saturates at 255.
    finished = cv2.merge([
        cv2.convertScaleAbs(cv2.max(channel.astype(np.float32) * light + noise, 0.0))
        for channel in cv2.split(image)
    ])
    if rng.random() < 0.3:
        finished = cv2.GaussianBlur(finished, (0, 0), rng.uniform(0.4, 1.0))
    return finished


# --------------------------------------------------------------------------------------------
# Scenes and annotations


def sample_scene(
    rng: np.random.Generator, image_size: tuple[int, int], params: SceneParams | None = None
) -> Scene:
    """Draw a random scene of 1 to 4 people (and sometimes occluders) for an image of
    ``image_size`` (width, height) pixels.

    People that end up almost entirely hidden (less than 20% of their drawn pixels, or fewer than
    30 pixels, still showing) are removed, so that every annotated person can be seen.
    """
    width, height = image_size
    # Standing heights for a 320-pixel image: mostly 80 to 340 pixels, a few small ones (40 to
    # 80), so that COCO "medium" (visible area 32^2 to 96^2) and "large" people are both common;
    # crowded images have smaller people.
    reference = min(width, height) / 320.0
    params = params if params is not None else SceneParams()
    people_weights = np.asarray(params.people_weights, dtype=np.float64)
    num_people = int(rng.choice(len(people_weights), p=people_weights / people_weights.sum())) + 1
    tallest = 340.0 * (1.0 - 0.08 * (num_people - 1))
    people = []
    for _ in range(num_people):
        if rng.random() < 0.06:
            height_px = rng.uniform(40, 80)
        else:
            height_px = rng.uniform(80, tallest)
        people.append(_sample_person(rng, height_px * reference, image_size, params))
    # Nearer (taller) people are usually painted last.
    if rng.random() < 0.7:
        people.sort(key=lambda person: person.height_px)
    occluders = []
    occluder_weights = np.asarray(params.occluder_weights, dtype=np.float64)
    for _ in range(int(rng.choice(len(occluder_weights),
                                  p=occluder_weights / occluder_weights.sum()))):
        occluders.append(_sample_occluder(rng, people[int(rng.integers(len(people)))]))
    scene = Scene(image_size=(width, height), people=people, occluders=occluders,
                  background_seed=int(rng.integers(2**63)), finish_seed=int(rng.integers(2**63)),
                  params=params)
    while True:
        _, part_buffer, drawn_area = render_scene(scene, draw_image=False)
        counts = np.bincount(part_buffer.ravel(), minlength=256)
        hidden = []
        for index in range(len(scene.people)):
            first_id = 1 + index * NUM_PARTS
            shown = int(counts[first_id:first_id + NUM_PARTS].sum())
            if shown < max(30, 0.2 * drawn_area[index]):
                hidden.append(index)
        if not hidden:
            return scene
        if len(hidden) == len(scene.people):  # nobody to annotate: start again
            return sample_scene(rng, image_size, params)
        scene.people = [person for index, person in enumerate(scene.people)
                        if index not in hidden]


def annotate_scene(scene: Scene, part_buffer: np.ndarray) -> list[dict[str, Any]]:
    """COCO annotations (without ids) of the people in ``scene``, from its ``part_buffer``.

    Each is ``{"keypoints": [x, y, v] * 17, "num_keypoints", "bbox": [x, y, w, h], "area",
    "segmentation": [polygon, ...]}``: coordinates in pixels rounded to 0.01 (joints outside the
    image stored as 0, 0, 0), the box tight around the person's visible pixels and extended to
    its labelled joints, the area its visible pixel count.
    """
    width, height = scene.image_size
    annotations = []
    for index, person in enumerate(scene.people):
        first_id = 1 + index * NUM_PARTS
        mask = ((part_buffer >= first_id) & (part_buffer < first_id + NUM_PARTS)).astype(np.uint8)
        coordinates = np.round(person.keypoints, 2)
        inside = ((coordinates[:, 0] >= 0) & (coordinates[:, 0] <= width - 1)
                  & (coordinates[:, 1] >= 0) & (coordinates[:, 1] <= height - 1))
        keypoints = []
        box_x, box_y, box_w, box_h = cv2.boundingRect(mask)
        left, top, right, bottom = box_x, box_y, box_x + box_w - 1, box_y + box_h - 1
        for joint, (x, y) in enumerate(coordinates):
            if not inside[joint]:
                keypoints.extend([0, 0, 0])
                continue
            column, row = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            owner = int(part_buffer[row, column]) - first_id
            visible = 2 if owner in person.joint_parts[joint] else 1
            keypoints.extend([float(x), float(y), visible])
            left, right = min(left, column), max(right, column)
            top, bottom = min(top, row), max(bottom, row)
        # The outline as polygons, simplified to within a pixel to keep the JSON small.
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        segmentation = []
        for contour in contours:
            polygon = cv2.approxPolyDP(contour, 1.0, True)
            if len(polygon) >= 3:
                segmentation.append(polygon.reshape(-1).astype(float).tolist())
        annotations.append({
            "keypoints": keypoints,
            "num_keypoints": int(sum(1 for value in keypoints[2::3] if value > 0)),
            "bbox": [float(left), float(top), float(right - left + 1), float(bottom - top + 1)],
            "area": float(np.count_nonzero(mask)),
            "segmentation": segmentation,
        })
    return annotations


def _box_iou(first: Sequence[float], second: Sequence[float]) -> float:
    ax, ay, aw, ah = first
    bx, by, bw, bh = second
    overlap_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    overlap_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    overlap = overlap_w * overlap_h
    union = aw * ah + bw * bh - overlap
    return overlap / union if union > 0 else 0.0


def simulate_detections(
    rng: np.random.Generator,
    image_id: int,
    annotations: Sequence[dict[str, Any]],
    image_size: tuple[int, int],
    miss_rate: float = 0.03,
    false_positive_rate: float = 0.25,
) -> list[dict[str, Any]]:
    """A person detector's output for one image, in COCO results format.

    Each ground-truth box is found with probability ``1 - miss_rate`` (at least one per image),
    its position jittered by about 4% and its size by about 5%; the score is higher for boxes
    that overlap their person better (0.4 to 1.0). On average ``false_positive_rate`` boxes per
    image land on the background with low scores (0.02 to 0.35). Sorted by decreasing score.
    """
    width, height = image_size
    detections = []
    found = rng.random(len(annotations)) >= miss_rate
    if len(annotations) and not found.any():
        found[int(rng.integers(len(annotations)))] = True
    for annotation, kept in zip(annotations, found, strict=True):
        x, y, w, h = annotation["bbox"]
        new_w = w * math.exp(rng.normal(0, 0.05))
        new_h = h * math.exp(rng.normal(0, 0.05))
        centre_x = x + w / 2 + rng.normal(0, 0.04) * w
        centre_y = y + h / 2 + rng.normal(0, 0.04) * h
        x1 = float(np.clip(centre_x - new_w / 2, 0, width - 1))
        y1 = float(np.clip(centre_y - new_h / 2, 0, height - 1))
        x2 = float(np.clip(centre_x + new_w / 2, x1 + 1, width))
        y2 = float(np.clip(centre_y + new_h / 2, y1 + 1, height))
        box = [x1, y1, x2 - x1, y2 - y1]
        score = 0.4 + 0.6 * _box_iou(box, annotation["bbox"]) ** 2 + rng.normal(0, 0.03)
        if kept:
            detections.append({"image_id": image_id, "category_id": 1,
                                "bbox": [round(value, 2) for value in box],
                                "score": round(float(np.clip(score, 0.3, 1.0)), 4)})
    for _ in range(int(rng.poisson(false_positive_rate))):
        for _attempt in range(10):
            box_h = rng.uniform(0.1, 0.6) * height
            box_w = box_h * rng.uniform(0.3, 0.9)
            x1, y1 = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
            box = [float(x1), float(y1), float(box_w), float(box_h)]
            if all(_box_iou(box, annotation["bbox"]) < 0.2 for annotation in annotations):
                detections.append({"image_id": image_id, "category_id": 1,
                                   "bbox": [round(value, 2) for value in box],
                                   "score": round(float(rng.uniform(0.02, 0.35)), 4)})
                break
    detections.sort(key=lambda detection: -detection["score"])
    return detections


# --------------------------------------------------------------------------------------------
# The dataset


def image_id_for(split: str, index: int) -> int:
    """The COCO image id of image ``index`` (0-based) of ``split``: train 1, 2, ...; val
    100000001, 100000002, ... (distinct across the splits)."""
    return SPLIT_CODES[split] * 100_000_000 + index + 1


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of ``split``: its scene depends on nothing else."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def _categories() -> list[dict[str, Any]]:
    return [{
        "id": 1, "name": "person", "supercategory": "person",
        "keypoints": list(COCO_KEYPOINTS.joint_names),
        # COCO's skeleton is 1-based.
        "skeleton": [[first + 1, second + 1] for first, second in COCO_KEYPOINTS.skeleton],
    }]


def _write_split(
    root: Path, split: str, num_images: int, seed: int, image_size: tuple[int, int],
    jpeg_quality: int, params: SceneParams,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Render ``num_images`` images into ``root/split``; the annotation dict and the detections."""
    image_dir = root / split
    image_dir.mkdir(parents=True)
    images, annotations, detections = [], [], []
    for index in range(num_images):
        image_id = image_id_for(split, index)
        rng = image_rng(seed, split, index)
        scene = sample_scene(rng, image_size, params)
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
                                "category_id": 1, "iscrowd": 0, **person})
        if split == "val2017":
            detections.extend(simulate_detections(rng, image_id, people, image_size))
    dataset = {
        "info": {"description": "pose synthetic person keypoints (pose.data.synthetic)",
                 "version": "1.0", "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": _categories(),
    }
    return dataset, detections


def generate_coco_dataset(
    out_dir: str | Path,
    num_train_images: int = 2000,
    num_val_images: int = 300,
    seed: int = 0,
    image_size: Sequence[int] = (320, 320),
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    scene_params: SceneParams | None = None,
) -> dict[str, Any]:
    """Generate the synthetic COCO person-keypoints dataset in ``out_dir``.

    Writes ``train2017/`` and ``val2017/`` (JPEG images named ``%012d.jpg`` after their ids, 1
    to 4 people each), ``annotations/person_keypoints_{train,val}2017.json`` (COCO format) and
    ``annotations/person_detections_val2017.json`` (simulated detector boxes in COCO results
    format). The dataset is built in a temporary sibling folder and moved into place at the end,
    so an interrupted run leaves no partial dataset. The same arguments give byte-identical files.

    Args:
        out_dir: dataset root; it may exist but must not hold ``annotations/``, ``train2017/``
            or ``val2017/``.
        num_train_images, num_val_images: image counts (>= 0; val >= 1 for the detections).
        seed: the random seed.
        image_size: (width, height) in pixels, each at least 64.
        jpeg_quality: OpenCV JPEG quality (1..100).
        scene_params: how hard the scenes are (None: the :class:`SceneParams` defaults).

    Returns:
        A summary: ``root``, ``image_size``, ``train_images``, ``train_people``, ``val_images``,
        ``val_people``, ``val_detections`` and the paths of the three annotation files.

    Raises:
        FileExistsError: ``out_dir`` already holds a dataset (or its image folders).
        ValueError: a count or size is out of range.
    """
    out_dir = Path(out_dir)
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
    _refuse_existing(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        annotation_dir = staging / "annotations"
        annotation_dir.mkdir()
        summary: dict[str, Any] = {"root": str(out_dir), "image_size": [width, height]}
        for split, count in (("train2017", num_train_images), ("val2017", num_val_images)):
            dataset, detections = _write_split(staging, split, count, seed, (width, height),
                                               jpeg_quality, scene_params or SceneParams())
            name = split.removesuffix("2017")
            (annotation_dir / f"person_keypoints_{split}.json").write_text(json.dumps(dataset))
            summary[f"{name}_images"] = len(dataset["images"])
            summary[f"{name}_people"] = len(dataset["annotations"])
            if split == "val2017":
                (annotation_dir / DETECTIONS_FILE).write_text(json.dumps(detections))
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
            out_dir / "annotations" / f"person_keypoints_{split}.json")
    summary["val_detections_file"] = str(out_dir / "annotations" / DETECTIONS_FILE)
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


# --------------------------------------------------------------------------------------------
# The same people in MPII's layout (HRNet's json), for smoke runs of the MPII presets

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
