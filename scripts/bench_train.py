"""Training throughput: images/s, the fraction of time spent waiting for data, and peak memory.

For each experiment preset (default: hrnet_w32_256x192 and lite_hrnet_18_256x192) and each
execution mode, runs the training loop itself (``pose.engine.trainer.train_one_epoch`` with the
preset's model, loss and optimizer) at batch 32 and prints one JSON object:

* ``in-memory`` rows: one pre-built batch of random crops fed again and again, so the figure is
  what the model and the loop allow (data wait is ~0);
* ``loader`` rows: the real data pipeline (COCO-format JPEGs generated into a temporary folder,
  ``CocoKeypoints`` with the preset's augmentation, DataLoader workers), end to end.

Modes: ``fp32`` (eager float32), ``fp32_cl`` (+ channels_last), ``fp32_cl_compile`` (+
``torch.compile``), ``bf16_cl`` (bfloat16 autocast + channels_last) and ``bf16_cl_compile``.
Defaults: on CUDA ``fp32``, ``bf16_cl`` and ``bf16_cl_compile``; on the CPU ``fp32``,
``fp32_cl``, ``fp32_cl_compile`` and, where the CPU has native bfloat16 (what
``train.precision=auto`` picks), ``bf16_cl``. ``warmup_s`` is the time of the untimed first
steps: with compile, the compilation. ``cpu_seconds_per_step`` is the process's CPU time (all
threads) per timed step: on a shared machine it moves less with the load than wall time does.
Every configuration runs in its own process, so its peak memory (CUDA: max allocated; CPU: the
process's max resident set) is its own. To see the AVX2/float32 case on a newer CPU:
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python scripts/bench_train.py``.

    python scripts/bench_train.py
    python scripts/bench_train.py --experiments lite_hrnet_18_256x192 --modes fp32 --steps 3
    OMP_NUM_THREADS=1 python scripts/bench_train.py --no-loader --batch-size 8
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from pose.config import build_dataset, configured_num_joints, register_configs, resolve_device
from pose.data import collate_skip_none
from pose.engine.distributed import DistributedContext, ResumableSampler
from pose.engine.logger import StepLogger
from pose.engine.optim import build_optimizer
from pose.engine.precision import (
    autocast_dtype,
    cpu_bfloat16_support,
    grad_scaler_for,
    prepare_model,
)
from pose.engine.trainer import TrainParts, TrainSettings, TrainState, train_one_epoch
from pose.losses import build_loss
from pose.models import create_model
from pose.synthetic import generate_coco_dataset

CONF_ROOT = Path(__file__).resolve().parents[1] / "conf"
MODES = {  # precision, channels_last, compile
    "fp32": ("fp32", False, False),
    "fp32_cl": ("fp32", True, False),
    "fp32_cl_compile": ("fp32", True, True),
    "bf16_cl": ("bf16", True, False),
    "bf16_cl_compile": ("bf16", True, True),
}


class CapturedScalars:
    """Stands in for the TensorBoard writer: keeps the last value of each scalar."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.values.update(values)

    def images(self, tag: str, images, step: int) -> None:
        pass


def preset(name: str, overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_ROOT), version_base=None):
        return compose(config_name="train", overrides=[f"experiment={name}", *overrides])


