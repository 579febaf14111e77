"""DataLoaders for the pose datasets: one OpenCV thread per worker, persistent workers, pinned
memory, and the collate function that drops unreadable training images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate


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


def init_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one OpenCV thread per worker.

    The workers are the parallelism; OpenCV's own thread pool in each of them (as many threads
    as cores, by default) would oversubscribe the cores. torch already runs one thread in a
    DataLoader worker. ``setNumThreads(0)`` (run sequentially in the calling thread), not 1:
    resizing the pool inherited from a parent that had used it deadlocks the forked worker
    (OpenCV 5, tested), while 0 leaves the pool alone.
    """
    del worker_id
    cv2.setNumThreads(0)


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
    memory). ``pin_memory``: page-locked batches for asynchronous copies to a GPU. ``shuffle``
    draws the order from a generator seeded with ``seed``; a ``sampler`` (e.g. a
    ``DistributedSampler``) replaces it.
    """
    generator = torch.Generator().manual_seed(seed) if shuffle and sampler is None else None
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
