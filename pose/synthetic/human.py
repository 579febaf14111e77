"""The synthetic person: an articulated cartoon figure with the 17 COCO joints.

A 3-D stick skeleton with anthropometric proportions and a random pose (arms from down to
overhead, elbows and knees bending one way, walking, crouching), turned to face the camera, the
side or away from it, projected orthographically, rotated in the image plane, scaled and placed
(sometimes partly outside the image). Its body parts (torso, neck, head with hair, eyes, ears and
nose, tapered limbs, hands, feet) are painted far to near, so that the far arm and leg of a
person seen from the side are hidden by the torso.

Every part has its own id (an index into :data:`PART_NAMES`); a joint is visible where one of
the parts it belongs to shows at its pixel (the elbow: upper arm or forearm; the left eye: the
left eye's dot), see :mod:`pose.synthetic.annotation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pose.data.keypoints import COCO_KEYPOINTS
from pose.synthetic.figures import (
    PaintOrder,
    PersonFigure,
    Primitive,
    bend,
    bgr,
    jitter_colour,
    place_figure,
    random_rgb,
    rotation_y,
    unit,
)

# Body parts, each painted with its own id into the part buffer.
PART_NAMES: tuple[str, ...] = (
    "torso", "neck", "head", "left_eye", "right_eye", "left_ear", "right_ear", "nose",
    "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm",
    "left_hand", "right_hand", "left_thigh", "right_thigh", "left_shin", "right_shin",
    "left_foot", "right_foot",
)
NUM_PARTS = len(PART_NAMES)
# The parts drawn inside the head's outline (no outline between them and the head).
FACE_PARTS: tuple[str, ...] = ("left_eye", "right_eye", "left_ear", "right_ear", "nose")

PART_INDEX = {name: index for index, name in enumerate(PART_NAMES)}
# The parts a joint belongs to: the joint is visible where one of them shows at its pixel. The
# torso counts for a shoulder or hip only on the near side (see _joint_parts).
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


# --------------------------------------------------------------------------------------------
# The posed body


@dataclass
class _Pose:
    """A posed body of standing height 1 in the body frame: origin between the hips, X to the
    person's left, Y down, Z forward (towards the camera when the person faces it).

    ``points``: name -> [3] for the 17 joints and the extra points that the drawing needs
    (``mid_shoulder``, ``head_center``, ``head_top``, ``*_hand``, ``*_toe``); ``torso_corners``
    [8, 3]; ``head_yaw`` in radians relative to the body; ``build`` the width factor of the body
    and limbs.
    """

    points: dict[str, np.ndarray]
    torso_corners: np.ndarray
    head_radius: float
    head_yaw: float
    build: float


def _body_length(rng: np.random.Generator, nominal: float) -> float:
    """A segment length: ``nominal`` (units of height) +-6%."""
    return nominal * rng.uniform(0.94, 1.06)


def _sample_pose(rng: np.random.Generator, crouching_share: float) -> _Pose:
    """A random body: anthropometric proportions (shoulder width 0.245, upper arm 0.19, forearm
    0.15, thigh 0.245, shin 0.25 of the height, each +-6%) and a random pose."""
    build = rng.uniform(0.88, 1.15)  # width factor: slim to broad
    shoulder_half_width = 0.5 * _body_length(rng, 0.245) * build
    hip_half_width = 0.5 * _body_length(rng, 0.17) * build
    crouching = rng.random() < crouching_share
    lean = math.radians(rng.uniform(20, 50) if crouching else rng.normal(5, 10))
    side_bend = math.radians(rng.normal(0, 6))
    twist = math.radians(rng.normal(0, 12))
    spine = unit(np.array([math.sin(side_bend), -math.cos(lean), math.sin(lean)]))
    points: dict[str, np.ndarray] = {}
    mid_shoulder = spine * _body_length(rng, 0.30)
    points["mid_shoulder"] = mid_shoulder
    shoulder_axis = rotation_y(twist) @ np.array([1.0, 0.0, 0.0])
    points["left_shoulder"] = mid_shoulder + shoulder_half_width * shoulder_axis
    points["right_shoulder"] = mid_shoulder - shoulder_half_width * shoulder_axis
    points["left_hip"] = np.array([hip_half_width, 0.0, 0.0])
    points["right_hip"] = np.array([-hip_half_width, 0.0, 0.0])

    head_radius = 0.065 * rng.uniform(0.92, 1.08)
    neck_direction = unit(spine + rng.normal(0, 0.15, 3) * np.array([1.0, 0.3, 1.0]))
    points["head_center"] = mid_shoulder + neck_direction * (0.055 + head_radius)
    _pose_arms(rng, points, twist)
    _pose_legs(rng, points, crouching)

    # The torso's outline: a box from the shoulders (chest depth) to the hips (pelvis depth).
    corners = []
    for sign in (1.0, -1.0):
        for depth in (0.055 * build, -0.055 * build):
            corners.append(mid_shoulder + sign * 1.08 * shoulder_half_width * shoulder_axis
                           + np.array([0.0, 0.015, depth]))
            corners.append(np.array([sign * 1.3 * hip_half_width, 0.03, 0.8 * depth]))
    head_yaw = math.radians(float(np.clip(rng.normal(0, 20), -50, 50)))
    head_center = points["head_center"]
    for name, offset in _face_points(head_radius, head_yaw).items():
        points[name] = head_center + offset
    points["head_top"] = head_center + np.array([0.0, -head_radius, 0.0])
    return _Pose(points=points, torso_corners=np.array(corners), head_radius=head_radius,
                 head_yaw=head_yaw, build=float(build))


def _pose_arms(rng: np.random.Generator, points: dict[str, np.ndarray], twist: float) -> None:
    """Adds the elbows, wrists and hands to ``points`` (which holds the shoulders).

    The upper arm's elevation goes from hanging down (0) to overhead (pi) and its azimuth from
    sideways (0) through forward (pi / 2); the elbow bends the forearm forwards and up.
    """
    upper_arm, forearm = _body_length(rng, 0.19), _body_length(rng, 0.15)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        band = rng.choice(3, p=(0.5, 0.3, 0.2))
        elevation = math.radians(rng.uniform(*((3, 45), (45, 110), (110, 178))[band]))
        azimuth = math.radians(rng.uniform(-40, 130))
        upper = np.array([sign * math.sin(elevation) * math.cos(azimuth), math.cos(elevation),
                          math.sin(elevation) * math.sin(azimuth)])
        upper = rotation_y(twist) @ upper
        flexion = math.radians(rng.uniform(0, 40) if rng.random() < 0.6 else rng.uniform(40, 150))
        towards = np.array([-sign * rng.uniform(-0.3, 1.0), -rng.uniform(-0.5, 1.5), 1.0])
        lower = bend(upper, rotation_y(twist) @ towards, flexion)
        shoulder = points[f"{side}_shoulder"]
        points[f"{side}_elbow"] = shoulder + upper_arm * upper
        points[f"{side}_wrist"] = points[f"{side}_elbow"] + forearm * lower
        points[f"{side}_hand"] = points[f"{side}_wrist"] + 0.035 * lower


def _pose_legs(rng: np.random.Generator, points: dict[str, np.ndarray], crouching: bool) -> None:
    """Adds the knees, ankles and toes to ``points`` (which holds the hips): hip flexion
    (forward), abduction (outward); the knee bends the shin backwards."""
    thigh, shin = _body_length(rng, 0.245), _body_length(rng, 0.25)
    stride = rng.uniform(0, 25) if rng.random() < 0.6 else 0.0
    base_flexion = rng.uniform(55, 105) if crouching else rng.normal(3, 8)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        hip_flexion = base_flexion + sign * stride + rng.normal(0, 5)
        if not crouching and rng.random() < 0.08:  # a kick or a step up
            hip_flexion = rng.uniform(30, 100)
        hip_flexion = math.radians(hip_flexion)
        abduction = math.radians(rng.uniform(-4, 12) if rng.random() < 0.75
                                 else rng.uniform(12, 40))
        upper = np.array([sign * math.sin(abduction), math.cos(abduction) * math.cos(hip_flexion),
                          math.cos(abduction) * math.sin(hip_flexion)])
        if crouching:
            knee_flexion = rng.uniform(85, 140)
        elif hip_flexion > math.radians(25):
            knee_flexion = rng.uniform(20, 120)
        else:
            knee_flexion = rng.uniform(0, 20) if rng.random() < 0.8 else rng.uniform(20, 80)
        lower = bend(upper, np.array([0.0, 0.0, -1.0]), math.radians(knee_flexion))
        hip = points[f"{side}_hip"]
        points[f"{side}_knee"] = hip + thigh * upper
        points[f"{side}_ankle"] = points[f"{side}_knee"] + shin * lower
        foot_direction = unit(np.array([sign * rng.uniform(0.0, 0.3), 0.25, 1.0]))
        points[f"{side}_toe"] = points[f"{side}_ankle"] + _body_length(rng, 0.10) * foot_direction


def _face_points(head_radius: float, head_yaw: float) -> dict[str, np.ndarray]:
    """Eyes, ears and nose relative to the head centre in the body frame (units of height)."""
    local = {
        "left_eye": (0.38, -0.08, 0.92), "right_eye": (-0.38, -0.08, 0.92),
        "left_ear": (0.98, 0.05, -0.12), "right_ear": (-0.98, 0.05, -0.12),
        "nose": (0.0, 0.28, 1.05),
    }
    turn = rotation_y(head_yaw)
    return {name: head_radius * (turn @ np.array(offset)) for name, offset in local.items()}


# --------------------------------------------------------------------------------------------
# The body in the image


@dataclass
class _PlacedBody:
    """A posed body turned, rotated, scaled and placed in the image.

    ``at``: point name -> image position [2] in pixels; ``depth``: point name -> depth in units
    of height (+ = nearer the camera); ``torso_outline`` [8, 2] pixels; ``keypoints`` [17, 2]
    pixels; ``yaw`` (turn about the vertical axis) and ``roll`` (in the image plane) in radians.
    """

    at: dict[str, np.ndarray]
    depth: dict[str, float]
    torso_outline: np.ndarray
    keypoints: np.ndarray
    yaw: float
    roll: float


def _turn_and_place(
    rng: np.random.Generator, body: _Pose, height_px: float, image_size: tuple[int, int],
    facing_camera_share: float, upright_share: float,
) -> _PlacedBody:
    """Turns ``body`` (mostly towards the camera, otherwise any direction: profiles and backs),
    rotates it in the image plane, scales it to ``height_px`` and places it."""
    pose = body.points
    yaw = math.radians(rng.normal(0, 25) if rng.random() < facing_camera_share
                       else rng.uniform(-180, 180))
    roll = math.radians(rng.uniform(-30, 30) if rng.random() < upright_share
                        else rng.uniform(-180, 180))
    cos_roll, sin_roll = math.cos(roll), math.sin(roll)
    in_plane = np.array([[cos_roll, -sin_roll], [sin_roll, cos_roll]]) * height_px
    names = list(pose)
    turned = np.concatenate([np.stack([pose[name] for name in names]), body.torso_corners])
    turned = turned @ rotation_y(yaw).T
    offsets = turned[:, :2] @ in_plane.T  # pixels, before placement
    depth = dict(zip(names, turned[:, 2].tolist(), strict=False))  # body heights, + = nearer
    joint_rows = [names.index(name) for name in COCO_KEYPOINTS.joint_names]
    translation = place_figure(rng, offsets, joint_rows, height_px, image_size)
    positions = offsets + translation
    return _PlacedBody(at=dict(zip(names, positions, strict=False)), depth=depth,
                       torso_outline=positions[len(names):], keypoints=positions[joint_rows],
                       yaw=yaw, roll=roll)


# --------------------------------------------------------------------------------------------
# Painting


@dataclass
class _Outfit:
    """A person's colours (RGB float [3], 0..255) and clothing choices. The colours are the
    same on both sides, so that left and right differ only by geometry."""

    skin: np.ndarray
    hair: np.ndarray
    shirt: np.ndarray
    trousers: np.ndarray
    shoes: np.ndarray
    long_sleeves: bool
    long_trousers: bool
    bald: bool


def _sample_outfit(rng: np.random.Generator) -> _Outfit:
    skin = jitter_colour(rng, _SKIN_TONES_RGB[rng.integers(len(_SKIN_TONES_RGB))], 8)
    hair = jitter_colour(rng, _HAIR_COLOURS_RGB[rng.integers(len(_HAIR_COLOURS_RGB))], 10)
    shirt, trousers = random_rgb(rng), random_rgb(rng)
    shoes = jitter_colour(rng, (40, 35, 30), 20) if rng.random() < 0.7 else random_rgb(rng)
    long_sleeves, long_trousers = rng.random() < 0.5, rng.random() < 0.7
    bald = rng.random() < 0.1
    return _Outfit(skin=skin, hair=hair, shirt=shirt, trousers=trousers, shoes=shoes,
                   long_sleeves=long_sleeves, long_trousers=long_trousers, bald=bald)


def _paint_body(paint: PaintOrder, placed: _PlacedBody, outfit: _Outfit, radius_scale: float,
                far_side_shade: float) -> None:
    """The torso at depth 0, the neck just behind it, limbs at their mean depth, hands and feet
    just in front of their forearm and shin. Widths are in units of ``radius_scale`` pixels."""
    at, depth = placed.at, placed.depth

    def add_capsule(part: str, start: str, end: str, widths: tuple[float, float],
                    rgb: np.ndarray, key: float | None = None) -> float:
        """A limb segment painted at its mean depth (or at ``key``); returns the key."""
        if key is None:
            key = 0.5 * (depth[start] + depth[end])
        shade = far_side_shade if key < -0.03 else 1.0  # the far side is in shadow
        paint.add(key, Primitive("capsule", PART_INDEX[part], np.stack([at[start], at[end]]),
                                 bgr(rgb, shade), radii=(0.5 * widths[0] * radius_scale,
                                                         0.5 * widths[1] * radius_scale)))
        return key

    hull = cv2.convexHull(placed.torso_outline.astype(np.float32))[:, 0, :]
    paint.add(0.0, Primitive("polygon", PART_INDEX["torso"], hull.astype(np.float64),
                             bgr(outfit.shirt)))
    paint.add(-0.02, Primitive("capsule", PART_INDEX["neck"],
                               np.stack([at["mid_shoulder"], at["head_center"]]),
                               bgr(outfit.skin, 0.92),
                               radii=(0.028 * radius_scale, 0.024 * radius_scale)))
    for side in ("left", "right"):
        sleeve = outfit.shirt if outfit.long_sleeves else outfit.skin
        key = add_capsule(f"{side}_upper_arm", f"{side}_shoulder", f"{side}_elbow",
                          (0.062, 0.048), outfit.shirt)
        key = max(key, add_capsule(f"{side}_forearm", f"{side}_elbow", f"{side}_wrist",
                                   (0.046, 0.034), sleeve))
        add_capsule(f"{side}_hand", f"{side}_wrist", f"{side}_hand", (0.042, 0.05), outfit.skin,
                    key + 0.001)
        legging = outfit.trousers if outfit.long_trousers else outfit.skin
        key = add_capsule(f"{side}_thigh", f"{side}_hip", f"{side}_knee", (0.095, 0.062),
                          outfit.trousers)
        key = max(key, add_capsule(f"{side}_shin", f"{side}_knee", f"{side}_ankle",
                                   (0.058, 0.042), legging))
        add_capsule(f"{side}_foot", f"{side}_ankle", f"{side}_toe", (0.045, 0.04), outfit.shoes,
                    key + 0.001)


def _paint_head(rng: np.random.Generator, paint: PaintOrder, placed: _PlacedBody,
                outfit: _Outfit, body: _Pose, height_px: float) -> None:
    """A skin disc, a hair cap towards the back of the head, then the face features that turn
    towards the camera (eyes and nose) and the ears that are not behind the head."""
    at, depth = placed.at, placed.depth
    head_key = depth["head_center"] + 0.01
    radius_px = body.head_radius * height_px
    head_at = at["head_center"][None]
    paint.add(head_key, Primitive("circle", PART_INDEX["head"], head_at, bgr(outfit.skin),
                                  radii=(radius_px,)))
    face_yaw = placed.yaw + body.head_yaw
    facing_x = math.sin(face_yaw)  # where the face points in the image, before the roll
    if not outfit.bald:
        if math.cos(face_yaw) < -0.35:
            start, end = 0.0, 360.0
        else:
            centre_angle = 270.0 - 55.0 * facing_x + math.degrees(placed.roll)
            half_span = 85.0 + 25.0 * abs(facing_x)
            start, end = centre_angle - half_span, centre_angle + half_span
        paint.add(head_key + 1e-4, Primitive("ellipse", PART_INDEX["head"], head_at,
                                             bgr(outfit.hair),
                                             radii=(1.04 * radius_px, 1.04 * radius_px),
                                             angles=(0.0, start, end)))
    dark = jitter_colour(rng, (35, 25, 20), 8)
    skin = outfit.skin
    for name, threshold, size, rgb in (
        ("left_ear", -0.45, 0.24, skin * 0.85), ("right_ear", -0.45, 0.24, skin * 0.85),
        ("left_eye", 0.3, 0.14, dark), ("right_eye", 0.3, 0.14, dark),
        ("nose", 0.15, 0.15, skin * 0.72),
    ):
        if (depth[name] - depth["head_center"]) / body.head_radius > threshold:
            paint.add(head_key + 2e-4, Primitive("circle", PART_INDEX[name], at[name][None],
                                                 bgr(rgb), radii=(max(1.0, size * radius_px),)))


def _joint_parts(body: _Pose, depth: dict[str, float]) -> list[tuple[int, ...]]:
    """Per COCO joint, the part ids that make it visible. The torso shows a shoulder or hip only
    on the near side (a person seen from the side hides the far shoulder behind the chest)."""
    joint_parts = []
    for name in COCO_KEYPOINTS.joint_names:
        parts = [PART_INDEX[part] for part in _JOINT_PARTS[name]]
        if name.endswith(("shoulder", "hip")) and (
                depth[name] >= -0.6 * abs(float(body.points[name][0]))):
            parts.append(PART_INDEX["torso"])
        joint_parts.append(tuple(parts))
    return joint_parts


def sample_person(
    rng: np.random.Generator, height_px: float, image_size: tuple[int, int], *,
    facing_camera_share: float, upright_share: float, crouching_share: float,
    far_side_shade: float,
) -> PersonFigure:
    """A person of standing height ``height_px`` pixels, posed, turned, rotated and placed in an
    image of ``image_size`` (width, height) pixels.

    ``facing_camera_share``, ``upright_share``, ``crouching_share`` and ``far_side_shade`` are
    those of :class:`pose.synthetic.scenes.SceneParams`. Returns the figure with its 17 COCO
    joints ([17, 2] pixels, also outside the image) and its parts in paint order.
    """
    body = _sample_pose(rng, crouching_share)
    placed = _turn_and_place(rng, body, height_px, image_size, facing_camera_share,
                             upright_share)
    outfit = _sample_outfit(rng)
    paint = PaintOrder()
    _paint_body(paint, placed, outfit, height_px * body.build, far_side_shade)
    _paint_head(rng, paint, placed, outfit, body, height_px)
    return PersonFigure(keypoints=placed.keypoints, primitives=paint.primitives(),
                        joint_parts=_joint_parts(body, placed.depth), height_px=float(height_px))
