"""Shared test fixtures: where the reference facts and the sample data live."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"
# The official implementations' numbers live beside the checkout (CI has them; a bare clone may not).
SHARED = REPO_ROOT.parent / "shared"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``, or skip the test saying why."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference fixtures not found at {REFERENCE} (they sit beside the checkout)")
    return REFERENCE


@pytest.fixture(scope="session")
def coco_sample_dir() -> Path:
    """Four real COCO val2017 images with ground truth and detector boxes (shipped in tests/data)."""
    return TEST_DATA / "coco_sample"
