"""Keypoint sets: joint names, flip pairs, skeletons, OKS sigmas, loss weights, half-body joint
sets and drawing colours.

A keypoint set is a YAML file (``conf/keypoints/<name>.yaml``, or a file of the user's own):

.. code-block:: yaml

    name: quadruped                  # what logs and errors call the set
    keypoints: [nose, left_eye, ...] # ordered names: joint ids are positions here (0-based)
    flip_pairs: [[left_eye, right_eye], ...]   # swapped by a horizontal flip
    skeleton: [[nose, left_eye], ...]          # links drawn between keypoints
    sigmas: [0.026, ...]             # optional: OKS sigmas (pycocotools units), one per keypoint
    joint_weights: [1.0, ...]        # optional: loss weights, one per keypoint
    upper_body: [nose, ...]          # optional, with lower_body: the half-body augmentation
    lower_body: [left_hip, ...]
    colours: [[255, 128, 0], ...]    # optional: RGB per keypoint, 0..255, for drawing

:func:`load_keypoint_spec` reads one (a name from ``conf/keypoints/`` or a path) with
:func:`yaml.safe_load` (no code runs by loading) and checks it; every problem is one
``ValueError`` naming the file and the offending item. Every other module takes a
:class:`KeypointSpec` (or plain values read from one) instead of hard-coding joint indices.
:data:`COCO_KEYPOINTS` and :data:`MPII_KEYPOINTS` are read from ``conf/keypoints/coco.yaml`` and
``mpii.yaml``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KEYPOINTS_DIR = Path(__file__).resolve().parents[2] / "conf" / "keypoints"
YAML_KEYS = ("name", "keypoints", "flip_pairs", "skeleton", "sigmas", "joint_weights",
             "upper_body", "lower_body", "colours")
# Drawing colours (RGB) when a set gives none: left keypoints, right keypoints, the others.
DEFAULT_SIDE_COLOURS = ((255, 128, 0), (0, 160, 255), (60, 200, 60))


@dataclass(frozen=True)
class KeypointSpec:
    """A keypoint layout. Joint ids are 0-based indices into ``joint_names``."""

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    upper_body_ids: tuple[int, ...]
    lower_body_ids: tuple[int, ...]
    # Per-joint OKS sigmas in pycocotools' units (COCO's are the published per-joint standard
    # deviations / 10); None where the set defines none (no OKS AP; MPII uses PCKh).
    oks_sigmas: tuple[float, ...] | None = None
    # Per-joint loss weights (the official HRNet's joints_weight); None: all 1.
    joint_weights: tuple[float, ...] | None = None
    # Per-joint RGB drawing colours (0..255); None: see drawing_colours().
    colours: tuple[tuple[int, int, int], ...] | None = None
    source: str | None = None  # the file the set was read from (None: built in code)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def names(self) -> tuple[str, ...]:
        """The keypoint names in joint-id order (``joint_names``)."""
        return self.joint_names

    def drawing_colours(self) -> tuple[tuple[int, int, int], ...]:
        """RGB (0..255) per joint: ``colours`` when the set gives them, else by side (the first
        joint of each flip pair orange, the second blue, unpaired joints green)."""
        if self.colours is not None:
            return self.colours
        side = [2] * self.num_joints
        for first, second in self.flip_pairs:
            side[first], side[second] = 0, 1
        return tuple(DEFAULT_SIDE_COLOURS[value] for value in side)

    def to_dict(self) -> dict[str, Any]:
        """The set as its YAML mapping (names, not ids); optional keys only when given."""
        names = self.joint_names
        data: dict[str, Any] = {
            "name": self.name, "keypoints": list(names),
            "flip_pairs": [[names[a], names[b]] for a, b in self.flip_pairs],
            "skeleton": [[names[a], names[b]] for a, b in self.skeleton]}
        if self.oks_sigmas is not None:
            data["sigmas"] = list(self.oks_sigmas)
        if self.joint_weights is not None:
            data["joint_weights"] = list(self.joint_weights)
        if self.upper_body_ids or self.lower_body_ids:
            data["upper_body"] = [names[index] for index in self.upper_body_ids]
            data["lower_body"] = [names[index] for index in self.lower_body_ids]
        if self.colours is not None:
            data["colours"] = [list(colour) for colour in self.colours]
        return data


def flip_permutation(num_joints: int, flip_pairs: Sequence[Sequence[int]]) -> list[int]:
    """Index map that swaps each (left, right) joint pair: ``flipped[k] = original[perm[k]]``.

    The one place the flip test (heatmap channels) and flip augmentation (joint rows) get
    their joint order from.
    """
    permutation = list(range(num_joints))
    for left, right in flip_pairs:
        if not (0 <= left < num_joints and 0 <= right < num_joints):
            raise ValueError(f"flip pair ({left}, {right}) is out of range for {num_joints} joints")
        permutation[left], permutation[right] = right, left
    return permutation


# ------------------------------------------------------------------------------------------------
# Reading and checking a set


def _names_list(value: Any, key: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise ValueError(f"{where}: '{key}' must be a list of keypoint names, got {value!r}")
    return value


def _ids(names: Sequence[str], index: Mapping[str, int], key: str, where: str) -> list[int]:
    for name in names:
        if name not in index:
            raise ValueError(f"{where}: '{key}' names an unknown keypoint {name!r} (the keypoints "
                             f"are {', '.join(index)})")
    return [index[name] for name in names]


def _pairs(value: Any, index: Mapping[str, int], key: str, where: str) -> list[tuple[int, int]]:
    """Pairs of names -> pairs of ids."""
    if not isinstance(value, list) or not all(
            isinstance(pair, list) and len(pair) == 2 for pair in value):
        raise ValueError(f"{where}: '{key}' must be a list of [name, name] pairs, got {value!r}")
    pairs = []
    for pair in value:
        first, second = _ids(_names_list(pair, key, where), index, key, where)
        if first == second:
            raise ValueError(f"{where}: '{key}' pairs keypoint {pair[0]!r} with itself")
        pairs.append((first, second))
    return pairs


def _per_joint_numbers(value: Any, key: str, count: int, where: str) -> tuple[float, ...]:
    """One positive finite number per keypoint."""
    if not isinstance(value, list):
        raise ValueError(f"{where}: '{key}' must be a list of numbers, one per keypoint, got "  # noqa: TRY004
                         f"{value!r}")
    if len(value) != count:
        raise ValueError(f"{where}: '{key}' has {len(value)} values for {count} keypoints "
                         "(one per keypoint)")
    for position, number in enumerate(value):
        if isinstance(number, str):
            raise ValueError(f"{where}: '{key}' value {position} is the text {number!r}, not a "  # noqa: TRY004
                             "number (YAML reads 1e-2 as text: write 0.01)")
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not (
                math.isfinite(number) and number > 0):
            raise ValueError(f"{where}: '{key}' value {position} is {number!r}; each must be a "
                             "positive number")
    return tuple(float(number) for number in value)


def _colours(value: Any, count: int, where: str) -> tuple[tuple[int, int, int], ...]:
    if not isinstance(value, list) or len(value) != count:
        size = len(value) if isinstance(value, list) else "no list of"
        raise ValueError(f"{where}: 'colours' has {size} values for {count} keypoints (one "
                         "[r, g, b] per keypoint)")
    for position, colour in enumerate(value):
        if not (isinstance(colour, list) and len(colour) == 3 and all(
                isinstance(channel, int) and not isinstance(channel, bool)
                and 0 <= channel <= 255 for channel in colour)):
            raise ValueError(f"{where}: 'colours' value {position} is {colour!r}; each must be "
                             "[r, g, b] with integers 0..255")
    return tuple((colour[0], colour[1], colour[2]) for colour in value)


def _check_flip_pairs(pairs: Sequence[tuple[int, int]], names: Sequence[str],
                      where: str) -> None:
    seen: set[int] = set()
    for pair in pairs:
        for joint in pair:
            if joint in seen:
                raise ValueError(f"{where}: keypoint {names[joint]!r} is in more than one flip "
                                 "pair")
            seen.add(joint)


def keypoint_spec_from_dict(data: Any, where: str) -> KeypointSpec:
    """Check a keypoint set's mapping (the YAML keys of the module docstring) and build it.

    Args:
        data: the parsed YAML.
        where: what to name in errors (the file).

    Raises:
        ValueError: one line naming ``where`` and the problem (unknown key, duplicate name,
            unknown keypoint, a keypoint in two flip pairs, per-keypoint lists of the wrong
            length or with non-positive values, ...).
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: a keypoint set is a YAML mapping with keys "  # noqa: TRY004
                         f"{', '.join(YAML_KEYS)}, got {type(data).__name__}")
    unknown = [key for key in data if key not in YAML_KEYS]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (expected {', '.join(YAML_KEYS)})")
    for key in ("name", "keypoints"):
        if key not in data:
            raise ValueError(f"{where}: '{key}' is missing")
    if not isinstance(data["name"], str) or not data["name"]:
        raise ValueError(f"{where}: 'name' must be a non-empty text, got {data['name']!r}")
    names = _names_list(data["keypoints"], "keypoints", where)
    if not names:
        raise ValueError(f"{where}: 'keypoints' is empty")
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        if name in index:
            raise ValueError(f"{where}: keypoint {name!r} is listed twice (positions "
                             f"{index[name]} and {position})")
        index[name] = position
    flip_pairs = _pairs(data.get("flip_pairs") or [], index, "flip_pairs", where)
    _check_flip_pairs(flip_pairs, names, where)
    skeleton = _pairs(data.get("skeleton") or [], index, "skeleton", where)
    halves = {}
    for key in ("upper_body", "lower_body"):
        halves[key] = _ids(_names_list(data.get(key) or [], key, where), index, key, where)
        if len(set(halves[key])) != len(halves[key]):
            raise ValueError(f"{where}: '{key}' lists a keypoint twice")
    if bool(halves["upper_body"]) != bool(halves["lower_body"]):
        given, missing = (("upper_body", "lower_body") if halves["upper_body"]
                          else ("lower_body", "upper_body"))
        raise ValueError(f"{where}: '{given}' is given without '{missing}' (the half-body "
                         "augmentation needs both, or neither)")
    optional = {key: None if data.get(key) is None else
                _per_joint_numbers(data[key], key, len(names), where)
                for key in ("sigmas", "joint_weights")}
    colours = None if data.get("colours") is None else _colours(data["colours"], len(names),
                                                                 where)
    return KeypointSpec(
        name=data["name"], joint_names=tuple(names), flip_pairs=tuple(flip_pairs),
        skeleton=tuple(skeleton), upper_body_ids=tuple(halves["upper_body"]),
        lower_body_ids=tuple(halves["lower_body"]), oks_sigmas=optional["sigmas"],
        joint_weights=optional["joint_weights"], colours=colours, source=where)


