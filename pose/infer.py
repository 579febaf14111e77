"""Run a trained model on your pictures: ``python -m pose.infer checkpoint=<path>
input=<image | folder | glob | video> [overrides]``, or an exported one without PyTorch's model
code: ``backend=onnx model_file=<file.onnx>`` (:mod:`pose.runtime`, onnxruntime on the CPU).

Person boxes come from ``boxes=<COCO detection results json>``, a torchvision detector
(``detector=torchvision``, the default: ``detector.model``, ``detector.weights``,
``detector.score_threshold``, ``detector.interval``) or the whole picture
(``detector=whole_image``). The pose step is ``pose.eval``'s (flip test, decoding, rescoring,
OKS-NMS; the checkpoint's settings unless ``flip_test=`` / ``post_process=`` / ``eval.*`` say
otherwise). A video's people get track ids (``track.*``) and optionally One-Euro smoothing
(``smooth.method=one_euro``). Writes, to a new folder (``hydra.run.dir=`` or
``outputs/infer/<time>``; an existing one is refused), ``predictions.json`` (COCO results, plus
``file_name``, ``frame``, ``track_id``), overlays in ``vis/`` and ``<video stem>.mp4``.
"""

from __future__ import annotations

import shutil
import sys
from functools import partial
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pose.config import (
    USER_ERRORS,
    checkpoint_config,
    estimator_from_config,
    register_configs,
    resolve_device,
    run_reporting_errors,
    scoring_settings,
    training_overrides,
)
from pose.data.media import MediaInput, VideoFrames, resolve_input
from pose.engine.detectors import (
    BoxesFile,
    BoxSource,
    TorchvisionDetector,
    WholeImageDetector,
    build_torchvision_detector,
)
from pose.engine.estimator import OnnxPoseEstimator, PoseEstimator
from pose.engine.logger import get_logger, setup_logging
from pose.engine.pipeline import (
    OverlayStyle,
    RunSummary,
    VideoSettings,
    run_on_images,
    run_on_video,
)
from pose.engine.tracking import PoseTracker
from pose.evaluation.decode import POST_PROCESSES

register_configs()
TRACK_METRICS = ("oks", "iou")
SMOOTH_METHODS = ("none", "one_euro")
BACKENDS = ("torch", "onnx")  # onnx: pose.runtime on the file pose.export wrote


