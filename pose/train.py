"""Train a pose model: ``python -m pose.train experiment=<name> [overrides]``.

Composes the config (conf/train.yaml, an experiment preset, command-line overrides), builds the
data, model, loss and optimizer, and hands them to ``pose.engine.trainer.fit``. The run folder
(Hydra's, ``outputs/<name>/<time>`` unless ``hydra.run.dir=`` says otherwise) receives
``last.pt``, ``best.pt``, TensorBoard events, ``log.txt``, ``results.json`` and ``metrics.json``.
``torchrun --nproc_per_node=N -m pose.train ...`` trains on N processes (DDP); rank 0 writes.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DistributedSampler

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
from pose.data.coco import IMAGENET_MEAN, IMAGENET_STD
from pose.engine.checkpoint import load_resume_checkpoint, resume_checkpoint_path
from pose.engine.distributed import (
    DistributedContext,
    ResumableSampler,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
    shared_output_dir,
)
from pose.engine.ema import ModelEma
from pose.engine.inference import (
    PRIMARY_METRICS,
    evaluate_predictions,
    gather_predictions,
    predict,
    write_evaluation,
)
from pose.engine.logger import prediction_pictures, setup_logging
from pose.engine.optim import build_optimizer, build_scheduler
from pose.engine.precision import autocast_dtype, grad_scaler_for, prepare_model
from pose.engine.run_dir import RunFolder
from pose.engine.trainer import TrainParts, TrainSettings, fit, seed_everything
from pose.losses import build_loss
from pose.models import create_model, load_backbone_weights

register_configs()


def prepare_run_dir(cfg: DictConfig, context: DistributedContext,
                    run_folder: RunFolder) -> tuple[Path, Path | None]:
    """The run folder (rank 0's: under torchrun each rank resolved ``${now:}`` itself) and the
    checkpoint to resume from; refuses a folder that holds a run unless resuming it."""
    run_dir = shared_output_dir(Path(HydraConfig.get().runtime.output_dir))
    # Rank 0 decides; every rank raises its error (they all stop, rather than wait for rank 0).
    error, resume_path = None, None
    if context.is_main:
        try:
            run_folder.claim()  # one run at a time in a folder
            resume_path = resume_checkpoint_path(cfg.train.resume, run_dir)
            last = run_dir / "last.pt"
            if last.exists() and (resume_path is None or resume_path.resolve() != last.resolve()):
                raise FileExistsError(f"{run_dir} already holds a training run (last.pt); "
                                      "nothing was changed. Continue it with train.resume=true, "
                                      "or choose another folder with hydra.run.dir=...")
        except (OSError, ValueError) as raised:
            error = raised
    else:
        run_folder.keep()  # rank 0's to lock and remove
    error, resume_path = broadcast_object((error, resume_path))
    if error is not None:
        raise error
    return run_dir, resume_path


def train(cfg: DictConfig) -> None:
    # First: a run refused before training starts removes the folder Hydra made for it.
    with RunFolder(HydraConfig.get().runtime.output_dir) as run_folder:
        context = init_distributed(resolve_device(cfg.device))
        try:
            run_training(cfg, context, run_folder)
        finally:
            cleanup_distributed()


def run_training(cfg: DictConfig, context: DistributedContext, run_folder: RunFolder) -> None:
    run_dir, resume_path = prepare_run_dir(cfg, context, run_folder)
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_path is None or not (run_dir / "config.yaml").exists():
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    logger = setup_logging(run_dir, is_main=context.is_main)
    seed_everything(cfg.seed)
    device = context.device
    check_eval_config(cfg.eval)
    autocast = autocast_dtype(cfg.train.precision, device)
    logger.info("run folder: %s (device %s, %d process%s, autocast %s)\n%s", run_dir, device,
                context.world_size, "es" if context.enabled else "", autocast or "off",
                OmegaConf.to_yaml(cfg))

    train_set = build_dataset(cfg.data, train=True, seed=cfg.seed)
    val_set = build_val_dataset(cfg)
    loader_options = {"num_workers": cfg.data.num_workers, "pin_memory": device.type == "cuda"}
    sampler = ResumableSampler(train_set, num_replicas=context.world_size, rank=context.rank,
                               seed=cfg.seed)
    train_loader = build_loader(train_set, cfg.train.batch_size, sampler=sampler, seed=cfg.seed,
                                drop_last=len(sampler) > cfg.train.batch_size, **loader_options)
    # Under DDP each rank predicts a share of the val set (padded to equal shares; the
    # gathering drops the repeats).
    val_sampler = (DistributedSampler(val_set, context.world_size, context.rank, shuffle=False)
                   if context.enabled else None)
    val_loader = build_loader(val_set, cfg.eval.batch_size, sampler=val_sampler,
                              **loader_options)
    logger.info("train: %d people, val: %d people", len(train_set), len(val_set))
    logger.info("annotations not used for training: %s", train_set.skipped_annotations)

    model = create_model(cfg.model.name, num_joints=cfg.model.num_joints)
    if cfg.model.pretrained and resume_path is None:
        logger.info("%s", load_backbone_weights(model, cfg.model.pretrained,
                                                model_name=cfg.model.name,
                                                trust_checkpoint=cfg.trust_checkpoint))
    train_model = prepare_model(model, context, channels_last=cfg.train.channels_last,
                                compile_model=cfg.train.compile, sync_bn=cfg.train.sync_bn,
                                cudnn_benchmark=cfg.train.cudnn_benchmark)
    ema = ModelEma(model, cfg.train.ema_decay) if cfg.train.ema else None
    loss_fn = build_loss(cfg.train.loss, use_target_weight=cfg.train.use_target_weight,
                         topk=cfg.train.ohkm_topk)
    optimizer = build_optimizer(model.parameters(), cfg.train.optimizer, cfg.train.lr,
                                cfg.train.weight_decay, cfg.train.momentum)
    scheduler = build_scheduler(optimizer, cfg.train.scheduler, epochs=cfg.train.epochs,
                                milestones=list(cfg.train.milestones), gamma=cfg.train.lr_gamma,
                                min_lr=cfg.train.min_lr, warmup_iters=cfg.train.warmup_iters,
                                warmup_ratio=cfg.train.warmup_ratio)
    spec = keypoint_spec(cfg.data)
    resume = None
    if resume_path is not None:
        resume = load_resume_checkpoint(resume_path, trust_checkpoint=cfg.trust_checkpoint)
        logger.info("continuing from %s (step %d)", resume_path, resume["step"])

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        # Every rank predicts its share of the val set (DistributedSampler); the shares are
        # gathered, and rank 0 scores them, writes the files and tells the others the metrics.
        predictions = gather_predictions(predict(
            model, val_loader, device, spec.flip_pairs, flip_test=cfg.eval.flip_test,
            shift_heatmap=cfg.eval.shift_heatmap, post_process=cfg.eval.post_process,
            sigma=cfg.data.sigma))
        metrics = None
        if context.is_main:
            evaluation = evaluate_predictions(
                predictions, val_set, visibility_threshold=cfg.eval.visibility_threshold,
                oks_nms_threshold=cfg.eval.oks_nms_threshold, device=device)
            write_evaluation(run_dir, evaluation.metrics, evaluation.results)
            logger.info("evaluation on %s:\n%s", cfg.data.val_split, evaluation.table())
            metrics = evaluation.metrics
        return broadcast_object(metrics)

    log_images = None
    if cfg.train.num_log_images > 0 and context.is_main:
        # The same val crops at every evaluation, spread over the val set.
        count = min(cfg.train.num_log_images, len(val_set))
        crops = [val_set[index * len(val_set) // count] for index in range(count)]
        images = torch.stack([crop["image"] for crop in crops])
        joints = torch.stack([crop["joints"] for crop in crops])
        log_images = partial(prediction_pictures, images=images, joints=joints,
                             skeleton=spec.skeleton, device=device, mean=IMAGENET_MEAN,
                             std=IMAGENET_STD)

    parts = TrainParts(model, loss_fn, optimizer, scheduler, train_model=train_model,
                       grad_scaler=grad_scaler_for(autocast, device), ema=ema,
                       batch_transform=train_set.batch_transform())
    settings = TrainSettings(
        epochs=cfg.train.epochs, max_steps=cfg.train.max_steps,
        accumulate_steps=cfg.train.accumulate_steps, autocast=autocast,
        clip_grad_norm=cfg.train.clip_grad_norm, log_interval=cfg.train.log_interval,
        checkpoint_interval=cfg.train.checkpoint_interval, eval_interval=cfg.train.eval_interval,
        best_metric=PRIMARY_METRICS[cfg.data.dataset])
    run_folder.keep()  # training starts: what the run writes from here stays
    state = fit(parts, train_loader, run_dir, settings, evaluate=evaluate, config=to_plain(cfg),
                resume=resume, log_images=log_images, context=context)
    logger.info("done after %d steps: best %s %.4f; checkpoints and TensorBoard logs in %s",
                state.step, PRIMARY_METRICS[cfg.data.dataset], state.best_metric, run_dir)


@hydra.main(version_base=None, config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_reporting_errors("pose.train", partial(train, cfg))


if __name__ == "__main__":
    main()
