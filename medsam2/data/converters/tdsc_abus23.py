"""TDSC-ABUS23, tdsc-abus2023.grand-challenge.org: 3D automated breast ultrasound.

Layout: ``Train/DATA/DATA00_49/DATA_000.nrrd`` (the training volumes sit in shard folders
such as ``DATA00_49`` and ``DATA50_99``) with masks flat in ``Train/MASK/MASK_000.nrrd``
(0 background, 1 tumour); ``Validation/`` and ``Test/`` keep ``DATA/`` flat. Volumes and
masks are paired by the integer case number, whatever the zero padding. Sources: public
training code of challenge entrants (a search for "DATA00_49" finds their layout notes)
and the mralinp/tdsc-abus2023-pytorch README (splits, spacing, mask values).
"""

from __future__ import annotations

import re
from pathlib import Path

from medsam2.data.convert import RawCase, safe_case_id
from medsam2.data.converters._common import rglob

NUMBER = re.compile(r"_(\d+)\.nrrd$", re.IGNORECASE)


def _split_folder(volume: Path, root: Path) -> Path | None:
    """The split folder (``Train``...) above the ``DATA`` folder holding this volume."""
    for parent in volume.relative_to(root).parents:
        if parent.name.upper() == "DATA":
            return root / parent.parent
    return None


def _number(path: Path) -> int | None:
    match = NUMBER.search(path.name)
    return int(match.group(1)) if match else None


def find_cases(root: Path, options: dict) -> list[RawCase]:
    masks: dict[tuple[Path, int], Path] = {}
    for mask in rglob(root, "MASK_*.nrrd"):
        if mask.parent.name.upper() == "MASK" and _number(mask) is not None:
            masks[(mask.parent.parent, _number(mask))] = mask
    cases = []
    for volume in rglob(root, "DATA_*.nrrd"):
        split, number = _split_folder(volume, root), _number(volume)
        if split is None or number is None:
            continue
        cases.append(RawCase(safe_case_id(f"{split.name}_DATA_{number:03d}"), volume,
                             masks.get((split, number))))
    return cases
