"""TDSC-ABUS23, tdsc-abus2023.grand-challenge.org: 3D automated breast ultrasound.

Layout: ``Train/DATA/DATA_000.nrrd`` with ``Train/MASK/MASK_000.nrrd`` (0 background,
1 tumour); the validation set has the same structure under ``Validation/``.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import pair, rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    images = [p for p in rglob(root, "DATA_*.nrrd") if p.parent.name == "DATA"]
    return pair(
        images, lambda p: p.parent.parent / "MASK" / p.name.replace("DATA_", "MASK_"),
        lambda p: f"{p.parent.parent.name}_{p.stem}",
    )
