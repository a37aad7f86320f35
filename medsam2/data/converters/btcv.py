"""BTCV abdomen (Landman et al. 2015), Synapse syn3193805.

Layout: ``RawData/Training/img/img0001.nii.gz`` with
``RawData/Training/label/label0001.nii.gz`` (13 organs, values 1-13), as torch-em's
``torch_em/data/datasets/medical/btcv.py`` reads it. ``RawData/Testing/img/`` has no
labels and is not a source of cases.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import pair, rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    images = [p for p in rglob(root, "img*.nii.gz")
              if p.parent.name == "img" and p.parent.parent.name == "Training"]
    return pair(
        images, lambda p: p.parent.parent / "label" / p.name.replace("img", "label", 1),
        lambda p: p.name[: -len(".nii.gz")],
    )