def refuse_existing_output(out_dir: Path) -> None:
    """A run never writes into a folder that holds anything."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"output folder {out_dir} already exists and is not empty; nothing "
                              "was changed. Choose another folder with hydra.run.dir=...")


def check_infer_config(cfg: DictConfig) -> None:
    """Reject, before anything runs, pose.infer values the schema cannot type."""
    choices = {"track.metric": (cfg.track.metric, TRACK_METRICS),
               "smooth.method": (cfg.smooth.method, SMOOTH_METHODS),
               "backend": (cfg.backend, BACKENDS)}
    if cfg.post_process is not None:
        choices["post_process"] = (cfg.post_process, POST_PROCESSES)
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{key}={value!r} is not known: expected one of {', '.join(allowed)}")
    for key, value, least in (("batch_size", cfg.batch_size, 1),
                              ("detector.interval", cfg.detector.interval, 1),
                              ("track.max_age", cfg.track.max_age, 0)):
        if value < least:
            raise ValueError(f"{key}={value} must be at least {least}")
    if (cfg.backend == "onnx") != (cfg.model_file is not None):
        raise ValueError("backend=onnx runs model_file=<file.onnx> (written by pose.export), and "
                         "model_file= needs backend=onnx")
    if cfg.backend == "onnx" and OmegaConf.select(cfg, "checkpoint", default=None) is not None:
        raise ValueError("backend=onnx runs model_file= (its metadata names the model); "
                         "checkpoint= is for backend=torch")


def build_box_source(cfg: DictConfig, media: MediaInput, device: Any) -> BoxSource:
    """``boxes=`` (checked against the input), else the configured detector."""
    if cfg.boxes:
        category = getattr(cfg.detector, "category_id", 1)
        source = BoxesFile(cfg.boxes, video=media.is_video, category_id=category)
        if media.is_video:
            frames = VideoFrames(media.video)
            frames.close()
            source.check_frames(frames.frame_count, cfg.input)
        else:
            source.check_images(media.images, cfg.input)
        return source
    if cfg.detector.name == "whole_image":
        return WholeImageDetector()
    model = build_torchvision_detector(cfg.detector.model, cfg.detector.weights)
    return TorchvisionDetector(model, device, cfg.detector.score_threshold,
                               cfg.detector.category_id, cfg.detector.batch_size)


def build_estimator(cli_cfg: DictConfig, device: Any) -> tuple[PoseEstimator, str, str]:
    """The estimator of ``checkpoint=`` (PyTorch, on ``device``) or, with ``backend=onnx``, of
    ``model_file=`` (pose.runtime, on the CPU); the phrase naming its weights; the model's
    name."""
    if cli_cfg.backend == "onnx":
        estimator = OnnxPoseEstimator(cli_cfg.model_file, scoring_settings(cli_cfg),
                                      cli_cfg.batch_size, cli_cfg.flip_test, cli_cfg.post_process)
        return estimator, f"the exported model {cli_cfg.model_file}", estimator.model_name
    overrides = training_overrides(list(HydraConfig.get().overrides.task))
    cfg, checkpoint, ours = checkpoint_config(cli_cfg, overrides)
    estimator, weights = estimator_from_config(cfg, checkpoint, ours, device, cli_cfg.batch_size,
                                               cli_cfg.flip_test, cli_cfg.post_process)
    return estimator, weights, cfg.model.name


def video_settings(cfg: DictConfig, keypoints: Any, fps: float,
                   style: OverlayStyle | None) -> VideoSettings:
    """Detector interval, tracking (on by default for a video) and smoothing from ``cfg``."""
    tracker = None
    if cfg.track.enabled is not False:
        smoothing = None
        if cfg.smooth.method == "one_euro":
            smoothing = (cfg.smooth.min_cutoff, cfg.smooth.beta)
        tracker = PoseTracker(cfg.track.max_age, cfg.track.metric, cfg.track.threshold,
                              keypoints.oks_sigmas, smoothing, fps)
    return VideoSettings(detector_interval=cfg.detector.interval,
                         kpt_threshold=cfg.kpt_threshold, person_threshold=cfg.person_threshold,
                         tracker=tracker, style=style)


def counted(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def summary_line(summary: RunSummary, media: MediaInput, out_dir: Path,
                 person_threshold: float) -> str:
    """The closing lines: inputs, people, time and where the outputs are; skipped images."""
    unit = ("frame", "frames") if media.is_video else ("image", "images")
    rate = summary.inputs / summary.seconds if summary.seconds > 0 else 0.0
    line = (f"pose.infer: {counted(summary.inputs, *unit)}, "
            f"{counted(summary.people, 'person', 'people')} "
            f"({summary.confident} with a pose score of at least {person_threshold:g}) in "
            f"{summary.seconds:.1f} s ({rate:.1f} {unit[1]}/s); outputs in {out_dir}")
    if summary.skipped:
        shown = ", ".join(summary.skipped[:5]) + (" ..." if len(summary.skipped) > 5 else "")
        skipped = counted(len(summary.skipped), "unreadable image", "unreadable images")
        line += f"\npose.infer: {skipped} skipped: {shown}"
    return line


def infer(cli_cfg: DictConfig) -> RunSummary:
    """Check everything (input, boxes, checkpoint, detector), then run into the output folder
    (checked to be empty or absent by :func:`run_cleaning_up`)."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    check_infer_config(cli_cfg)
    device = resolve_device(cli_cfg.device)
    media = resolve_input(cli_cfg.input, cli_cfg.recursive)
    box_source = build_box_source(cli_cfg, media, device)
    estimator, weights, model_name = build_estimator(cli_cfg, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    logger = setup_logging(out_dir)
    logger.info("running %s (%s) on %s, %s, flip test %s", weights, model_name,
                cli_cfg.input, "boxes from " + (cli_cfg.boxes or cli_cfg.detector.name),
                "on" if estimator.decoding.flip_test else "off")
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cli_cfg))
    style = None
    if cli_cfg.visualize:
        style = OverlayStyle(estimator.keypoints, cli_cfg.kpt_threshold,
                             cli_cfg.person_threshold, cli_cfg.draw_boxes)
    if media.is_video:
        video = VideoFrames(media.video)
        settings = video_settings(cli_cfg, estimator.keypoints, video.fps, style)
        summary = run_on_video(estimator, video, box_source, out_dir, settings)
    else:
        respect_exif = cli_cfg.respect_exif
        if respect_exif is None:  # boxes files refer to the pixels as stored, as COCO's do
            respect_exif = not cli_cfg.boxes
        summary = run_on_images(estimator, media.images, box_source, out_dir, style,
                                cli_cfg.batch_size, respect_exif, cli_cfg.person_threshold)
    print(summary_line(summary, media, out_dir, cli_cfg.person_threshold))
    return summary