def measure(args: argparse.Namespace) -> dict:
    """One configuration, in this process: warm-up steps, then ``args.steps`` timed steps."""
    device = resolve_device(args.device)
    cfg = preset(args.experiment, [f"data.root={args.data}"] if args.data else [])
    precision, channels_last, compile_model = MODES[args.mode]
    torch.manual_seed(0)
    num_joints = configured_num_joints(cfg)
    model = create_model(cfg.model.name, num_joints=num_joints)
    context = DistributedContext(device=device)
    train_model = prepare_model(model, context, channels_last=channels_last,
                                compile_model=compile_model)
    autocast = autocast_dtype(precision, device)
    optimizer = build_optimizer(model.parameters(), cfg.train.optimizer, cfg.train.lr,
                                cfg.train.weight_decay, cfg.train.momentum)
    loss_fn = build_loss(cfg.train.loss, use_target_weight=cfg.train.use_target_weight)
    batch_size = args.batch_size
    width, height = cfg.data.image_size
    heatmap_width, heatmap_height = cfg.data.heatmap_size

    if args.data is None:  # the same random batch again and again
        batch = {"image": torch.randn(batch_size, 3, height, width),
                 "target": torch.rand(batch_size, num_joints, heatmap_height, heatmap_width),
                 "target_weight": torch.ones(batch_size, num_joints)}
        if device.type == "cuda":  # as the real loader's pin_memory=True gives it
            batch = {name: value.pin_memory() for name, value in batch.items()}
        stream = itertools.repeat(batch)
    else:
        dataset = build_dataset(cfg.data, train=True, seed=0)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=ResumableSampler(dataset, seed=0),
            drop_last=True, num_workers=args.workers, pin_memory=device.type == "cuda",
            collate_fn=collate_skip_none)
        if len(loader) < args.warmup + args.steps:
            raise SystemExit(f"the generated dataset gives {len(loader)} batches; "
                             f"{args.warmup + args.steps} are needed")
        stream = iter(loader)  # one pass: the timed steps find the workers running

    parts = TrainParts(model, loss_fn, optimizer, train_model=train_model,
                       grad_scaler=grad_scaler_for(autocast, device))
    warmup_started = time.perf_counter()
    train_one_epoch(parts, Batches(stream, args.warmup), device, TrainState(),
                    TrainSettings(autocast=autocast, log_interval=10**9),
                    StepLogger(CapturedScalars(), show_progress=False))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warmup_seconds = time.perf_counter() - warmup_started
    captured = CapturedScalars()
    started, cpu_started = time.perf_counter(), time.process_time()
    train_one_epoch(parts, Batches(stream, args.steps), device, TrainState(),
                    TrainSettings(autocast=autocast, log_interval=args.steps),
                    StepLogger(captured, show_progress=False))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {
        "experiment": args.experiment, "model": cfg.model.name,
        "input": f"{width}x{height}", "mode": args.mode,
        "autocast": str(autocast).removeprefix("torch.") if autocast else "float32",
        "data": "in-memory" if args.data is None else f"loader ({args.workers} workers)",
        "batch_size": batch_size, "steps": args.steps,
        # The loop's own figure (stamped at the last step, before the final synchronisation).
        "images_per_s": round(captured.values["train/samples_per_s"], 2),
        "images_per_s_synchronized": round(args.steps * batch_size / seconds, 2),
        "seconds_per_step": round(seconds / args.steps, 4),
        "cpu_seconds_per_step": round(cpu_seconds / args.steps, 4),
        "warmup_s": round(warmup_seconds, 1),
        "data_wait_fraction": round(captured.values["train/data_wait_fraction"], 4),
        "peak_memory_mib": round(peak_mib, 1),
        "peak_memory_kind": "cuda max allocated" if device.type == "cuda" else "process max RSS",
    }


class Batches:
    """The next ``count`` batches of ``stream``, with a length (train_one_epoch needs one)."""

    def __init__(self, stream: Iterator[dict], count: int) -> None:
        self.stream, self.count = stream, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict]:
        return itertools.islice(self.stream, self.count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="+",
                        default=["hrnet_w32_256x192", "lite_hrnet_18_256x192"])
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed optimizer steps (default: 5 on the CPU, 50 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first (default: 1 on the CPU, 10 on CUDA)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the loader rows (default: the CPU count)")
    parser.add_argument("--no-loader", action="store_true", help="skip the loader rows")
    parser.add_argument("--device", default="auto")
    # Internal: measure one configuration in this process.
    parser.add_argument("--experiment", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.experiment:
        print(json.dumps(measure(args)))
        return 0

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    steps = args.steps or (50 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    modes = args.modes
    if modes is None:
        native_bf16 = cpu_bfloat16_support()[0]
        modes = (["fp32", "bf16_cl", "bf16_cl_compile"] if cuda else
                 ["fp32", "fp32_cl", "fp32_cl_compile", *(["bf16_cl"] if native_bf16 else [])])
    report = {
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads":
        torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bfloat16": cpu_bfloat16_support()[1], "load_average": os.getloadavg(),
        "results": [], "failures": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        data = Path(scratch) / "coco"
        if not args.no_loader:
            # About 2.5 people per image: enough batches for the warm-up and timed steps.
            images = (warmup + steps) * args.batch_size // 2 + 16
            generate_coco_dataset(data, num_train_images=images, num_val_images=1, seed=0,
                                  image_size=(640, 480))
        for experiment in args.experiments:
            for mode in modes:
                for source in [None] if args.no_loader or mode != modes[-1] else [None, data]:
                    command = [sys.executable, __file__, "--experiment", experiment, "--mode",
                               mode, "--batch-size", str(args.batch_size), "--steps", str(steps),
                               "--warmup", str(warmup), "--workers", str(workers),
                               "--device", args.device]
                    if source is not None:
                        command += ["--data", str(source)]
                    result = subprocess.run(command, capture_output=True, text=True, check=False)
                    if result.returncode != 0:
                        report["failures"].append({"experiment": experiment, "mode": mode,
                                                   "error": result.stderr[-2000:]})
                        continue
                    row = json.loads(result.stdout.strip().splitlines()[-1])
                    report["results"].append(row)
                    print(f"{row['experiment']:24s} {row['mode']:16s} {row['data']:20s} "
                          f"{row['images_per_s']:8.1f} img/s  data wait "
                          f"{row['data_wait_fraction']:.0%}", file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
