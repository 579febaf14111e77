"""Data-parallel training on the CPU (gloo): two processes keep identical weights after every
step, and ``torchrun --nproc_per_node=2 -m pose.train`` trains with rank 0 writing the run."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, Dataset

from pose.engine.distributed import (
    ResumableSampler,
    cleanup_distributed,
    init_distributed,
)
from pose.engine.logger import ScalarWriter, StepLogger
from pose.engine.optim import build_optimizer
from pose.engine.precision import prepare_model
from pose.engine.trainer import TrainParts, TrainSettings, TrainState, train_one_epoch
from pose.losses import build_loss
from pose.models import create_model

# Every test here starts processes (torch.multiprocessing, torchrun, submitit).
pytestmark = pytest.mark.slow

WORLD_SIZE = 2
STEPS = 3


class RandomCrops(Dataset):
    """Crops and targets drawn from a generator seeded by the index (the same in every process)."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(index)
        return {"image": torch.randn(3, 64, 64, generator=generator),
                "target": torch.rand(17, 16, 16, generator=generator),
                "target_weight": torch.ones(17), "index": torch.tensor(index)}


def parameter_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for parameter in model.parameters():
        digest.update(parameter.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train_on_one_rank(rank: int, port: int, out_dir: str) -> None:
    """One process of the group: what torchrun would set up, then three optimizer steps."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    context = init_distributed(torch.device("cpu"))
    try:
        assert (context.rank, context.world_size, context.is_main) == (rank, 2, rank == 0)
        torch.manual_seed(rank)  # different initial weights: DDP must start from rank 0's
        model = create_model("hrnet_w8_tiny", num_joints=17)
        initial = parameter_digest(model)
        train_model = prepare_model(model, context)
        dataset = RandomCrops()
        sampler = ResumableSampler(dataset, num_replicas=WORLD_SIZE, rank=rank, seed=0)
        sampler.set_epoch(0)
        loader = DataLoader(dataset, batch_size=2, sampler=sampler)
        optimizer = build_optimizer(model.parameters(), "adam", lr=1e-2)
        digests: list[str] = []
        optimizer.register_step_post_hook(lambda *_: digests.append(parameter_digest(model)))
        parts = TrainParts(train_model, build_loss("mse"), optimizer)
        meter = StepLogger(ScalarWriter(None), world_size=WORLD_SIZE, show_progress=False)
        train_one_epoch(parts, loader, context.device, TrainState(),
                        TrainSettings(max_steps=STEPS, log_interval=1), meter)
        record = {"initial": initial, "digests": digests,
                  "indices": [int(i) for i in sampler][:STEPS * 2]}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        cleanup_distributed()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_ranks_have_identical_weights_after_every_step(tmp_path):
    mp.spawn(train_on_one_rank, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0]["initial"] != ranks[1]["initial"]
    assert len(ranks[0]["digests"]) == STEPS
    assert ranks[0]["digests"] == ranks[1]["digests"]
    assert len(set(ranks[0]["digests"])) == STEPS  # every step changed the weights
    # ... while each rank trained on its own half of the data.
    assert not set(ranks[0]["indices"]) & set(ranks[1]["indices"])


@pytest.fixture(scope="module")
def dataset(synthetic_coco) -> Path:
    # 18 people: 4 batches of 2 per rank, so 2 steps end mid-epoch.
    return synthetic_coco(num_train_images=10, num_val_images=2, seed=3,
                          image_size=(128, 128))


def test_torchrun_trains_with_two_processes(dataset, tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "pose.train", "experiment=demo",
               "model=hrnet_w8_tiny", f"data.root={dataset}", "data.image_size=[64,64]",
               "data.heatmap_size=[16,16]", "train.max_steps=2", "train.batch_size=2",
               "train.log_interval=1", "data.num_workers=0", "device=cpu", "eval.flip_test=false",
               "train.num_log_images=2", f"hydra.run.dir={run_dir}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    checkpoint = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint["step"] == 2
    assert checkpoint["epoch_samples"] == 2 * 2 * 2  # two steps of batch 2 on two ranks
    log = (run_dir / "log.txt").read_text()
    assert "2 processes" in log  # and rank 0 alone logs and evaluates:
    assert log.count("evaluation on val2017") == result.stderr.count("evaluation on val2017") == 1
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (run_dir / "metrics.json").is_file() and (run_dir / "best.pt").is_file()

    # pose.eval under torchrun: each process predicts its share of the crops (the sampler pads
    # the shares to equal length), rank 0 scores the gathered ones: the numbers equal one
    # process's. Bit for bit only where every crop's forward pass is the same computation:
    # oneDNN's float32 convolutions sum in an order that depends on the batch size and the
    # number of threads on some CPUs (with AVX2 only, heatmaps then differ by 1 ulp and DARK
    # keypoints by up to 0.02 px here), so both sides predict one crop at a time on one thread.
    evaluate = ["-m", "pose.eval", f"checkpoint={run_dir / 'best.pt'}", "eval.num_visualize=0",
                "eval.batch_size=1"]
    two = subprocess.run([*command[:5], *evaluate, f"hydra.run.dir={tmp_path / 'eval2'}"],
                         capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-4000:]
    assert "2 processes" in (tmp_path / "eval2" / "log.txt").read_text()
    one = subprocess.run([sys.executable, *evaluate, f"hydra.run.dir={tmp_path / 'eval1'}"],
                         capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stderr[-4000:]
    for name in ("metrics.json", "results.json"):
        assert ((tmp_path / "eval2" / name).read_text()
                == (tmp_path / "eval1" / name).read_text()), name


def test_submitit_launcher_runs_one_ddp_process_per_task(dataset, tmp_path):
    """Hydra's submitit launcher with its local executor and two tasks: the code path of a
    SLURM job (each task joins the process group through submitit's environment), minus SLURM."""
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "pose.train", "-m", "hydra/launcher=submitit_local",
               "hydra.launcher.tasks_per_node=2", "hydra.launcher.timeout_min=10",
               "experiment=demo", "model=hrnet_w8_tiny", f"data.root={dataset}",
               "data.image_size=[64,64]", "data.heatmap_size=[16,16]", "train.max_steps=2",
               "train.batch_size=2", "data.num_workers=0", "device=cpu", "eval.flip_test=false",
               "train.num_log_images=0", f"hydra.sweep.dir={sweep_dir}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    logs = "".join(path.read_text() for path in sweep_dir.glob(".submitit/*/*.err"))
    assert result.returncode == 0, (result.stderr + logs)[-4000:]
    checkpoint = torch.load(sweep_dir / "0" / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint["step"] == 2 and checkpoint["epoch_samples"] == 2 * 2 * 2
    assert "2 processes" in (sweep_dir / "0" / "log.txt").read_text()
