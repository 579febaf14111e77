"""DDP evaluation: two gloo processes predict their DistributedSampler shares of a dataset whose
size does not divide evenly; gather_predictions gives exactly one process's predictions and AP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import distributed
from torch.utils.data import DataLoader, DistributedSampler

from pose.data import CocoKeypoints
from pose.engine.inference import gather_predictions, predict
from pose.evaluation.decode import DecodeSettings
from pose.evaluation.evaluators import EVALUATORS, EvaluationSettings
from pose.evaluation.predictions import Predictions
from pose.models import create_model

WORLD_SIZE = 2
SPLIT = "val2017"


def _predict(dataset: CocoKeypoints, weights: dict, sampler=None) -> Predictions:
    # One crop per batch on one thread, in every process: the float32 convolutions then round
    # alike (on some CPUs oneDNN's summation order depends on the batch size and thread count),
    # so the gathered predictions can equal one process's bit for bit.
    torch.set_num_threads(1)
    model = create_model("hrnet_w8_tiny", num_joints=17)
    model.load_state_dict(weights)
    loader = DataLoader(dataset, batch_size=1, sampler=sampler, shuffle=False)
    return predict(model, loader, torch.device("cpu"), DecodeSettings(dataset.keypoints.flip_pairs))


def _rank(rank: int, root: str, weights_path: str, out_dir: str) -> None:
    distributed.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous",
                                   rank=rank, world_size=WORLD_SIZE)
    try:
        dataset = CocoKeypoints(root, SPLIT, image_size=(96, 128), heatmap_size=(24, 32))
        sampler = DistributedSampler(dataset, num_replicas=WORLD_SIZE, rank=rank, shuffle=True,
                                     seed=3)
        local = _predict(dataset, torch.load(weights_path), sampler)
        gathered = gather_predictions(local)
        torch.save({"local": local, "gathered": gathered}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        distributed.destroy_process_group()


@pytest.fixture(scope="module")
def dataset_root(synthetic_coco) -> Path:
    return synthetic_coco(num_train_images=0, num_val_images=3, seed=11,
                          image_size=(128, 128))


@pytest.mark.slow
def test_gather_predictions_equals_one_process(dataset_root, tmp_path):
    dataset = CocoKeypoints(dataset_root, SPLIT, image_size=(96, 128), heatmap_size=(24, 32))
    assert len(dataset) % WORLD_SIZE == 1, "the test needs a sampler that pads"
    torch.manual_seed(0)
    weights = create_model("hrnet_w8_tiny", num_joints=17).state_dict()
    weights_path = tmp_path / "weights.pt"
    torch.save(weights, weights_path)
    single = _predict(dataset, weights)
    assert single.indices.tolist() == list(range(len(dataset)))

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_rank, args=(str(dataset_root), str(weights_path), str(tmp_path)),
             nprocs=WORLD_SIZE, join=True)
    outputs = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
               for rank in range(WORLD_SIZE)]
    local_sizes = [output["local"].indices.shape[0] for output in outputs]
    assert local_sizes == [(len(dataset) + 1) // 2] * 2  # padded: one crop predicted twice
    for output in outputs:
        gathered = output["gathered"]
        for name in Predictions.__dataclass_fields__:
            assert torch.equal(getattr(gathered, name), getattr(single, name)), name
    # Hence the same numbers as one process.
    evaluator = EVALUATORS["coco"].for_dataset(dataset, EvaluationSettings())
    assert evaluator(outputs[0]["gathered"]).metrics == evaluator(single).metrics


def test_gather_without_process_group_sorts_and_deduplicates():
    count = 4
    predictions = Predictions(
        keypoints=torch.arange(count * 2 * 2, dtype=torch.float32).reshape(count, 2, 2),
        maxvals=torch.rand(count, 2), centers=torch.zeros(count, 2), scales=torch.ones(count, 2),
        box_scores=torch.ones(count), image_ids=torch.tensor([5, 6, 5, 7]),
        indices=torch.tensor([2, 0, 2, 1]))
    gathered = gather_predictions(predictions)
    assert gathered.indices.tolist() == [0, 1, 2]
    assert gathered.image_ids.tolist() == [6, 7, 5]
    assert torch.equal(gathered.keypoints[2], predictions.keypoints[0])