def shipped_keypoint_sets() -> list[str]:
    """The names of the sets in ``conf/keypoints/``."""
    return sorted(path.stem for path in KEYPOINTS_DIR.glob("*.yaml"))


def keypoint_spec_path(name_or_path: str | Path) -> Path:
    """The file of ``name_or_path``: a shipped set's name (``coco``), or a YAML file's path."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        return Path(text).expanduser()
    path = KEYPOINTS_DIR / f"{text}.yaml"
    if not path.is_file():
        raise ValueError(f"keypoint set {text!r} is not known: expected one of "
                         f"{', '.join(shipped_keypoint_sets())} (conf/keypoints/), or the path "
                         "of a .yaml file")
    return path


def load_keypoint_spec(name_or_path: str | Path) -> KeypointSpec:
    """Read and check a keypoint set: a name from ``conf/keypoints/`` or a YAML file's path.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown name, a file that is not YAML, or a set that fails the checks of
            :func:`keypoint_spec_from_dict` (the message names the file).
    """
    path = keypoint_spec_path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"keypoint set file {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from error
    return keypoint_spec_from_dict(data, str(path))


def keypoint_spec_yaml(spec: KeypointSpec, header: str = "") -> str:
    """The YAML text of ``spec`` (what :func:`load_keypoint_spec` reads back to an equal set,
    ``source`` aside), after the comment lines ``header``."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    body = yaml.safe_dump(spec.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    return comment + body


