"""pose: top-down human pose estimation (HRNet, Lite-HRNet).

``from pose import PoseEstimator`` is resolved lazily (a module ``__getattr__``), so that
``import pose`` alone imports no torch.
"""

from __future__ import annotations

from typing import Any

# Public names and the modules that define them, imported on first use.
_LAZY_EXPORTS = {
    "PoseEstimator": "pose.engine.estimator",
    "Person": "pose.engine.estimator",
}

__all__ = ["Person", "PoseEstimator"]


def __getattr__(name: str) -> Any:
    if name in _LAZY_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module 'pose' has no attribute {name!r}")
