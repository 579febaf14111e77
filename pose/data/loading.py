"""DataLoaders for the pose datasets: one OpenCV thread per worker, freed memory reused,
persistent workers, pinned memory, and the collate function that drops unreadable training
images."""

from __future__ import annotations

import ctypes
import re
from collections.abc import Sequence
from typing import Any

import cv2
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate


class LoaderWorkerError(ChildProcessError):
    """A DataLoader worker process died (the out-of-memory killer, a signal, a crash)."""


def worker_death(error: BaseException) -> LoaderWorkerError | None:
    """``error`` (what torch raises when a DataLoader worker dies: ``DataLoader worker (pid(s)
    N) exited unexpectedly``, caused by ``... is killed by signal: Killed.``) as one line naming
    the worker and the likely cause; None for any other error."""
    messages = [str(cause) for cause in (error, error.__cause__, error.__context__)
                if isinstance(cause, RuntimeError)]
    if not any(message.startswith("DataLoader worker") for message in messages):
        return None
    pids = re.search(r"\(pid(?:\(s\))? ([\d, ]+)\)", " ".join(messages))
    signal = next((found.group(1).rstrip(". ") for message in messages
                   if (found := re.search(r"killed by signal: (.+)", message))), None)
    how = f"was killed by signal {signal}" if signal else "exited unexpectedly"
    hint = (" (the out-of-memory killer's signal: fewer loader workers or a smaller batch "
            "use less memory)" if signal == "Killed" else "")
    return LoaderWorkerError(f"DataLoader worker process (pid {pids.group(1) if pids else '?'}) "
                             f"{how}{hint}")


def collate_skip_none(batch: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Collate dataset items, dropping the ``None`` ones (unreadable training images).

    Returns the default-collated batch of the remaining items plus ``num_skipped`` (int), the
    number of items dropped. If every item was dropped the batch holds only ``num_skipped``.
    """
    kept = [item for item in batch if item is not None]
    num_skipped = len(batch) - len(kept)
    if not kept:
        return {"num_skipped": num_skipped}
    collated = default_collate(kept)
    collated["num_skipped"] = num_skipped
    return collated


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_BLOCKS_UP_TO = 16 << 20  # bytes; glibc accepts at most 32 MiB


def keep_freed_memory_for_reuse() -> bool:
    """Have glibc's malloc serve blocks up to 16 MiB from the heap and keep freed memory there.

    Each item allocates a few megabyte-sized buffers (the decoded image, the crop, the
    normalised input); by default glibc maps such blocks freshly and unmaps them when freed, so
    every item pays for page faults on all of them (about a quarter of the per-item time,
    measured). With this, a worker reuses the same memory item after item. Returns False where
    the C library is not glibc (nothing changes then).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCKS_UP_TO)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 4 * _HEAP_BLOCKS_UP_TO)
    )


def init_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one OpenCV thread per worker, freed memory reused.

    The workers are the parallelism; OpenCV's own thread pool in each of them (as many threads
    as cores, by default) would oversubscribe the cores. torch already runs one thread in a
    DataLoader worker. ``setNumThreads(0)`` (run sequentially in the calling thread), not 1:
    resizing the pool inherited from a parent that had used it deadlocks the forked worker
    (OpenCV 5, tested), while 0 leaves the pool alone. See also
    :func:`keep_freed_memory_for_reuse`.
    """
    del worker_id
    cv2.setNumThreads(0)
    keep_freed_memory_for_reuse()


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
    sampler: Sampler | None = None,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader over ``dataset`` that collates with :func:`collate_skip_none`.

    Workers (``num_workers > 0``) run one OpenCV thread each (:func:`init_worker`) and persist
    across epochs (no start-up cost per epoch; ``set_epoch`` reaches them through shared
    memory). Without workers the items are loaded in this process, which then keeps freed
    memory for reuse (:func:`keep_freed_memory_for_reuse`, as the workers do). ``pin_memory``: page-locked batches for asynchronous copies to a GPU. ``shuffle``
    draws the order from a generator seeded with ``seed``; a ``sampler`` (e.g. a
    ``DistributedSampler``) replaces it. The workers' base seed comes from that generator too,
    never from torch's global one, whose state a resumed run restores.
    """
    generator = torch.Generator().manual_seed(seed)
    if num_workers == 0:
        keep_freed_memory_for_reuse()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        collate_fn=collate_skip_none,
        worker_init_fn=init_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        generator=generator,
    )