# ------------------------------------------------------------------------------------------------
# Flip pairs from names

_SEPARATORS = "_-. "


def _case_like(word: str, model: str) -> str:
    """``word`` in the letter case of ``model`` (``LEFT`` -> ``RIGHT``, ``Left`` -> ``Right``)."""
    if model.isupper():
        return word.upper()
    if model[:1].isupper():
        return word.capitalize()
    return word


def _mirror_names(name: str) -> list[tuple[str, bool]]:
    """The names ``name``'s mirror image could have, each with whether ``name`` is the left one:
    ``left_x``/``right_x`` (also ``leftx``, ``LeftX``), ``x_left``/``x_right`` (also ``xLeft``),
    ``a_left_b``, ``l_x``/``r_x`` and ``L``/``R`` before a capital (``LShoulder``)."""
    candidates = []
    for word, other, is_left in (("left", "right", True), ("right", "left", False)):
        size = len(word)
        if name[:size].lower() == word and len(name) > size:
            candidates.append((_case_like(other, name[:size]) + name[size:], is_left))
        if name[-size:].lower() == word and len(name) > size and (
                name[-size - 1] in _SEPARATORS or name[-size].isupper()):
            candidates.append((name[:-size] + _case_like(other, name[-size:]), is_left))
        separator = f"[{re.escape(_SEPARATORS)}]"
        for match in re.finditer(rf"(?<={separator}){word}(?={separator})", name,
                                 flags=re.IGNORECASE):
            start, end = match.span()
            candidates.append((name[:start] + _case_like(other, name[start:end]) + name[end:],
                               is_left))
    for letter, other, is_left in (("l", "r", True), ("r", "l", False)):
        if len(name) > 2 and name[0].lower() == letter and name[1] in _SEPARATORS:
            candidates.append((_case_like(other, name[0]) + name[1:], is_left))
        if len(name) > 1 and name[0] == letter.upper() and name[1].isupper():
            candidates.append((other.upper() + name[1:], is_left))
    return candidates


