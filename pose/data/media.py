"""Reading what ``pose.infer`` runs on: images (a file, a folder, a glob) and videos, and writing
overlay videos.

Images are decoded as stored (``IMREAD_IGNORE_ORIENTATION``, as the evaluation loop reads them)
and, where asked, turned upright by their EXIF orientation (:func:`apply_exif_orientation`), so
that boxes from a COCO-style file refer to the pixels their file stores while a detector sees
the picture as a viewer shows it. Videos stream frame by frame through OpenCV.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import queue
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from pose.data.exif import jpeg_exif_orientation

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Suffixes taken for videos without trying to open them; any other file OpenCV opens is one too.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
# Overlay videos: H.264 where this OpenCV build can encode it (browsers play it), else MPEG-4
# part 2, which OpenCV's pip wheels always write and desktop players (VLC, mpv, QuickTime,
# Windows' Films & TV) open.
VIDEO_CODECS = ("avc1", "mp4v")

_Item = TypeVar("_Item")


@dataclass(frozen=True)
class ImageFile:
    """One input image: where it is, its name relative to the input (posix, as ``file_name``
    in the boxes file and the predictions) and its ``image_id`` (see :func:`image_ids_for`)."""

    path: Path
    name: str
    image_id: int


@dataclass(frozen=True)
class MediaInput:
    """What ``input=`` names: a list of images (``video`` None) or one video."""

    images: tuple[ImageFile, ...] = ()
    video: Path | None = None

    @property
    def is_video(self) -> bool:
        return self.video is not None


def image_ids_for(names: list[str]) -> list[int]:
    """COCO-style image ids: a file stem that is a number is the id (COCO names its files so:
    ``000000000785.jpg`` is image 785); the other images take the next ids after the largest, in
    input order. Where two stems are the same number, every image gets its 0-based position."""
    stems = [Path(name).stem for name in names]
    numbers = [int(stem) for stem in stems if stem.isdigit()]
    if len(set(numbers)) != len(numbers):
        return list(range(len(names)))
    next_id = max(numbers, default=-1) + 1
    ids = []
    for stem in stems:
        if stem.isdigit():
            ids.append(int(stem))
        else:
            ids.append(next_id)
            next_id += 1
    return ids


def _images(paths: Iterable[Path], base: Path) -> tuple[ImageFile, ...]:
    files = sorted(path for path in paths
                   if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
    names = [path.relative_to(base).as_posix() for path in files]
    return tuple(ImageFile(path, name, image_id)
                 for path, name, image_id in zip(files, names, image_ids_for(names), strict=True))


def _glob_base(pattern: str) -> Path:
    """The folder above a glob's first wildcard (names are given relative to it)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def resolve_input(spec: str, recursive: bool = False) -> MediaInput:
    """What ``input=<spec>`` names: an image file, a folder of images (sorted; with
    ``recursive``, its subfolders too), a glob of images (``photos/*.jpg``; ``**`` with
    ``recursive``) or a video (anything OpenCV opens).

    Raises:
        FileNotFoundError: the input does not exist, or a folder or glob holds no images.
        ValueError: a file that is neither an image (by its suffix) nor a video OpenCV opens.
    """
    path = Path(spec)
    kinds = ", ".join(suffix[1:] for suffix in IMAGE_SUFFIXES)
    if glob.has_magic(spec) and not path.exists():
        images = _images((Path(match) for match in glob.glob(spec, recursive=recursive)),
                         _glob_base(spec))
        if not images:
            raise FileNotFoundError(f"input={spec} matches no images ({kinds})")
        return MediaInput(images=images)
    if not path.exists():
        raise FileNotFoundError(f"input={spec} does not exist")
    if path.is_dir():
        images = _images(path.rglob("*") if recursive else path.iterdir(), path)
        if not images:
            hint = "" if recursive else " (recursive=true also looks in its subfolders)"
            raise FileNotFoundError(f"input folder {spec} holds no images ({kinds}){hint}")
        return MediaInput(images=images)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return MediaInput(images=_images([path], path.parent))
    VideoFrames(path).close()  # raises if OpenCV cannot read a frame of it
    return MediaInput(video=path)


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` [H, W, C] as stored turned upright by its EXIF ``orientation`` (1 to 8), as a
    viewer displays it (1: as stored; 6: turn 90 degrees clockwise; 3: 180; 8: 90 anticlockwise;
    2, 4, 5, 7: the same with a mirror)."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def read_image(path: str | Path, respect_exif: bool) -> np.ndarray | None:
    """The image at ``path``, BGR uint8 [H, W, 3]; None if it cannot be read (missing, corrupt,
    not an image). Decoded as stored, exactly as the evaluation loop decodes it; with
    ``respect_exif``, a JPEG's EXIF orientation is then applied."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data:
        return None
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None:
        return None
    return apply_exif_orientation(image, jpeg_exif_orientation(data)) if respect_exif else image


class VideoFrames:
    """The frames of a video, streamed: iterate for ``(index, frame)`` pairs (0-based, BGR uint8
    [H, W, 3]); ``fps``, ``size`` (width, height) and ``frame_count`` (as the container states
    it: 0 when unknown) are known once it is open.

    Raises:
        ValueError: OpenCV cannot open ``path`` or read a first frame from it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._capture = cv2.VideoCapture(str(self.path))
        first = self._capture.read()[1] if self._capture.isOpened() else None
        if first is None:
            self._capture.release()
            kinds = ", ".join(suffix[1:] for suffix in IMAGE_SUFFIXES)
            raise ValueError(f"input={self.path} is not a video OpenCV can read (nor an image: "
                             f"{kinds})")
        self._first: np.ndarray | None = first
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if np.isfinite(fps) and fps > 0 else 25.0
        self.size = (first.shape[1], first.shape[0])
        self.frame_count = max(int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        index = 0
        if self._first is not None:
            frame, self._first = self._first, None
            yield index, frame
            index += 1
        while True:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return
            yield index, frame
            index += 1

    def close(self) -> None:
        self._capture.release()


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Silence the process's stderr file descriptor (FFmpeg prints a codec it cannot open
    straight to it, past OpenCV's log level)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.cache
def video_codec() -> str:
    """The first of :data:`VIDEO_CODECS` this OpenCV build writes into an mp4 (tried once)."""
    with tempfile.TemporaryDirectory() as folder:
        for codec in VIDEO_CODECS:
            with _stderr_silenced():
                writer = cv2.VideoWriter(str(Path(folder) / "probe.mp4"),
                                         cv2.VideoWriter_fourcc(*codec), 10.0, (64, 64))
                opened = writer.isOpened()
                writer.release()
            if opened:
                return codec
    raise OSError(f"this OpenCV build writes no mp4 video (tried {', '.join(VIDEO_CODECS)})")


def open_video_writer(path: str | Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """An mp4 writer at ``fps`` frames/s of ``size`` (width, height) BGR frames, with the first
    codec of :data:`VIDEO_CODECS` this OpenCV build encodes (:func:`video_codec`)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*video_codec()), fps, size)
    if not writer.isOpened():
        raise OSError(f"cannot write the video {path}")
    return writer


def read_ahead(items: Iterable[_Item], depth: int = 2) -> Iterator[_Item]:
    """``items``, produced by a background thread up to ``depth`` ahead of the consumer (image
    decoding overlaps the model; OpenCV releases the GIL). An exception in the producer is
    raised in the consumer."""
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    finished = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
        except BaseException as error:  # handed to the consumer
            buffer.put(error)
        buffer.put(finished)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is finished:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
