"""KiTS23 (Heller et al. 2023), github.com/neheller/kits23.

Layout: ``dataset/case_00000/imaging.nii.gz`` + ``segmentation.nii.gz`` (the repository
ships the segmentations; its download script fetches each imaging file). Labels:
1 kidney, 2 tumor, 3 cyst.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import pair, rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    images = [p for p in rglob(root, "imaging.nii.gz") if p.parent.name.startswith("case_")]
    return pair(images, lambda p: p.parent / "segmentation.nii.gz", lambda p: p.parent.name)
