"""Evaluate a checkpoint: ``python -m pose.eval checkpoint=<path> [overrides]``.

The config comes from the checkpoint; overrides on the command line (``data.root=``,
``eval.use_gt_boxes=false eval.det_file=...``, ``eval.flip_test=``) apply on top. A checkpoint
that pose.train did not write (official HRNet or Lite-HRNet weights, mmpose 0.x or 1.x) carries
no config: the command line gives it (``model=<name>`` or ``experiment=<name>``, ``data.root=``,
...) over the schema defaults, and the weights load through ``pose.models.load_pretrained``. Writes
``results.json`` (COCO results format), ``metrics.json`` and ``predictions.jpg`` to a new folder
beside the checkpoint (or ``hydra.run.dir=``), and prints the AP table.
``torchrun --nproc_per_node=N -m pose.eval ...`` shares the crops out over N processes.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pose.config import (
    build_evaluator,
    build_val_dataset,
    check_eval_config,
    checkpoint_config,
    decode_settings,
    model_from_checkpoint,
    record_keypoints,
    register_configs,
    resolve_device,
    run_reporting_errors,
)
from pose.engine.distributed import (
    DistributedContext,
    cleanup_distributed,
    decide_on_main,
    init_distributed,
    shared_output_dir,
)
from pose.engine.inference import evaluate_model, evaluation_loader
from pose.engine.logger import setup_logging
from pose.engine.precision import use_channels_last
from pose.engine.run_dir import RunFolder
from pose.visualize import save_prediction_grid

register_configs()
# The default output folder sits beside the checkpoint (conf/eval.yaml).
OmegaConf.register_new_resolver("pose_dirname", lambda path: os.path.dirname(path) or ".",
                                replace=True)


def evaluate(cli_cfg: DictConfig) -> dict[str, float]:
    # First: a run refused before evaluating removes the folder Hydra made for it.
    with RunFolder(HydraConfig.get().runtime.output_dir) as run_folder:
        cfg, checkpoint, ours = checkpoint_config(cli_cfg, list(HydraConfig.get().overrides.task))
        context = init_distributed(resolve_device(cfg.device))
        try:
            return run_evaluation(cfg, checkpoint, ours, context, run_folder)
        finally:
            cleanup_distributed()


def claim_output_dir(out_dir: Path, run_folder: RunFolder) -> None:
    """One run at a time in a folder, and an evaluation is never written over another one."""
    run_folder.claim()
    if (out_dir / "metrics.json").exists() or (out_dir / "results.json").exists():
        raise FileExistsError(f"{out_dir} already holds an evaluation; nothing was changed. "
                              "Choose another folder with hydra.run.dir=...")


def run_evaluation(cfg: DictConfig, checkpoint: Any, ours: bool,
                   context: DistributedContext, run_folder: RunFolder) -> dict[str, float]:
    """Predict, score and write the evaluation. Under torchrun every process predicts its share
    of the crops; rank 0 scores the gathered predictions and writes the files."""
    out_dir = shared_output_dir(Path(HydraConfig.get().runtime.output_dir))
    if not context.is_main:
        run_folder.keep()  # rank 0's to lock and remove
    decide_on_main(partial(claim_output_dir, out_dir, run_folder))
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    logger = setup_logging(out_dir, is_main=context.is_main)
    device = context.device
    check_eval_config(cfg.eval, cfg.data.codec)

    dataset = build_val_dataset(cfg)
    # The model's joint count is the set's; a checkpoint of another count is refused.
    record_keypoints(cfg, dataset.keypoints, checkpoint=cfg.checkpoint if ours else None)
    model, weights = model_from_checkpoint(cfg, checkpoint, ours)
    logger.info("evaluating %s", weights)
    model.to(device)
    if use_channels_last(cfg.train.channels_last, device):
        model.to(memory_format=torch.channels_last)
    loader = evaluation_loader(dataset, cfg.eval.batch_size, context, cfg.data.num_workers)
    boxes = "GT boxes" if cfg.eval.use_gt_boxes else f"detections from {cfg.eval.det_file}"
    logger.info("evaluating %s (%s) on %s/%s, %d crops from %s, flip test %s, %d process%s",
                cfg.checkpoint, cfg.model.name, cfg.data.root, cfg.data.val_split, len(dataset),
                boxes, "on" if cfg.eval.flip_test else "off", context.world_size,
                "es" if context.enabled else "")
    evaluator = build_evaluator(cfg, dataset, device) if context.is_main else None
    run_folder.keep()  # evaluating starts: what the run writes from here stays
    evaluation = evaluate_model(model, loader, evaluator, decode_settings(cfg, dataset.keypoints),
                                context, out_dir)
    if evaluation is None:  # not rank 0
        return {}
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    if cfg.eval.num_visualize > 0:
        picture = save_prediction_grid(dataset, evaluation.results, out_dir / "predictions.jpg",
                                       skeleton=dataset.keypoints.skeleton,
                                       num_images=cfg.eval.num_visualize,
                                       score_threshold=cfg.eval.visibility_threshold)
        logger.info("predicted skeletons on val images: %s", picture)
    print(evaluation.table())
    logger.info("results.json and metrics.json written to %s", out_dir)
    return evaluation.metrics


@hydra.main(version_base=None, config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_reporting_errors("pose.eval", partial(evaluate, cfg))


if __name__ == "__main__":
    if not any(arg.startswith(("checkpoint=", "-")) for arg in sys.argv[1:]):
        sys.exit("pose.eval: error: checkpoint=<path> is required (a .pt file written by "
                 "pose.train, or official HRNet / Lite-HRNet / mmpose weights with model=<name>)")
    main()
