"""Export a checkpoint as ONNX: ``python -m pose.export checkpoint=<path> [output=<file.onnx>]
[batch=dynamic|N] [decode=true|false] [half=false] [opset=17] [overwrite=false]``.

The model, its input size, keypoint set and decoding come from the checkpoint's config, as in
pose.eval; official HRNet / Lite-HRNet / mmpose weights name the model with ``model=<name>`` or
``experiment=<name>``. The file carries its metadata (README, "Export and deployment"); parity
with PyTorch is checked on crops of the val split (``data.root``) or, without it, of generated
people, and printed. ``pose.runtime.OnnxPoseModel`` runs the file without torch.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from pose.config import (
    Config,
    build_val_dataset,
    check_eval_config,
    checkpoint_config,
    decode_settings,
    keypoint_spec,
    model_from_checkpoint,
    register_configs,
    run_reporting_errors,
)
from pose.engine.export import (
    check_opset,
    check_parity,
    export_metadata,
    export_onnx,
    file_sha256,
    synthetic_crops,
)

register_configs()
TRAINING_KEYS = set(Config.__dataclass_fields__) | {"experiment"}


def training_overrides(overrides: list[str]) -> list[str]:
    """The overrides of the training schema's keys (model, data, eval, ...; experiment=): the
    ones that apply to a checkpoint's config; the export's own keys (output=, batch=, ...) do
    not exist there."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [text for text, override in zip(overrides, parsed, strict=True)
            if override.key_or_group.split(".")[0].split("@")[0] in TRAINING_KEYS]


def parse_batch(batch: str) -> int | None:
    """``batch=dynamic`` -> None, ``batch=N`` -> N (a positive integer)."""
    if str(batch) == "dynamic":
        return None
    if not str(batch).isdigit() or int(batch) < 1:
        raise ValueError(f"batch={batch} is not 'dynamic' or a positive batch size")
    return int(batch)


def output_path(cli_cfg: DictConfig) -> Path:
    """The file to write: ``output=`` or the checkpoint's name with .onnx; an existing file is
    refused unless ``overwrite=true``."""
    path = Path(cli_cfg.output or Path(cli_cfg.checkpoint).with_suffix(".onnx"))
    if path.exists() and not cli_cfg.overwrite:
        raise FileExistsError(f"{path} already exists; nothing was changed. Choose another "
                              "output=... or pass overwrite=true to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")
    return path


def parity_images(cfg: DictConfig, count: int) -> tuple[torch.Tensor, str]:
    """Up to ``count`` crops of the val split of ``cfg.data`` (as pose.eval cuts them) or, when
    the dataset is not there, of generated people; and a phrase saying which."""
    try:
        dataset = build_val_dataset(cfg)
    except OSError:
        return (synthetic_crops(tuple(cfg.data.image_size), count),
                f"generated people (no val split at data.root={cfg.data.root})")
    items = (dataset[index] for index in range(min(count, len(dataset))))
    crops = [item["image"] for item in items if item is not None]
    return torch.stack(crops), f"{cfg.data.root} {cfg.data.val_split}"


def export(cli_cfg: DictConfig) -> Path:
    check_opset(cli_cfg.opset)
    if cli_cfg.parity_crops < 1:
        raise ValueError(f"parity_crops={cli_cfg.parity_crops}: the parity check needs at least "
                         "one crop")
    batch = parse_batch(cli_cfg.batch)
    path = output_path(cli_cfg)
    overrides = training_overrides(list(HydraConfig.get().overrides.task))
    cfg, checkpoint, ours = checkpoint_config(cli_cfg, overrides)
    check_eval_config(cfg.eval, cfg.data.codec)
    if cfg.data.codec == "udp":
        # pose.runtime cuts and decodes with the official geometry only; UDP's differs by a pixel.
        raise ValueError(f"data.codec={cfg.data.codec}: pose.export writes models of the official "
                         "grid only, data.codec=heatmap or dark (pose.runtime has no UDP crop or "
                         "decoding)")
    model, weights = model_from_checkpoint(cfg, checkpoint, ours)
    model.eval()
    input_size = tuple(cfg.data.image_size)
    stride = model.heatmap_stride
    if tuple(cfg.data.heatmap_size) != (input_size[0] // stride, input_size[1] // stride):
        raise ValueError(f"data.heatmap_size={list(cfg.data.heatmap_size)} is not "
                         f"data.image_size={list(input_size)} / {stride}: the model's heatmaps "
                         "are 1/4 of its input")
    metadata = export_metadata(
        cfg.model.name, file_sha256(cfg.checkpoint), keypoint_spec(cfg.data), input_size, stride,
        decoding=cfg.eval.post_process, target_sigma=cfg.data.sigma,
        flip_test=cfg.eval.flip_test, shift_heatmap=decode_settings(cfg).shift_heatmap,
        decode=cli_cfg.decode, half=cli_cfg.half, batch=batch)
    export_onnx(model, path, input_size, metadata=metadata, batch=batch, decode=cli_cfg.decode,
                half=cli_cfg.half, opset=cli_cfg.opset)
    outputs = "heatmaps, keypoints, scores" if cli_cfg.decode else "heatmaps"
    print(f"wrote {path}: {cfg.model.name} ({weights}), input images "
          f"[{batch or 'N'}, 3, {input_size[1]}, {input_size[0]}], outputs {outputs}, "
          f"{metadata.precision}, opset {cli_cfg.opset}")
    images, source = parity_images(cfg, cli_cfg.parity_crops)
    parity = check_parity(model, path, images)
    print(f"parity with PyTorch on {source}: {parity.summary()}")
    if not parity.passed:
        raise ValueError(f"parity check failed for {path} (kept for inspection): "
                         f"{parity.summary()}")
    return path


@hydra.main(version_base=None, config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    run_reporting_errors("pose.export", partial(export, cfg))


if __name__ == "__main__":
    if not any(arg.startswith(("checkpoint=", "-")) for arg in sys.argv[1:]):
        sys.exit("pose.export: error: checkpoint=<path> is required (a .pt file written by "
                 "pose.train, or official HRNet / Lite-HRNet / mmpose weights with model=<name>)")
    main()
