"""Typed configuration schema (Hydra structured configs) and the objects a config builds.

The schema gives every key its type and default, so a typo in an override or a preset is an error
at start-up rather than a silently ignored setting. This module and the two entry points are the
only places that read a config: everything they build takes plain arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn

from pose.data import AugmentationParams, CocoKeypoints, MpiiKeypoints, TopDownDataset
from pose.data.keypoints import (
    KEYPOINT_SPECS,
    KeypointSpec,
    keypoint_spec_from_dict,
    load_keypoint_spec,
    shipped_keypoint_sets,
)
from pose.data.transforms import CODECS
from pose.evaluation.decode import POST_PROCESSES, DecodeSettings, default_shift_heatmap
from pose.evaluation.evaluators import (
    EvaluationSettings,
    Evaluator,
    MpiiEvaluator,
    coco_metric_names,
    default_metric,
    evaluator_for,
    ranking_metric,
)
from pose.evaluation.nms import NMS_METHODS


@dataclass
class ModelConfig:
    name: str = "hrnet_w32"  # a name from pose.models.list_models()
    # The keypoint set gives it (data.keypoints); a preset that states it must agree.
    num_joints: int | None = None
    # pose.train: backbone weights to start from (an official HRNet ImageNet checkpoint, a local
    # file; the pose head stays initialised). None: train from the random initialisation.
    pretrained: str | None = None


@dataclass
class DataConfig(AugmentationParams):
    """``data.*``: the dataset, the crop geometry, the loader; and, inherited from
    :class:`pose.data.AugmentationParams` (one definition), the training augmentation keys
    (``scale_factor``, ``rotation_factor``, ``rotation_prob``, ``flip``, ``half_body_prob``,
    ``half_body_min_joints``, colour jitter ``brightness``/``contrast``/``saturation`` and their
    ``*_prob``), official HRNet COCO values by default."""

    # The dataset format and its evaluation: "coco" (any COCO-format keypoint json: PCK, EPE,
    # and COCO AP when the keypoint set has sigmas) or "mpii" (HRNet's MPII json: PCKh, EPE).
    dataset: str = "coco"
    # The keypoint set: a name from conf/keypoints/ or the path of a YAML file of one (a mapping
    # of its keys in a checkpoint's config). None: COCO format, the set with the json's
    # category's keypoint names (a shipped one, or one built from the category); MPII: mpii.
    keypoints: Any = None
    root: str = "data/coco"  # dataset folder, layout in data/README.md
    train_split: str = "train2017"
    val_split: str = "val2017"
    # COCO format: the annotation jsons and image folders (a file_name is relative to its image
    # folder). None: <root>/annotations/person_keypoints_<split>.json and <root>/<split>/ (or
    # <root>/images/<split>/).
    train_annotation_file: str | None = None
    val_annotation_file: str | None = None
    train_image_dir: str | None = None
    val_image_dir: str | None = None
    category_id: int | None = None  # COCO format: the category (None: the one with keypoints)
    image_size: list[int] = field(default_factory=lambda: [192, 256])  # network input (w, h), px
    heatmap_size: list[int] = field(default_factory=lambda: [48, 64])  # heatmap (w, h), cells
    sigma: float = 2.0  # Gaussian target standard deviation, heatmap cells
    # How joints become crops and targets: "heatmap" (official HRNet), "dark" (the official crop
    # with DARK's unbiased targets, Zhang et al. 2020: peaks at the exact sub-cell position) or
    # "udp" (unbiased data processing, Huang et al. 2020; evaluate with eval.post_process=udp).
    codec: str = "heatmap"
    num_workers: int = 4
    # Training loader speed-ups (data/README.md). reduced_decoding: decode JPEGs at 1/2, 1/4 or
    # 1/8 size when the crop is that much smaller than the person box (same crop up to
    # interpolation, not bit-equal to the official one). device_augmentation: the loader only
    # decodes; the crop, colour, normalisation and targets run batched on the training device.
    reduced_decoding: bool = False
    device_augmentation: bool = False


@dataclass
class TrainConfig:
    epochs: int = 210
    max_steps: int | None = None  # stop after this many optimizer steps (None: run all epochs)
    batch_size: int = 32  # per process (per GPU under DDP)
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0  # adam, sgd: L2 in the gradient; adamw: decoupled
    momentum: float = 0.9  # sgd only
    scheduler: str = "multistep"  # multistep | cosine (both per epoch, after the warmup)
    milestones: list[int] = field(default_factory=lambda: [170, 200])  # 0-based epoch indices
    lr_gamma: float = 0.1
    min_lr: float = 0.0  # cosine: the LR of the last epoch
    # mmcv linear warmup (Lite-HRNet: 500, 0.001): the LR factor rises linearly from
    # warmup_ratio to 1 over the first warmup_iters optimizer steps, on top of the schedule.
    warmup_iters: int = 0
    warmup_ratio: float = 0.001
    clip_grad_norm: float | None = None  # clip the global gradient norm to this (None: off)
    accumulate_steps: int = 1  # batches whose gradients add up to one optimizer step
    # An exponential moving average of the weights: evaluated instead of the weights (best.pt
    # by its metric), stored in checkpoints; pose.eval evaluates it.
    ema: bool = False
    ema_decay: float = 0.9998
    loss: str = "mse"  # mse | ohkm
    ohkm_topk: int = 8
    use_target_weight: bool = True
    eval_interval: int = 10  # evaluate every N epochs (and always after the last one)
    log_interval: int = 20  # optimizer steps between TensorBoard loss/lr/throughput points
    num_log_images: int = 8  # fixed val crops drawn to TensorBoard at each evaluation (0: none)
    # Optimizer steps between mid-epoch last.pt checkpoints (0: at the end of each epoch only).
    checkpoint_interval: int = 0
    # Continue a run: true (last.pt of the run folder, hydra.run.dir=), auto (last.pt when the
    # run folder has one, else start: for requeued cluster jobs), or a checkpoint file.
    resume: str | None = None
    # Speed. "auto": bfloat16 autocast on CUDA (float16 with loss scaling on GPUs without
    # bfloat16), float32 on the CPU; "fp32"; "bf16": the forward pass under bfloat16 autocast
    # (weights, optimizer and loss stay float32; about 2x faster on CPUs with AVX512-BF16 or AMX
    # and on tensor cores); "fp16": float16 autocast with a GradScaler.
    precision: str = "auto"
    # NHWC weights and activations (faster convolutions on tensor cores and oneDNN CPUs).
    # None: on with CUDA, off on the CPU.
    channels_last: bool | None = None
    compile: bool = False  # torch.compile the training module (minutes of compilation first)
    cudnn_benchmark: bool = True  # let cuDNN time its convolution algorithms (CUDA only)
    sync_bn: bool = False  # BatchNorm statistics over all GPUs under DDP (CUDA only)


@dataclass
class EvalConfig:
    use_gt_boxes: bool = True  # False: person boxes from det_file, as the published numbers
    det_file: str | None = None  # COCO-results json of person boxes
    det_score_threshold: float = 0.0  # detections scoring below this are dropped
    flip_test: bool = True
    # Shift the flipped heatmap one column right in the flip test. None: the decoding's default
    # (True for the official decodings, as their flip test; False for "udp", whose flip is exact).
    shift_heatmap: bool | None = None
    # Sub-cell refinement of the argmax: "quarter_offset" (official), "dark" (DARK's Taylor step
    # on the modulated heatmap, with data.sigma), "udp" (DARK-UDP and the inverse UDP warp: the
    # decoding of data.codec=udp, and only of it), "none".
    post_process: str = "quarter_offset"
    batch_size: int = 32
    visibility_threshold: float = 0.2  # joints above this maxval count in the rescoring
    # Duplicate poses per image (COCO): "oks" (official OKS-NMS), "soft_oks" (the official
    # Gaussian soft OKS-NMS, width oks_nms_threshold, at most 20 poses per image) or "none".
    nms: str = "oks"
    oks_nms_threshold: float = 0.9
    num_visualize: int = 8  # val images drawn with predicted skeletons (0: none)
    # The metric that picks best.pt (highest wins), recorded in metrics.json. None: AP for a
    # COCO-format set with OKS sigmas, PCK@0.2 for one without, Mean (PCKh) for MPII.
    metric: str | None = None


@dataclass
class Config:
    name: str = "default"  # experiment name, used in the run folder
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    checkpoint: str | None = None  # pose.eval: the checkpoint to evaluate
    # Read weight files (checkpoint=, model.pretrained=, train.resume) that hold more than
    # tensors and plain types with the full unpickler, which RUNS code the file names: only for
    # files from a source you trust (README, "Weight files"). False: such files are refused.
    trust_checkpoint: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class ExportConfig(Config):
    """pose.export: the training schema (a checkpoint's config) and the export's own keys."""

    output: str | None = None  # the .onnx file; None: beside the checkpoint, its name + .onnx
    overwrite: bool = False  # replace an existing output file
    batch: str = "dynamic"  # "dynamic" or a fixed batch size N
    decode: bool = True  # also output keypoints [N, K, 2] (input px) and scores [N, K]
    half: bool = False  # float16 inside the graph (input and outputs stay float32)
    opset: int = 17  # ONNX opset, 12 to 20
    parity_crops: int = 16  # crops of the val split (or generated people) for the parity check


# ------------------------------------------------------------------------------------------------
# pose.infer: the training schema (a checkpoint's config, or the command line's for official
# weights) plus the keys of running on images and videos.


@dataclass
class WholeImageDetectorConfig:
    """``detector=whole_image``: one box per image or frame (pictures of one person)."""

    name: str = "whole_image"
    interval: int = 1  # accepted for symmetry with torchvision; the box costs nothing


@dataclass
class TorchvisionDetectorConfig:
    """``detector=torchvision``: a ``torchvision.models.detection`` model, batched on the device."""

    name: str = "torchvision"
    model: str = "fasterrcnn_resnet50_fpn_v2"  # any torchvision.models.detection name
    weights: str = "DEFAULT"  # a torchvision weights name (downloaded once) or a local file
    score_threshold: float = 0.5  # boxes scoring below it are dropped
    category_id: int = 1  # the label of a person (torchvision's COCO models: 1)
    batch_size: int = 4  # images per detector forward pass
    # Video: run the detector every N frames; in between, each person's box comes from its
    # keypoints in the previous frame.
    interval: int = 1


@dataclass
class TrackConfig:
    enabled: bool | None = None  # give video people track ids (None: on for a video)
    max_age: int = 30  # frames a track's id waits for its person to come back
    metric: str = "oks"  # greedy matching on "oks" (pose similarity) or "iou" (box overlap)
    threshold: float = 0.3  # the least OKS or IoU of a match


@dataclass
class SmoothConfig:
    method: str = "none"  # "none" or "one_euro" (per track and keypoint)
    min_cutoff: float = 1.0  # One-Euro: cutoff frequency at rest, Hz (lower: smoother)
    beta: float = 0.1  # One-Euro: cutoff added per px/s of speed (higher: less lag)


@dataclass
class InferConfig(Config):
    """``python -m pose.infer``: the training schema (model, data, eval; a pose checkpoint
    brings its own) plus what to run on and how."""

    input: str | None = None  # an image, a folder of images, a glob, or a video
    recursive: bool = False  # a folder's subfolders too
    boxes: str | None = None  # COCO detection results json: person boxes instead of a detector
    # Apply EXIF orientation before predicting (None: yes with a detector, no with boxes=,
    # whose boxes refer to the pixels as stored, as COCO's annotations do).
    respect_exif: bool | None = None
    detector: Any = MISSING  # config group: torchvision | whole_image
    track: TrackConfig = field(default_factory=TrackConfig)
    smooth: SmoothConfig = field(default_factory=SmoothConfig)
    batch_size: int = 32  # crops per forward pass (and images read per step)
    flip_test: bool | None = None  # None: the checkpoint's eval.flip_test
    post_process: str | None = None  # None: the checkpoint's eval.post_process
    # "torch" (checkpoint=), or "onnx": pose.runtime runs model_file=, a file pose.export wrote
    # (its metadata gives the crop size, keypoint set and decoding; onnxruntime on the CPU).
    backend: str = "torch"
    model_file: str | None = None
    visualize: bool = True  # overlays in vis/ and, for a video, <video stem>.mp4
    kpt_threshold: float = 0.3  # joints at or below this confidence are not drawn
    # People whose pose score is below this are not drawn (predictions.json holds every pose)
    # nor followed between detector frames.
    person_threshold: float = 0.3
    draw_boxes: bool = True  # person boxes (and track ids) in the overlays


def register_configs() -> None:
    """Register the schemas with Hydra so ``conf/*.yaml`` compose on top of them."""
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    store.store(name="infer_schema", node=InferConfig)
    store.store(group="detector", name="whole_image_schema", node=WholeImageDetectorConfig)
    store.store(group="detector", name="torchvision_schema", node=TorchvisionDetectorConfig)
    store.store(name="export_schema", node=ExportConfig)


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when present, else the CPU; an unavailable CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name} was asked for, but CUDA is not available here; "
                         "use device=cpu or device=auto")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device={name!r} is not a device: expected auto, cpu, cuda or "
                         "cuda:N") from error


def configured_keypoint_spec(data: DataConfig | DictConfig) -> KeypointSpec | None:
    """The set ``data.keypoints`` names (a shipped name, a YAML path, or a mapping of the YAML
    keys as a checkpoint's config records it); None when it is not given."""
    setting = data.keypoints
    if setting is None:
        return None
    if isinstance(setting, (Mapping, DictConfig)):
        plain = OmegaConf.to_container(setting) if isinstance(setting, DictConfig) else setting
        return keypoint_spec_from_dict(plain, "data.keypoints")
    return load_keypoint_spec(str(setting))


def keypoint_spec(data: DataConfig | DictConfig) -> KeypointSpec:
    """The configured keypoint set (``data.keypoints``), else the default set of the kind of
    data (COCO's 17, MPII's 16). A COCO-format dataset without ``data.keypoints`` takes its set
    from its json instead (``dataset.keypoints``; :func:`record_keypoints` writes it into the
    config of a training run, so a checkpoint's config names its set)."""
    if data.dataset not in KEYPOINT_SPECS:
        raise ValueError(f"data.dataset={data.dataset!r} is not known: expected one of "
                         f"{sorted(KEYPOINT_SPECS)}")
    return configured_keypoint_spec(data) or KEYPOINT_SPECS[data.dataset]


def configured_num_joints(cfg: Config | DictConfig) -> int:
    """``model.num_joints``, or the keypoint set's count when it is not given."""
    if cfg.model.num_joints is not None:
        return cfg.model.num_joints
    return keypoint_spec(cfg.data).num_joints


def record_keypoints(cfg: DictConfig, keypoints: KeypointSpec,
                     checkpoint: str | None = None) -> None:
    """Fix the run's keypoint set in ``cfg``: ``model.num_joints`` becomes the set's count and
    ``data.keypoints`` the set (a shipped set by name, another as the mapping of its keys).

    Raises:
        ValueError: ``model.num_joints`` (from a preset, or from ``checkpoint``'s config)
            differs from the set's keypoint count.
    """
    stated = cfg.model.num_joints
    if stated is not None and stated != keypoints.num_joints:
        described = f"the keypoint set {keypoints.name!r}" + (
            f" ({keypoints.source})" if keypoints.source else "")
        if checkpoint is not None:
            raise ValueError(f"{checkpoint} holds a model of {stated} joints, but "
                             f"{described} has {keypoints.num_joints}")
        raise ValueError(f"model.num_joints={stated} disagrees with {described}, which has "
                         f"{keypoints.num_joints} keypoints; leave model.num_joints out: the "
                         "set gives it")
    cfg.model.num_joints = keypoints.num_joints
    shipped = (keypoints.name in shipped_keypoint_sets()
               and load_keypoint_spec(keypoints.name) == keypoints)
    cfg.data.keypoints = keypoints.name if shipped else keypoints.to_dict()


def evaluation_metric(cfg: Config | DictConfig, keypoints: KeypointSpec) -> str:
    """The metric that picks best.pt: ``eval.metric`` checked against what the evaluation of
    ``keypoints`` reports, or the default of the kind of data."""
    has_sigmas = keypoints.oks_sigmas is not None
    if cfg.data.dataset == "mpii":
        names = MpiiEvaluator.names
    else:
        names = coco_metric_names(has_sigmas, detections=not cfg.eval.use_gt_boxes)
    return ranking_metric(cfg.eval.metric, names, default_metric(cfg.data.dataset, has_sigmas))


def _mpii_keypoints(data: DataConfig | DictConfig) -> KeypointSpec:
    """MPII's set, or the configured one if it has MPII's joint names (PCKh needs them)."""
    keypoints = configured_keypoint_spec(data) or KEYPOINT_SPECS["mpii"]
    if keypoints.joint_names != KEYPOINT_SPECS["mpii"].joint_names:
        raise ValueError(f"data.dataset=mpii is scored with PCKh on MPII's 16 joints, but the "
                         f"keypoint set {keypoints.name!r} ({keypoints.source}) has other "
                         "keypoints: use data.keypoints=mpii, or a COCO-format dataset")
    for key in ("train_annotation_file", "val_annotation_file", "train_image_dir",
                "val_image_dir", "category_id"):
        if getattr(data, key, None) is not None:
            raise ValueError(f"data.{key} is for COCO-format datasets; MPII's files are found "
                             "under data.root (data/README.md)")
    return keypoints


def build_dataset(data: DataConfig | DictConfig, train: bool, det_file: str | None = None,
                  det_score_threshold: float = 0.0, seed: int = 0,
                  keypoints: KeypointSpec | None = None) -> TopDownDataset:
    """The train or val split of the configured dataset (COCO format, or MPII in HRNet's json
    layout), with the keypoint set ``keypoints`` (None: ``data.keypoints``; without it a
    COCO-format dataset's json decides)."""
    if data.dataset not in ("coco", "mpii"):
        raise ValueError(f"data.dataset={data.dataset!r} is not known: expected 'coco' or "
                         "'mpii'")
    augmentation = None
    if train:
        # Every augmentation setting is a data.* key of the same name.
        augmentation = AugmentationParams(
            **{setting.name: getattr(data, setting.name) for setting in fields(AugmentationParams)})
    if data.codec not in CODECS:
        raise ValueError(f"data.codec={data.codec!r} is not known: expected one of "
                         f"{', '.join(CODECS)}")
    split = data.train_split if train else data.val_split
    # Evaluation crops stay exact to the codec's (the official ones by default).
    loading = {"reduced_decoding": train and data.reduced_decoding,
               "device_augmentation": train and data.device_augmentation, "codec": data.codec}
    if data.dataset == "mpii":
        if det_file is not None:
            raise ValueError("data.dataset=mpii is evaluated on its annotated people: set "
                             "eval.use_gt_boxes=true (detection boxes are for COCO)")
        return MpiiKeypoints(
            root=data.root, split=split,
            image_size=tuple(data.image_size), heatmap_size=tuple(data.heatmap_size),
            sigma=data.sigma, train=train, keypoints=keypoints or _mpii_keypoints(data),
            augmentation=augmentation, seed=seed, **loading)
    stage = "train" if train else "val"
    return CocoKeypoints(
        root=data.root, split=split,
        image_size=tuple(data.image_size), heatmap_size=tuple(data.heatmap_size),
        sigma=data.sigma, train=train, det_file=det_file,
        keypoints=keypoints or configured_keypoint_spec(data), augmentation=augmentation,
        det_score_threshold=det_score_threshold, seed=seed,
        annotation_file=getattr(data, f"{stage}_annotation_file", None),
        image_dir=getattr(data, f"{stage}_image_dir", None),
        category_id=getattr(data, "category_id", None),
        **loading)


def check_eval_config(eval_cfg: EvalConfig | DictConfig, codec: str) -> None:
    """Reject, at start-up rather than at the first evaluation, values the schema cannot type,
    and a decoding that does not fit the crops and targets of ``codec`` (``data.codec``)."""
    if eval_cfg.post_process not in POST_PROCESSES:
        raise ValueError(f"eval.post_process={eval_cfg.post_process!r} is not known: expected one "
                         f"of {', '.join(POST_PROCESSES)}")
    if codec not in CODECS:
        raise ValueError(f"data.codec={codec!r} is not known: expected one of {', '.join(CODECS)}")
    # UDP heatmaps sit on another grid than the official ones: each codec has its own inverse.
    if (codec == "udp") != (eval_cfg.post_process == "udp"):
        raise ValueError(f"data.codec={codec} does not go with eval.post_process="
                         f"{eval_cfg.post_process}: data.codec=udp needs eval.post_process=udp, "
                         "and eval.post_process=udp needs data.codec=udp")
    if eval_cfg.nms not in NMS_METHODS:
        raise ValueError(f"eval.nms={eval_cfg.nms!r} is not known: expected one of "
                         f"{', '.join(NMS_METHODS)}")


def decode_settings(cfg: Config | DictConfig,
                    keypoints: KeypointSpec | None = None) -> DecodeSettings:
    """How the evaluation turns heatmaps into keypoints (``eval.*``, the target sigma, the flip
    pairs of ``keypoints``, by default those of :func:`keypoint_spec`). ``eval.shift_heatmap``
    unset: the decoding's own default (no shift under UDP)."""
    keypoints = keypoints or keypoint_spec(cfg.data)
    shift_heatmap = cfg.eval.shift_heatmap
    if shift_heatmap is None:
        shift_heatmap = default_shift_heatmap(cfg.eval.post_process)
    return DecodeSettings(
        flip_pairs=keypoints.flip_pairs, flip_test=cfg.eval.flip_test,
        shift_heatmap=shift_heatmap, post_process=cfg.eval.post_process, sigma=cfg.data.sigma)


def build_evaluator(cfg: Config | DictConfig, dataset: TopDownDataset,
                    device: torch.device) -> Evaluator:
    """The evaluator of ``dataset``, chosen by the kind of data (``data.dataset``)."""
    settings = replace(scoring_settings(cfg), device=device,
                       metric=getattr(cfg.eval, "metric", None))
    return evaluator_for(cfg.data.dataset, dataset, settings)


def build_val_dataset(cfg: Config | DictConfig,
                      keypoints: KeypointSpec | None = None) -> TopDownDataset:
    """Val crops from GT boxes or, with ``eval.use_gt_boxes=false``, from ``eval.det_file``."""
    det_file = None
    if not cfg.eval.use_gt_boxes:
        if not cfg.eval.det_file:
            raise ValueError("eval.use_gt_boxes=false needs eval.det_file=<COCO-results json of "
                             "person boxes>")
        det_file = cfg.eval.det_file
    return build_dataset(cfg.data, train=False, det_file=det_file,
                         det_score_threshold=cfg.eval.det_score_threshold, seed=cfg.seed,
                         keypoints=keypoints)


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python containers (what checkpoints store)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]



def merge_checkpoint_config(cli_cfg: DictConfig, checkpoint_cfg: dict[str, Any],
                            overrides: list[str]) -> DictConfig:
    """The config a checkpoint was trained with, under the overrides given on the command line.

    Order: schema defaults ← the checkpoint's config ← the command line's overrides (each
    override's value is read from Hydra's composed ``cli_cfg``, so it is already typed).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(OmegaConf.structured(Config), checkpoint_cfg)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if override.is_delete():
            raise ValueError(f"'~{key}': deleting config keys is not supported by pose.eval")
        if key == "experiment":
            raise ValueError(f"experiment={override.value()}: a pose checkpoint's config already "
                             "fixes its experiment; override single keys instead (experiment= "
                             "is for official weights, which carry no config)")
        OmegaConf.update(merged, key, OmegaConf.select(cli_cfg, key), merge=False)
    merged.checkpoint = cli_cfg.checkpoint
    return merged


def check_foreign_checkpoint_config(checkpoint: str, overrides: list[str]) -> None:
    """A checkpoint without our config needs the model named on the command line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from pose.models import list_models

    parsed = OverridesParser.create().parse_overrides(overrides)
    if not {override.key_or_group for override in parsed} & {"model", "model.name", "experiment"}:
        raise ValueError(
            f"{checkpoint} is not a pose checkpoint (official HRNet / Lite-HRNet or mmpose "
            "weights?), so it carries no config: say which model it holds with model=<name> "
            f"(one of {', '.join(list_models())}) or experiment=<name>, and the data with "
            "data.root=... (and data.keypoints=, data.image_size=, ... where they differ "
            "from the defaults)")


def checkpoint_config(cli_cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, Any, bool]:
    """Read ``cli_cfg.checkpoint`` and the config to run it with: ``(cfg, checkpoint, ours)``.

    A checkpoint pose.train wrote (``ours``) brings its config, under the command line's
    overrides; official or mmpose weights take the schema defaults under the command line, which
    must name the model. Entry points that read weights (eval, infer, export) start here.
    """
    from pose.models.weights import is_pose_checkpoint, read_checkpoint_file

    checkpoint = read_checkpoint_file(cli_cfg.checkpoint,
                                      trust_checkpoint=cli_cfg.trust_checkpoint)
    ours = is_pose_checkpoint(checkpoint)
    if ours:
        return merge_checkpoint_config(cli_cfg, checkpoint["config"], overrides), checkpoint, ours
    check_foreign_checkpoint_config(cli_cfg.checkpoint, overrides)
    return cli_cfg, checkpoint, ours


def model_from_checkpoint(cfg: DictConfig, checkpoint: Any, ours: bool) -> tuple[nn.Module, str]:
    """The model ``cfg.model`` names, with the checkpoint's weights (on the CPU), and a phrase
    saying which weights those are: the EMA's when training kept one, else the trained ones;
    official and mmpose layouts load through ``load_pretrained``."""
    from pose.models import create_model, load_pretrained
    from pose.models.weights import evaluation_weights, load_model_weights

    model = create_model(cfg.model.name, num_joints=configured_num_joints(cfg))
    if not ours:
        load_pretrained(model, checkpoint, source=cfg.checkpoint, model_name=cfg.model.name)
        return model, f"the weights of {cfg.checkpoint}"
    trained_as = checkpoint["config"].get("model", {}).get("name", "an unknown model")
    weights, which = evaluation_weights(checkpoint)
    load_model_weights(model, weights, model_name=cfg.model.name,
                       source=f"{cfg.checkpoint} (trained as {trained_as})")
    return model, f"the {'EMA' if which == 'ema' else 'trained'} weights of {cfg.checkpoint}"


# FloatingPointError: a NaN or Inf training loss (pose.engine.trainer.NonFiniteLossError).
USER_ERRORS = (OSError, ValueError, KeyError, FloatingPointError)


def run_reporting_errors(program: str, function, *args) -> Any:
    """Run an entry point; a user error (missing file, bad value) ends it with one clear line."""
    import sys

    from omegaconf.errors import OmegaConfBaseException

    from pose.data.loading import worker_death

    try:
        return function(*args)
    except (*USER_ERRORS, OmegaConfBaseException, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        if isinstance(error, RuntimeError):  # a DataLoader worker that died is one line too
            message = worker_death(error)
            if message is None:
                raise
        print(f"{program}: error: {message}", file=sys.stderr)
        sys.exit(2)


# ------------------------------------------------------------------------------------------------
# pose.infer and the PoseEstimator API

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # the Hydra configs


def training_overrides(overrides: list[str]) -> list[str]:
    """The command-line overrides that belong to the training schema (``model``, ``data.*``,
    ``eval.*``, ``experiment``, ...): what :func:`checkpoint_config` merges onto a checkpoint's
    config. pose.infer's own keys (``input``, ``detector.*``, ``track.*``, ...) stay out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    schema = {setting.name for setting in fields(Config)} | {"experiment"}
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [text for text, override in zip(overrides, parsed, strict=True)
            if override.key_or_group.split(".")[0].lstrip("+~") in schema]


def scoring_settings(cfg: Config | DictConfig) -> EvaluationSettings:
    """Rescoring and NMS of predicted people (``eval.visibility_threshold``, ``eval.nms``,
    ``eval.oks_nms_threshold``), as pose.eval and pose.infer apply them."""
    return EvaluationSettings(visibility_threshold=cfg.eval.visibility_threshold,
                              nms=cfg.eval.nms, nms_threshold=cfg.eval.oks_nms_threshold)


def estimator_from_config(cfg: DictConfig, checkpoint: Any, ours: bool, device: torch.device,
                          batch_size: int = 32, flip_test: bool | None = None,
                          post_process: str | None = None) -> tuple[Any, str]:
    """A :class:`pose.engine.estimator.PoseEstimator` of the model ``cfg`` names with the
    checkpoint's weights, its crop size, keypoint set, and evaluation settings (``eval.*``:
    flip test, decoding, rescoring, NMS; ``flip_test`` and ``post_process`` override them when
    given), and the phrase saying which weights those are."""
    from pose.engine.estimator import PoseEstimator
    from pose.engine.precision import use_channels_last

    check_eval_config(cfg.eval, cfg.data.codec)
    decoding = decode_settings(cfg)
    if flip_test is not None:
        decoding = replace(decoding, flip_test=bool(flip_test))
    if post_process is not None:
        if post_process not in POST_PROCESSES:
            raise ValueError(f"post_process={post_process!r} is not known: expected one of "
                             f"{', '.join(POST_PROCESSES)}")
        decoding = replace(decoding, post_process=post_process)
    model, weights = model_from_checkpoint(cfg, checkpoint, ours)
    if use_channels_last(cfg.train.channels_last, device):
        model.to(memory_format=torch.channels_last)
    estimator = PoseEstimator(model, tuple(cfg.data.image_size), decoding, scoring_settings(cfg),
                              keypoint_spec(cfg.data), device, batch_size,
                              codec=cfg.data.codec)
    return estimator, weights


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    """``conf/<config_name>.yaml`` ("train", "eval", "infer", "export") under ``overrides``,
    composed outside a Hydra application (for the Python API and scripts; inside one, its search
    path is used)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():
        return compose(config_name, overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name, overrides=overrides)


def estimator_from_checkpoint(path: str, device: str = "auto", overrides: list[str] | None = None,
                              batch_size: int = 32, flip_test: bool | None = None,
                              post_process: str | None = None) -> tuple[Any, str]:
    """:func:`estimator_from_config` of the checkpoint at ``path``, its config read as pose.infer
    reads it (``overrides``: training-schema keys, e.g. ``experiment=`` for official weights)."""
    overrides = training_overrides(list(overrides or []))
    cli_cfg = compose_config("infer", ["detector=whole_image", *overrides])
    cli_cfg.checkpoint = path
    cfg, checkpoint, ours = checkpoint_config(cli_cfg, overrides)
    return estimator_from_config(cfg, checkpoint, ours, resolve_device(device), batch_size,
                                 flip_test, post_process)
