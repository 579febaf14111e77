"""The synthetic quadruped: a four-legged cartoon animal with AP-10K's 17 keypoints
(``conf/keypoints/quadruped.yaml``), the embedded non-human example.

A 3-D stick body of random proportions (slim to stocky, short to long legs, neck and tail) in a
random walking pose (each leg swung and bent, the head raised or lowered and turned, the tail up
or down), turned about the vertical axis (mostly seen from a side, sometimes from the front or
behind), projected orthographically, rotated in the image plane, scaled and placed. Its parts
(trunk, neck, head with ears, eyes and muzzle, tail, two segments per leg) are painted far to
near, so that the far legs hide behind the trunk; a keypoint is visible where one of its parts
shows at its pixel (:mod:`pose.synthetic.annotation`), as for the person.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pose.data.keypoints import load_keypoint_spec
from pose.synthetic.figures import (
    PaintOrder,
    PersonFigure,
    Primitive,
    bend,
    bgr,
    jitter_colour,
    place_figure,
    rotation_y,
)

QUADRUPED_KEYPOINTS = load_keypoint_spec("quadruped")
# Painted parts, each with its own id in the part buffer (at most NUM_PARTS = 20). Ids 2..7
# (head, eyes, ears, muzzle) match the person's head and face ids, which the rendering draws
# without outlines between them.
PART_NAMES: tuple[str, ...] = (
    "trunk", "neck", "head", "left_eye", "right_eye", "left_ear", "right_ear", "muzzle", "tail",
    "left_front_upper", "right_front_upper", "left_front_lower", "right_front_lower",
    "left_back_upper", "right_back_upper", "left_back_lower", "right_back_lower",
)
PART_INDEX = {name: index for index, name in enumerate(PART_NAMES)}
_JOINT_PARTS: dict[str, tuple[str, ...]] = {
    "left_eye": ("left_eye",), "right_eye": ("right_eye",), "nose": ("muzzle",),
    "neck": ("neck", "trunk"), "root_of_tail": ("tail", "trunk"),
}
for _side in ("left", "right"):
    for _end, _joint, _paw in (("front", "elbow", "front_paw"), ("back", "knee", "back_paw")):
        _JOINT_PARTS[f"{_side}_{'shoulder' if _end == 'front' else 'hip'}"] = (
            f"{_side}_{_end}_upper",)
        _JOINT_PARTS[f"{_side}_{_joint}"] = (f"{_side}_{_end}_upper", f"{_side}_{_end}_lower")
        _JOINT_PARTS[f"{_side}_{_paw}"] = (f"{_side}_{_end}_lower",)
# Coats (RGB): browns, tan, greys, black, white, ginger.
_COATS_RGB = ((139, 90, 43), (210, 180, 140), (90, 90, 95), (150, 150, 150), (35, 30, 28),
              (235, 232, 225), (200, 120, 50), (100, 70, 45))


@dataclass
class _Body:
    """A posed animal in the body frame: X forward, Y down, Z to its left; units of trunk length.

    ``points``: name -> [3] for the 17 keypoints and the drawing's extra points (``head``,
    ``*_ear``, ``tail_tip``); ``trunk`` [n, 3] the trunk's outline points; ``head_radius``,
    ``trunk_depth`` and ``leg_width`` in units of trunk length.
    """

    points: dict[str, np.ndarray]
    trunk: np.ndarray
    head_radius: float
    trunk_depth: float
    leg_width: float
    head_yaw: float


def _pose_legs(rng: np.random.Generator, points: dict[str, np.ndarray], half_width: float,
               leg_length: float) -> None:
    """Shoulders and hips on the trunk, each leg swung (a walking gait) and bent at the elbow
    or knee; the paws at the lower ends."""
    phase = rng.uniform(0, 2 * np.pi)
    swing = math.radians(rng.uniform(0, 30))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for end, x, joint, paw, offset in (("front", 0.42, "elbow", "front_paw", 0.0),
                                           ("back", -0.42, "knee", "back_paw", np.pi)):
            top = "shoulder" if end == "front" else "hip"
            angle = swing * math.sin(phase + offset + (0 if sign > 0 else np.pi))
            angle += math.radians(rng.normal(0, 6) + (15 if end == "back" else 0))
            upper = np.array([math.sin(angle), math.cos(angle), 0.0])
            bend_angle = math.radians(rng.uniform(0, 35) if end == "front"
                                      else rng.uniform(25, 60))
            lower = bend(upper, np.array([-1.0, 0.0, 0.0]), bend_angle)
            origin = np.array([x, 0.12, sign * half_width])
            points[f"{side}_{top}"] = origin
            points[f"{side}_{joint}"] = origin + 0.5 * leg_length * upper
            points[f"{side}_{paw}"] = points[f"{side}_{joint}"] + 0.5 * leg_length * lower


def _pose_head(rng: np.random.Generator, points: dict[str, np.ndarray], head_radius: float,
               head_yaw: float) -> None:
    """The neck raised 10 to 70 degrees, the head at its end turned by ``head_yaw``, the muzzle
    pointing forward and down, the eyes, ears and nose on the head."""
    neck_length = rng.uniform(0.25, 0.5)
    raise_angle = math.radians(rng.uniform(10, 70))
    turn = rotation_y(head_yaw)
    points["neck"] = np.array([0.52, -0.02, 0.0])
    points["head"] = points["neck"] + neck_length * (
        turn @ np.array([math.cos(raise_angle), -math.sin(raise_angle), 0.0]))
    muzzle_angle = math.radians(rng.uniform(-10, 55))
    muzzle_length = rng.uniform(1.4, 2.6) * head_radius
    points["nose"] = points["head"] + muzzle_length * (
        turn @ np.array([math.cos(muzzle_angle), math.sin(muzzle_angle), 0.0]))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        points[f"{side}_eye"] = points["head"] + head_radius * (
            turn @ np.array([0.45, -0.4, sign * 0.62]))
        points[f"{side}_ear"] = points["head"] + head_radius * (
            turn @ np.array([-0.35, -0.95, sign * 0.55]))


def _sample_body(rng: np.random.Generator) -> _Body:
    """Random proportions (trunk depth 0.3 to 0.5, legs 0.6 to 1.1, head radius 0.09 to 0.14
    trunk lengths) in a random pose."""
    half_width = 0.5 * rng.uniform(0.2, 0.32)
    trunk_depth = rng.uniform(0.3, 0.5)
    head_radius = rng.uniform(0.09, 0.14)
    head_yaw = math.radians(float(np.clip(rng.normal(0, 20), -50, 50)))
    points: dict[str, np.ndarray] = {}
    _pose_legs(rng, points, half_width, rng.uniform(0.6, 1.1))
    _pose_head(rng, points, head_radius, head_yaw)
    points["root_of_tail"] = np.array([-0.52, 0.0, 0.0])
    tail_angle = math.radians(rng.uniform(-50, 70))  # + = drooping
    points["tail_tip"] = points["root_of_tail"] + rng.uniform(0.25, 0.7) * np.array(
        [-math.cos(tail_angle), math.sin(tail_angle), rng.normal(0, 0.2)])
    trunk = np.array([[x, y, z] for x in (0.6, 0.3, -0.3, -0.6)
                      for y in (-0.06, trunk_depth * (0.85 if abs(x) > 0.5 else 1.0))
                      for z in (half_width, -half_width)])
    return _Body(points=points, trunk=trunk, head_radius=head_radius, trunk_depth=trunk_depth,
                 leg_width=rng.uniform(0.07, 0.12), head_yaw=head_yaw)


@dataclass
class _Placed:
    at: dict[str, np.ndarray]  # name -> image position [2], pixels
    depth: dict[str, float]  # name -> depth, trunk lengths (+ = nearer the camera)
    trunk: np.ndarray  # [n, 2] pixels
    keypoints: np.ndarray  # [17, 2] pixels
    yaw: float
    scale: float  # pixels per trunk length


def _turn_and_place(rng: np.random.Generator, body: _Body, length_px: float,
                    image_size: tuple[int, int], upright_share: float) -> _Placed:
    """Turned about the vertical axis (80%: a side view +-35 degrees; else any direction),
    rotated in the image plane (within +-20 degrees for ``upright_share``, else +-60), scaled
    to ``length_px`` pixels per trunk length and placed."""
    side = 0.0 if rng.random() < 0.5 else np.pi
    yaw = (side + math.radians(rng.normal(0, 35)) if rng.random() < 0.8
           else rng.uniform(-np.pi, np.pi))
    roll = math.radians(rng.uniform(-20, 20) if rng.random() < upright_share
                        else rng.uniform(-60, 60))
    in_plane = np.array([[math.cos(roll), -math.sin(roll)],
                         [math.sin(roll), math.cos(roll)]]) * length_px
    names = list(body.points)
    turned = np.concatenate([np.stack([body.points[name] for name in names]), body.trunk])
    turned = turned @ rotation_y(yaw).T
    offsets = turned[:, :2] @ in_plane.T
    joint_rows = [names.index(name) for name in QUADRUPED_KEYPOINTS.joint_names]
    positions = offsets + place_figure(rng, offsets, joint_rows, 2.0 * length_px, image_size)
    return _Placed(at=dict(zip(names, positions, strict=False)),
                   depth=dict(zip(names, turned[:, 2].tolist(), strict=False)),
                   trunk=positions[len(names):], keypoints=positions[joint_rows], yaw=yaw,
                   scale=length_px)


def _paint(rng: np.random.Generator, placed: _Placed, body: _Body,
           far_side_shade: float) -> list[Primitive]:
    """The trunk at depth 0, legs, neck and tail at their mean depth, the head and its features
    on top of the neck; the far side in shadow."""
    at, depth, scale = placed.at, placed.depth, placed.scale
    coat = jitter_colour(rng, _COATS_RGB[rng.integers(len(_COATS_RGB))], 10)
    socks = coat if rng.random() < 0.7 else jitter_colour(rng, (235, 232, 225), 8)
    paint = PaintOrder()

    def capsule(part: str, start: str, end: str, widths: tuple[float, float],
                rgb: np.ndarray) -> None:
        key = 0.5 * (depth[start] + depth[end])
        paint.add(key, Primitive("capsule", PART_INDEX[part], np.stack([at[start], at[end]]),
                                 bgr(rgb, far_side_shade if key < -0.02 else 1.0),
                                 radii=(0.5 * widths[0] * scale, 0.5 * widths[1] * scale)))

    hull = cv2.convexHull(placed.trunk.astype(np.float32))[:, 0, :].astype(np.float64)
    paint.add(0.0, Primitive("polygon", PART_INDEX["trunk"], hull, bgr(coat)))
    width = body.leg_width
    for side in ("left", "right"):
        for end, top, joint, paw in (("front", "shoulder", "elbow", "front_paw"),
                                     ("back", "hip", "knee", "back_paw")):
            thigh = 1.6 if end == "back" else 1.3
            capsule(f"{side}_{end}_upper", f"{side}_{top}", f"{side}_{joint}",
                    (thigh * width, width), coat)
            capsule(f"{side}_{end}_lower", f"{side}_{joint}", f"{side}_{paw}",
                    (width, 0.8 * width), socks)
    capsule("tail", "root_of_tail", "tail_tip", (0.09, 0.04), coat * 0.9)
    capsule("neck", "neck", "head", (0.22, 1.6 * body.head_radius), coat)
    _paint_head(rng, paint, placed, body, coat)
    return paint.primitives()


def _paint_head(rng: np.random.Generator, paint: PaintOrder, placed: _Placed, body: _Body,
                coat: np.ndarray) -> None:
    """A disc with the ears behind it, the muzzle, and the eyes that face the camera."""
    at, depth, scale = placed.at, placed.depth, placed.scale
    key = max(depth["head"], depth["neck"]) + 0.01
    radius = body.head_radius * scale
    for ear in ("left_ear", "right_ear"):
        paint.add(key - 1e-4, Primitive("circle", PART_INDEX[ear], at[ear][None],
                                        bgr(coat * 0.8), radii=(0.45 * radius,)))
    paint.add(key, Primitive("circle", PART_INDEX["head"], at["head"][None], bgr(coat),
                             radii=(radius,)))
    paint.add(key + 1e-4, Primitive("capsule", PART_INDEX["muzzle"],
                                    np.stack([at["head"], at["nose"]]), bgr(coat * 0.95),
                                    radii=(0.7 * radius, 0.38 * radius)))
    dark = jitter_colour(rng, (25, 20, 18), 6)
    paint.add(key + 2e-4, Primitive("circle", PART_INDEX["muzzle"], at["nose"][None], bgr(dark),
                                    radii=(max(1.0, 0.22 * radius),)))
    for eye in ("left_eye", "right_eye"):
        if (depth[eye] - depth["head"]) / body.head_radius > 0.15:
            paint.add(key + 2e-4, Primitive("circle", PART_INDEX[eye], at[eye][None], bgr(dark),
                                            radii=(max(1.0, 0.17 * radius),)))


def sample_quadruped(rng: np.random.Generator, size_px: float, image_size: tuple[int, int], *,
                     upright_share: float, far_side_shade: float) -> PersonFigure:
    """An animal about ``size_px`` pixels long (0.45 of it the trunk), posed, turned, rotated
    and placed in an image of ``image_size`` (width, height) pixels.

    ``upright_share`` and ``far_side_shade`` are those of
    :class:`pose.synthetic.scenes.SceneParams`. Returns the figure with its 17 keypoints in
    :data:`QUADRUPED_KEYPOINTS` order ([17, 2] pixels, also outside the image).
    """
    body = _sample_body(rng)
    placed = _turn_and_place(rng, body, 0.45 * size_px, image_size, upright_share)
    primitives = _paint(rng, placed, body, far_side_shade)
    joint_parts = []
    for name in QUADRUPED_KEYPOINTS.joint_names:
        parts = [PART_INDEX[part] for part in _JOINT_PARTS[name]]
        if name.endswith(("shoulder", "hip")) and placed.depth[name] >= 0:
            parts.append(PART_INDEX["trunk"])  # the near side's trunk shows the joint
        joint_parts.append(tuple(parts))
    return PersonFigure(keypoints=placed.keypoints, primitives=primitives,
                        joint_parts=joint_parts, height_px=float(size_px))