def remove_outputs(out_dir: Path) -> None:
    """Everything a failed run wrote into ``out_dir`` (which was empty or absent when it
    started), and the folder itself unless it existed before the run."""
    logger = get_logger()
    for handler in list(logger.handlers):  # the run's log.txt
        if Path(getattr(handler, "baseFilename", "/")).parent == out_dir.resolve():
            logger.removeHandler(handler)
            handler.close()
    if not out_dir.is_dir():
        return
    if str(out_dir.resolve()) in _EXISTING_RUN_DIRS:
        for path in out_dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    else:
        shutil.rmtree(out_dir)


def run_cleaning_up(cli_cfg: DictConfig) -> RunSummary:
    """:func:`infer`; a run that fails on bad input leaves nothing behind (Hydra makes the
    output folder before the checks run; log.txt and config.yaml are written before the first
    image is read)."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    refuse_existing_output(out_dir)  # before the clean-up can touch it
    try:
        return infer(cli_cfg)
    except (*USER_ERRORS, OmegaConfBaseException):
        remove_outputs(out_dir)
        raise


# hydra.run.dir= folders that existed before Hydra started (it makes the folder at start-up).
_EXISTING_RUN_DIRS: set[str] = set()


@hydra.main(version_base=None, config_path="../conf", config_name="infer")
def main(cfg: DictConfig) -> None:
    run_reporting_errors("pose.infer", partial(run_cleaning_up, cfg))


def check_arguments(arguments: list[str]) -> None:
    """Before Hydra starts: the two required keys, and a named output folder not in use."""
    required = {"checkpoint": ("a .pt file written by pose.train, or official HRNet / "
                               "Lite-HRNet / mmpose weights with model=<name>"),
                "input": "an image, a folder of images, a glob or a video"}
    if "backend=onnx" in arguments:  # the exported file replaces the checkpoint
        required.pop("checkpoint")
    for key, what in required.items():
        if not any(arg.startswith(f"{key}=") for arg in arguments):
            sys.exit(f"pose.infer: error: {key}=<path> is required ({what})")
    for arg in arguments:
        if arg.startswith("hydra.run.dir="):
            run_dir = Path(arg.split("=", 1)[1])
            if run_dir.exists():
                _EXISTING_RUN_DIRS.add(str(run_dir.resolve()))
            try:
                refuse_existing_output(run_dir)
            except FileExistsError as error:
                sys.exit(f"pose.infer: error: {error}")


def run_command_line() -> None:
    """``python -m pose.infer ...``: the argument checks, then the Hydra application."""
    if not any(arg.startswith("-") for arg in sys.argv[1:]):  # --help, --cfg, ...: Hydra's
        check_arguments(sys.argv[1:])
    main()


if __name__ == "__main__":
    run_command_line()
