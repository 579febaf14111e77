"""Converters of foreign annotation formats to the json layouts pose reads (see data/README.md).

One module per source format; the command-line wrappers live in ``scripts/``.
"""

from __future__ import annotations

from pose.data.converters.dlc import convert_dlc, read_dlc_csv
from pose.data.converters.mpii import convert_mpii_release

__all__ = ["convert_dlc", "convert_mpii_release", "read_dlc_csv"]
