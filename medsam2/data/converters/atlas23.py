"""ATLAS23 (Quinton et al. 2023), atlas-challenge.u-bourgogne.fr.

Layout: ``atlas-train-dataset-1.0.1/train/imagesTr/im0.nii.gz`` with
``labelsTr/lb0.nii.gz`` (a label of the same name is also accepted). Labels: 1 liver,
2 tumour (disjoint).
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import pair, rglob


def _label(image: Path) -> Path | None:
    folder = image.parent.parent / "labelsTr"
    for name in (image.name, "lb" + image.name[2:] if image.name.startswith("im") else None):
        if name and (folder / name).exists():
            return folder / name
    return None


def find_cases(root: Path, options: dict) -> list[RawCase]:
    images = [p for p in rglob(root, "*.nii.gz") if p.parent.name == "imagesTr"]
    return pair(images, _label, lambda p: "atlas_" + p.name[: -len(".nii.gz")])
