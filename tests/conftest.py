"""Shared test fixtures: where the reference facts and the sample data live."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"
# The official implementations' numbers live beside the checkout (CI has them; a bare clone may
# not), or where POSE_REFERENCE_DIR says.
REFERENCE = Path(os.environ.get("POSE_REFERENCE_DIR") or REPO_ROOT.parent / "shared" / "reference")


def reference_or_skip(location: Path, in_ci: bool) -> Path:
    """``location`` if it is a folder; else skip the test saying why, or under CI fail it: CI
    must compare with the official numbers, not pass without them."""
    if location.is_dir():
        return location
    message = (f"reference fixtures not found at {location} (they sit beside the checkout in "
               "../shared/reference; POSE_REFERENCE_DIR= points elsewhere)")
    if in_ci:
        pytest.fail(f"{message}; CI=true needs them", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official implementations' numbers, or skip the test saying why (fail under CI=true)."""
    return reference_or_skip(REFERENCE, os.environ.get("CI", "").lower() in ("true", "1"))


@pytest.fixture(scope="session")
def coco_sample_dir() -> Path:
    """Four real COCO val2017 images with ground truth and detector boxes (in tests/data)."""
    return TEST_DATA / "coco_sample"


@pytest.fixture(scope="session")
def pycocotools_eval():
    """pycocotools' ``COCOeval(iouType='keypoints')`` as the official HRNet runs it (the
    independent reference of our evaluation): a function ``(gt, results, sigmas=None)`` of a
    COCO json path or dict and a results list, returning the COCOeval after ``summarize()``."""
    import contextlib
    import copy
    import io

    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def evaluate(gt, results, sigmas=None):
        with contextlib.redirect_stdout(io.StringIO()):
            if isinstance(gt, dict):
                ground_truth = COCO()
                ground_truth.dataset = copy.deepcopy(gt)
                ground_truth.createIndex()
            else:
                ground_truth = COCO(str(gt))
            # loadRes adds area, bbox and id to the dicts it is given: hand it copies.
            detections = ground_truth.loadRes([dict(entry) for entry in results])
            evaluator = COCOeval(ground_truth, detections, "keypoints")
            evaluator.params.useSegm = None
            if sigmas is not None:
                evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return evaluator

    return evaluate


@pytest.fixture(scope="session")
def mpii_sample_dir() -> Path:
    """Five real MPII images with HRNet-json annotations (shipped in tests/data)."""
    return TEST_DATA / "mpii_sample"


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory):
    """A function generating a small embedded COCO dataset in a new temporary folder and
    returning its root: ``synthetic_coco(num_train_images, num_val_images, seed, image_size)``
    (the arguments of :func:`pose.synthetic.generate_coco_dataset`)."""
    from pose.synthetic import generate_coco_dataset

    def generate(num_train_images: int, num_val_images: int, seed: int,
                 image_size: tuple[int, int]) -> Path:
        root = tmp_path_factory.mktemp("synthetic") / "coco"
        generate_coco_dataset(root, num_train_images=num_train_images,
                              num_val_images=num_val_images, seed=seed, image_size=image_size)
        return root

    return generate


@pytest.fixture(scope="session")
def run_module():
    """A function running ``python -m <module> <overrides...>`` (pose.train, pose.eval) in a
    subprocess, output captured, and returning the ``CompletedProcess``."""
    def run(module: str, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *overrides], capture_output=True,
                              text=True, timeout=timeout, check=False)

    return run
