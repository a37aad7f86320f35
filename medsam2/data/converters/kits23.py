"""KiTS23 (Heller et al. 2023), github.com/neheller/kits23.

The repository ships the labels, ``dataset/case_00000/segmentation.nii.gz`` (1 kidney,
2 tumor, 3 cyst; ``kits23/configuration/labels.py``), and its download script
(``kits23/download.py``) puts each CT beside it as ``imaging.nii.gz``, fetched from the
Hugging Face dataset ``neheller/KiTS-Challenge-Imaging`` where it is stored as
``images/case_00000.nii.gz``. Both placements of the image are accepted: beside the
segmentation, or in an ``images/`` folder anywhere under the root (the Hugging Face layout,
which the dataset file uses to fetch only the files needed).
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase, safe_case_id
from medsam2.data.converters._common import rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    hub_images = {p.name[: -len(".nii.gz")]: p for p in rglob(root, "case_*.nii.gz")
                  if p.parent.name == "images"}
    cases = []
    for seg in rglob(root, "segmentation.nii.gz"):
        cid = seg.parent.name
        if not cid.startswith("case_"):
            continue
        beside = seg.parent / "imaging.nii.gz"  # a missing image fails the case, named
        image = beside if beside.exists() else hub_images.get(cid, beside)
        cases.append(RawCase(safe_case_id(cid), image, seg))
    return cases
