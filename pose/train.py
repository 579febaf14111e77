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

from pose.config import (
    build_dataset,
    build_evaluator,
    build_val_dataset,
    check_eval_config,
    decode_settings,
    evaluation_metric,
    record_keypoints,
    register_configs,
    resolve_device,
    run_reporting_errors,
    to_plain,
)
from pose.data import TopDownDataset, build_loader
from pose.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from pose.engine.checkpoint import load_resume_checkpoint, resume_checkpoint_path
from pose.engine.distributed import (
    DistributedContext,
    ResumableSampler,
    broadcast_object,
    cleanup_distributed,
    decide_on_main,
    init_distributed,
    shared_output_dir,
)
from pose.engine.ema import ModelEma
from pose.engine.inference import evaluate_model, evaluation_loader
from pose.engine.logger import get_logger, prediction_pictures, setup_logging
from pose.engine.optim import build_optimizer, build_scheduler
from pose.engine.precision import (
    autocast_choice,
    autocast_dtype,
    channels_last_choice,
    grad_scaler_for,
    prepare_model,
)
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

    def resume_path() -> Path | None:
        run_folder.claim()  # one run at a time in a folder
        path = resume_checkpoint_path(cfg.train.resume, run_dir)
        last = run_dir / "last.pt"
        if last.exists() and (path is None or path.resolve() != last.resolve()):
            raise FileExistsError(f"{run_dir} already holds a training run (last.pt); nothing "
                                  "was changed. Continue it with train.resume=true, or choose "
                                  "another folder with hydra.run.dir=...")
        return path

    if not context.is_main:
        run_folder.keep()  # rank 0's to lock and remove
    return run_dir, decide_on_main(resume_path)


def train(cfg: DictConfig) -> None:
    # First: a run refused before training starts removes the folder Hydra made for it.
    with RunFolder(HydraConfig.get().runtime.output_dir) as run_folder:
        context = init_distributed(resolve_device(cfg.device))
        try:
            run_training(cfg, context, run_folder)
        finally:
            cleanup_distributed()


def build_train_parts(cfg: DictConfig, context: DistributedContext, train_set: TopDownDataset,
                      from_scratch: bool) -> TrainParts:
    """Model (with the backbone weights of ``model.pretrained`` on a fresh run), its training
    wrapper (DDP, channels_last, compile), EMA, loss, optimizer, schedule and loss scaler."""
    model = create_model(cfg.model.name, num_joints=cfg.model.num_joints)
    if cfg.model.pretrained and from_scratch:
        message = load_backbone_weights(model, cfg.model.pretrained, model_name=cfg.model.name,
                                        trust_checkpoint=cfg.trust_checkpoint)
        get_logger().info("%s", message)
    train_model = prepare_model(model, context, channels_last=cfg.train.channels_last,
                                compile_model=cfg.train.compile, sync_bn=cfg.train.sync_bn,
                                cudnn_benchmark=cfg.train.cudnn_benchmark)
    optimizer = build_optimizer(model.parameters(), cfg.train.optimizer, cfg.train.lr,
                                cfg.train.weight_decay, cfg.train.momentum)
    scheduler = build_scheduler(optimizer, cfg.train.scheduler, epochs=cfg.train.epochs,
                                milestones=list(cfg.train.milestones), gamma=cfg.train.lr_gamma,
                                min_lr=cfg.train.min_lr, warmup_iters=cfg.train.warmup_iters,
                                warmup_ratio=cfg.train.warmup_ratio)
    return TrainParts(
        model, build_loss(cfg.train.loss, use_target_weight=cfg.train.use_target_weight,
                          topk=cfg.train.ohkm_topk,
                          joint_weights=train_set.keypoints.joint_weights),
        optimizer, scheduler, train_model=train_model,
        grad_scaler=grad_scaler_for(
            autocast_dtype(cfg.train.precision, context.device, cfg.model.name), context.device),
        ema=ModelEma(model, cfg.train.ema_decay) if cfg.train.ema else None,
        batch_transform=train_set.batch_transform())


def train_settings(cfg: DictConfig, context: DistributedContext, best_metric: str
                   ) -> TrainSettings:
    return TrainSettings(
        epochs=cfg.train.epochs, max_steps=cfg.train.max_steps,
        accumulate_steps=cfg.train.accumulate_steps,
        autocast=autocast_dtype(cfg.train.precision, context.device, cfg.model.name),
        clip_grad_norm=cfg.train.clip_grad_norm, log_interval=cfg.train.log_interval,
        checkpoint_interval=cfg.train.checkpoint_interval, eval_interval=cfg.train.eval_interval,
        best_metric=best_metric)


