"""Scenes: 1 to 4 people and sometimes occluders on a textured background, drawn at random
(:func:`sample_scene`) and rendered (:func:`render_scene`).

Later people and occluders hide earlier ones. How often the hard cases occur (crowds, people
facing away, upside down, crouching, occluders, background clutter) is set by
:class:`SceneParams`. A :class:`Scene` stores the seeds of its background and of its lighting,
noise and blur, so it renders identically every time, also with some of its parts repainted
(which is how the tests check the visibility flags against the pixels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from pose.synthetic.figures import PersonFigure, Primitive, bgr, random_rgb
from pose.synthetic.human import NUM_PARTS, sample_person
from pose.synthetic.rendering import (
    MAX_PEOPLE,
    finish_image,
    paint_figures,
    render_background,
)


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


# Draws one figure: (rng, size in pixels, image (width, height), scene parameters) -> figure.
FigureSampler = Callable[[np.random.Generator, float, tuple[int, int], "SceneParams"],
                         PersonFigure]


def sample_human(rng: np.random.Generator, height_px: float, image_size: tuple[int, int],
                 params: SceneParams) -> PersonFigure:
    """A person of standing height ``height_px`` (:func:`pose.synthetic.human.sample_person`
    with the scene's shares)."""
    return sample_person(
        rng, height_px, image_size, facing_camera_share=params.facing_camera_share,
        upright_share=params.upright_share, crouching_share=params.crouching_share,
        far_side_shade=params.far_side_shade)


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
        per pixel ``BACKGROUND_ID``, ``1 + person * NUM_PARTS + part`` or ``OCCLUDER_ID`` (see
        :mod:`pose.synthetic.rendering`); ``drawn_area``: per person, its pixel count before
        later people and occluders cover it (0 for the hidden person).
    """
    width, height = scene.image_size
    part_buffer = np.zeros((height, width), dtype=np.uint8)
    image = None
    if draw_image:
        image = render_background(np.random.default_rng(scene.background_seed), width, height,
                                  scene.params.max_background_shapes)
    drawn_area = paint_figures(image, part_buffer, scene.people, scene.occluders, hide_person)
    if image is not None and finish:
        image = finish_image(image, part_buffer, np.random.default_rng(scene.finish_seed))
    return image, part_buffer, drawn_area


def sample_occluder(rng: np.random.Generator, person: PersonFigure) -> Primitive:
    """A rectangle, ellipse or blob (pixels) placed over a random joint of ``person``."""
    centre = person.keypoints[rng.integers(len(person.keypoints))]
    size = person.height_px * rng.uniform(0.12, 0.4)
    centre = centre + rng.normal(0, 0.15 * size, 2)
    colour = bgr(random_rgb(rng))
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


def sample_scene(
    rng: np.random.Generator, image_size: tuple[int, int], params: SceneParams | None = None,
    sample_figure: FigureSampler = sample_human,
) -> Scene:
    """Draw a random scene of 1 to 4 people (or other figures: ``sample_figure``, of a size
    drawn as a person's height) and sometimes occluders, for an image of ``image_size``
    (width, height) pixels.

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
        people.append(sample_figure(rng, height_px * reference, image_size, params))
    # Nearer (taller) people are usually painted last.
    if rng.random() < 0.7:
        people.sort(key=lambda person: person.height_px)
    occluders = []
    occluder_weights = np.asarray(params.occluder_weights, dtype=np.float64)
    for _ in range(int(rng.choice(len(occluder_weights),
                                  p=occluder_weights / occluder_weights.sum()))):
        occluders.append(sample_occluder(rng, people[int(rng.integers(len(people)))]))
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
            return sample_scene(rng, image_size, params, sample_figure)
        scene.people = [person for index, person in enumerate(scene.people)
                        if index not in hidden]