def infer_flip_pairs(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Flip pairs ``(left, right)`` (joint ids) found from left/right names: ``left_x``/
    ``right_x``, ``x_left``/``x_right``, ``l_x``/``r_x``, ``L``/``R`` prefixes (see
    :func:`_mirror_names`; any letter case). Each keypoint is paired at most once; pairs come in
    the order of their left keypoint."""
    index = {name: position for position, name in enumerate(names)}
    paired: set[int] = set()
    pairs = []
    for position, name in enumerate(names):
        if position in paired:
            continue
        for mirror, is_left in _mirror_names(name):
            other = index.get(mirror)
            if other is None or other == position or other in paired:
                continue
            paired.update((position, other))
            pairs.append((position, other) if is_left else (other, position))
            break
    return tuple(sorted(pairs))


def describe_flip_pairs(names: Sequence[str], pairs: Sequence[tuple[int, int]]) -> str:
    """``left_eye/right_eye, ...; unpaired: nose, ...`` for logs."""
    paired = {joint for pair in pairs for joint in pair}
    text = ", ".join(f"{names[a]}/{names[b]}" for a, b in pairs) or "none"
    unpaired = [name for position, name in enumerate(names) if position not in paired]
    return text + (f"; unpaired: {', '.join(unpaired)}" if unpaired else "")


def keypoint_spec_from_category(category: Mapping[str, Any], where: str
                                ) -> tuple[KeypointSpec, str]:
    """The keypoint set of a COCO json category, and a sentence saying where it came from.

    A shipped set (``conf/keypoints/``) whose names are the category's ``keypoints`` is used as
    it is (with its sigmas); otherwise the set is built from the category: its name, its
    ``keypoints``, its ``skeleton`` (1-based ids, as COCO writes it), flip pairs inferred from
    the names (:func:`infer_flip_pairs`), no OKS sigmas.

    Raises:
        ValueError: the category lists no keypoint names, or its skeleton or names fail the
            checks (the message names ``where``).
    """
    names = category.get("keypoints")
    label = f"category {category.get('id')!r} ({category.get('name', '?')})"
    if not names or not isinstance(names, list):
        raise ValueError(f"{where}: {label} lists no keypoint names; give the keypoint set "
                         "with data.keypoints=<name|path.yaml>")
    for shipped in shipped_keypoint_sets():
        spec = load_keypoint_spec(shipped)
        if list(spec.joint_names) == names:
            return spec, (f"{label}: keypoint set {spec.name!r} ({spec.source}), whose names "
                          "the category's are")
    skeleton = category.get("skeleton") or []
    valid = isinstance(skeleton, list) and all(
        isinstance(link, list) and len(link) == 2 and all(
            isinstance(end, int) and 1 <= end <= len(names) for end in link)
        for link in skeleton)
    if not valid:
        raise ValueError(f"{where}: {label} has skeleton {skeleton!r}; expected [a, b] pairs of "
                         f"1-based keypoint ids (1..{len(names)})")
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f"{where}: {label} keypoint names must be texts, got {names!r}")
    pairs = infer_flip_pairs(names)
    spec = keypoint_spec_from_dict({
        "name": str(category.get("name") or f"category_{category.get('id')}"),
        "keypoints": names,
        "flip_pairs": [[names[a], names[b]] for a, b in pairs],
        "skeleton": [[names[a - 1], names[b - 1]] for a, b in skeleton],
    }, where)
    return spec, (f"{label}: keypoint set built from the json ({len(names)} keypoints, "
                  f"{len(skeleton)} skeleton links, no OKS sigmas: PCK and EPE, no AP); flip "
                  f"pairs inferred from the names: {describe_flip_pairs(names, pairs)}")


COCO_KEYPOINTS = load_keypoint_spec("coco")
MPII_KEYPOINTS = load_keypoint_spec("mpii")

# The default set of each kind of data (data.dataset).
KEYPOINT_SPECS: dict[str, KeypointSpec] = {spec.name: spec
                                           for spec in (COCO_KEYPOINTS, MPII_KEYPOINTS)}