def log_image_hook(cfg: DictConfig, val_set: TopDownDataset, device: torch.device):
    """What draws the same val crops with their predictions at every evaluation (None: off)."""
    if cfg.train.num_log_images <= 0:
        return None
    count = min(cfg.train.num_log_images, len(val_set))
    crops = [val_set[index * len(val_set) // count] for index in range(count)]  # spread out
    return partial(prediction_pictures, images=torch.stack([crop["image"] for crop in crops]),
                   joints=torch.stack([crop["joints"] for crop in crops]),
                   skeleton=val_set.keypoints.skeleton, device=device, mean=IMAGENET_MEAN,
                   std=IMAGENET_STD)


def run_training(cfg: DictConfig, context: DistributedContext, run_folder: RunFolder) -> None:
    run_dir, resume_path = prepare_run_dir(cfg, context, run_folder)
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    logger = setup_logging(run_dir, is_main=context.is_main)
    seed_everything(cfg.seed)
    device = context.device
    check_eval_config(cfg.eval, cfg.data.codec)
    logger.info("run folder: %s (device %s, %d process%s)\n%s", run_dir, device,
                context.world_size, "es" if context.enabled else "", OmegaConf.to_yaml(cfg))
    autocast, autocast_reason = autocast_choice(cfg.train.precision, device, cfg.model.name)
    channels_last, channels_last_reason = channels_last_choice(cfg.train.channels_last, device)
    logger.info("autocast %s (%s); channels_last %s (%s)",
                str(autocast).removeprefix("torch.") if autocast else "off", autocast_reason,
                "on" if channels_last else "off", channels_last_reason)

    train_set = build_dataset(cfg.data, train=True, seed=cfg.seed)
    # The set (and so the model's joint count) is fixed in the config before it is written.
    record_keypoints(cfg, train_set.keypoints)
    best_metric = evaluation_metric(cfg, train_set.keypoints)
    logger.info("keypoint set %s (%d keypoints); best.pt by %s", train_set.keypoints.name,
                train_set.keypoints.num_joints, best_metric)
    if context.is_main and (resume_path is None or not (run_dir / "config.yaml").exists()):
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    val_set = build_val_dataset(cfg, keypoints=train_set.keypoints)
    sampler = ResumableSampler(train_set, num_replicas=context.world_size, rank=context.rank,
                               seed=cfg.seed)
    train_loader = build_loader(train_set, cfg.train.batch_size, sampler=sampler, seed=cfg.seed,
                                drop_last=len(sampler) > cfg.train.batch_size,
                                num_workers=cfg.data.num_workers,
                                pin_memory=device.type == "cuda")
    val_loader = evaluation_loader(val_set, cfg.eval.batch_size, context, cfg.data.num_workers)
    logger.info("train: %d people, val: %d people", len(train_set), len(val_set))
    logger.info("annotations not used for training: %s", train_set.skipped_annotations)
    evaluator = build_evaluator(cfg, val_set, device) if context.is_main else None
    decoding = decode_settings(cfg, train_set.keypoints)

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        # Every rank predicts its share; rank 0 scores, writes, and tells the others.
        evaluation = evaluate_model(model, val_loader, evaluator, decoding, context, run_dir)
        if evaluation is not None:
            logger.info("evaluation on %s:\n%s", cfg.data.val_split, evaluation.table())
        return broadcast_object(None if evaluation is None else evaluation.metrics)

    parts = build_train_parts(cfg, context, train_set, from_scratch=resume_path is None)
    resume = None
    if resume_path is not None:
        resume = load_resume_checkpoint(resume_path, trust_checkpoint=cfg.trust_checkpoint)
        logger.info("continuing from %s (step %d)", resume_path, resume["step"])
    log_images = log_image_hook(cfg, val_set, device) if context.is_main else None
    run_folder.keep()  # training starts: what the run writes from here stays
    state = fit(parts, train_loader, run_dir, train_settings(cfg, context, best_metric),
                evaluate=evaluate, config=to_plain(cfg), resume=resume, log_images=log_images,
                context=context)
    logger.info("done after %d steps: best %s %.4f; checkpoints and TensorBoard logs in %s",
                state.step, best_metric, state.best_metric, run_dir)


@hydra.main(version_base=None, config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_reporting_errors("pose.train", partial(train, cfg))


if __name__ == "__main__":
    main()
