"""Train a pose model: ``python -m pose.train experiment=<name> [overrides]``.

Composes the config (conf/train.yaml, an experiment preset, command-line overrides), builds the
data, model, loss and optimizer, and hands them to ``pose.engine.trainer.fit``. The run folder
(Hydra's, ``outputs/<name>/<time>`` unless ``hydra.run.dir=`` says otherwise) receives
``last.pt``, ``best.pt``, TensorBoard events, ``log.txt``, ``results.json`` and ``metrics.json``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pose.config import (
    build_dataset,
    build_val_dataset,
    check_eval_config,
    keypoint_spec,
    register_configs,
    resolve_device,
    run_reporting_errors,
    to_plain,
)
from pose.data import build_loader
from pose.engine.inference import evaluate_coco, predict, write_evaluation
from pose.engine.logger import setup_logging
from pose.engine.trainer import (
    autocast_dtype,
    build_optimizer,
    fit,
    multistep_lr,
    seed_everything,
)
from pose.evaluation import format_metrics_table
from pose.losses import build_loss
from pose.models import create_model, load_backbone_weights

register_configs()


def train(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if (run_dir / "last.pt").exists():
        raise FileExistsError(f"{run_dir} already holds a training run (last.pt); nothing was "
                              "changed. Choose another folder with hydra.run.dir=...")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    logger = setup_logging(run_dir)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    check_eval_config(cfg.eval)
    autocast = autocast_dtype(cfg.train.precision, device)
    logger.info("run folder: %s (device %s)\n%s", run_dir, device, OmegaConf.to_yaml(cfg))

    train_set = build_dataset(cfg.data, train=True, seed=cfg.seed)
    val_set = build_val_dataset(cfg)
    loader_options = {"num_workers": cfg.data.num_workers, "pin_memory": device.type == "cuda"}
    train_loader = build_loader(train_set, cfg.train.batch_size, shuffle=True, seed=cfg.seed,
                                drop_last=len(train_set) > cfg.train.batch_size, **loader_options)
    val_loader = build_loader(val_set, cfg.eval.batch_size, **loader_options)
    logger.info("train: %d people, val: %d people", len(train_set), len(val_set))
    logger.info("annotations not used for training: %s", train_set.skipped_annotations)

    model = create_model(cfg.model.name, num_joints=cfg.model.num_joints).to(device)
    if cfg.model.pretrained:
        logger.info("%s", load_backbone_weights(model, cfg.model.pretrained,
                                                model_name=cfg.model.name))
    if cfg.train.channels_last:  # activations follow the weights' layout from the first conv on
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg.train.loss, use_target_weight=cfg.train.use_target_weight,
                         topk=cfg.train.ohkm_topk)
    optimizer = build_optimizer(model.parameters(), cfg.train.optimizer, cfg.train.lr,
                                cfg.train.weight_decay, cfg.train.momentum)
    scheduler = multistep_lr(optimizer, list(cfg.train.milestones), cfg.train.lr_gamma,
                             cfg.train.warmup_iters, cfg.train.warmup_ratio)
    spec = keypoint_spec(cfg.data)

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        predictions = predict(model, val_loader, device, spec.flip_pairs,
                              flip_test=cfg.eval.flip_test, shift_heatmap=cfg.eval.shift_heatmap,
                              post_process=cfg.eval.post_process, sigma=cfg.data.sigma)
        metrics, results = evaluate_coco(
            predictions, val_set.annotation_file, spec.oks_sigmas,
            visibility_threshold=cfg.eval.visibility_threshold,
            oks_nms_threshold=cfg.eval.oks_nms_threshold)
        write_evaluation(run_dir, metrics, results)
        logger.info("evaluation on %s:\n%s", cfg.data.val_split, format_metrics_table(metrics))
        return metrics

    state = fit(model, train_loader, loss_fn, optimizer, scheduler, device, run_dir,
                epochs=cfg.train.epochs, max_steps=cfg.train.max_steps, evaluate=evaluate,
                config=to_plain(cfg), eval_interval=cfg.train.eval_interval,
                log_interval=cfg.train.log_interval,
                autocast=autocast, batch_transform=train_set.batch_transform())
    logger.info("done after %d steps: best AP %.4f; checkpoints and TensorBoard logs in %s",
                state.step, state.best_ap, run_dir)


@hydra.main(version_base=None, config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_reporting_errors("pose.train", partial(train, cfg))


if __name__ == "__main__":
    main()
