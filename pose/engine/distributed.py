"""Data-parallel training across processes: process-group setup and teardown, the sampler.

``torchrun --nproc_per_node=N -m pose.train ...`` starts N processes and tells each its place
through environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); a job
started by Hydra's submitit launcher on SLURM gets them from submitit. Without them the run is a
single process and nothing here changes it. Rank 0 writes the logs and checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the run: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank on this machine (selects the GPU)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _export_submitit_environment() -> None:
    """In a job of several tasks started through submitit (Hydra's submitit launcher: SLURM, or
    its local executor), set the variables torchrun would have set, from the job's own (SLURM's
    rank and node list)."""
    if "RANK" in os.environ or os.environ.get("SUBMITIT_EXECUTOR") not in ("slurm", "local"):
        return
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        # Each task keeps every GPU of its node visible and picks cuda:LOCAL_RANK itself.
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group when the launcher asked for more than one process.

    ``device``: the configured device. Under DDP on CUDA each process takes
    ``cuda:<LOCAL_RANK>`` (modulo the visible GPUs) and the NCCL backend; on the CPU, gloo.
    Returns the context of a single process (rank 0 of 1) when no launcher set WORLD_SIZE.
    """
    _export_submitit_environment()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank,
                              device=device)


def cleanup_distributed() -> None:
    """Leave the process group (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(value: T, source: int = 0) -> T:
    """Rank ``source``'s ``value`` (any picklable object) on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    holder: list[Any] = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]


def decide_on_main(decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 alone, its result (or its error) given to every rank.

    For checks that only one process may make (does the output folder already hold a run?):
    a ``OSError`` or ``ValueError`` it raises is raised on every rank, so that all of them stop
    rather than wait for rank 0.
    """
    error, value = None, None
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        try:
            value = decide()
        except (OSError, ValueError) as raised:
            error = raised
    error, value = broadcast_object((error, value))
    if error is not None:
        raise error
    return value


def shared_output_dir(own_dir: Path) -> Path:
    """Rank 0's output folder on every rank. Under torchrun each process composes the config
    itself, so a ``${now:...}`` folder name may differ by a second between ranks; a folder
    Hydra made for this rank that is not rank 0's, and is still empty, is removed."""
    shared = Path(broadcast_object(str(own_dir)))
    if own_dir != shared and own_dir.is_dir() and not any(own_dir.iterdir()):
        own_dir.rmdir()
    return shared


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``values`` over every rank (same shape on each; a copy)."""
    values = values.clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


class ResumableSampler(DistributedSampler):
    """A permutation of the dataset per (seed, epoch), split across ranks, that can start an
    epoch part-way through (to resume from a mid-epoch checkpoint).

    torch's :class:`DistributedSampler` with one addition: ``set_epoch(epoch, samples_done)``
    skips the first ``samples_done`` samples of the epoch's global order. Rank r draws every
    world_size-th index from r on, so skipping ``samples_done // world_size`` of each rank's
    share skips exactly those samples, even when the world size changed since the checkpoint.
    In a single process (``num_replicas=1``) it is a seeded shuffle with the same guarantee.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=False)
        self.start = 0  # this rank's samples of the current epoch to skip

    def set_epoch(self, epoch: int, samples_done: int = 0) -> None:
        """Select ``epoch``'s permutation; skip its first ``samples_done`` samples (all ranks)."""
        super().set_epoch(epoch)
        self.start = min(samples_done // self.num_replicas, self.num_samples)

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start
