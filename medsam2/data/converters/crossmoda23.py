"""crossMoDA (Dorent et al. 2023), zenodo.org/records/6504722 and the challenge sites.

Layout: ``training_source/crossmoda2022_etz_1_ceT1.nii.gz`` with
``crossmoda2022_etz_1_Label.nii.gz`` (2022: 1 vestibular schwannoma, 2 cochlea; the
2023 edition splits the tumour into intra-/extra-meatal parts: see the dataset file).
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import pair, rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    images = rglob(root, "crossmoda*_ceT1.nii.gz")
    return pair(
        images, lambda p: p.with_name(p.name.replace("_ceT1.nii.gz", "_Label.nii.gz")),
        lambda p: p.name[: -len("_ceT1.nii.gz")],
    )
