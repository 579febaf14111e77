"""Tests that compare with the official numbers skip, saying why, where ../shared/reference is
absent, and fail instead under CI=true: a CI run must not pass without comparing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, reference_or_skip


def test_missing_reference_skips_outside_ci_and_fails_in_ci(tmp_path):
    missing = tmp_path / "no_reference"
    with pytest.raises(pytest.skip.Exception, match="reference fixtures not found at"):
        reference_or_skip(missing, in_ci=False)
    with pytest.raises(pytest.fail.Exception, match="CI=true needs them"):
        reference_or_skip(missing, in_ci=True)
    assert reference_or_skip(tmp_path, in_ci=True) == tmp_path


@pytest.mark.slow
def test_a_ci_run_without_the_reference_fails(tmp_path):
    """The whole path: pytest in a subprocess, the reference pointed at a missing folder."""
    test = "tests/test_nms.py::test_oks_iou_matches_official"  # uses reference_dir
    environment = {key: value for key, value in os.environ.items() if key != "CI"}
    environment["POSE_REFERENCE_DIR"] = str(tmp_path / "absent")

    def run_pytest(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               test], cwd=REPO_ROOT, env={**environment, **extra},
                              capture_output=True, text=True, timeout=300, check=False)

    local = run_pytest()
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout[-2000:]
    in_ci = run_pytest(CI="true")
    assert in_ci.returncode == 1 and "1 error" in in_ci.stdout, in_ci.stdout[-2000:]
    assert f"reference fixtures not found at {tmp_path / 'absent'}" in in_ci.stdout
    assert "CI=true needs them" in in_ci.stdout
