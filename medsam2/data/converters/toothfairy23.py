"""ToothFairy23 (Cipriano et al. 2022), ditto.ing.unimore.it/toothfairy.

Layout: ``ToothFairy_Dataset/Dataset/P1/data.npy`` (CBCT volume) with the dense
inferior-alveolar-nerve annotation ``gt_alpha.npy``, as torch-em's
``torch_em/data/datasets/medical/toothfairy.py`` reads it. Only some patients have a dense
annotation; the others (``gt_sparse.npy`` only) are not cases of this benchmark, so they
are left out rather than counted as lost. The arrays carry no geometry:
``options.spacing`` (0.3 mm isotropic by the dataset paper) is applied.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import pair, rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    spacing = tuple(float(s) for s in options.get("spacing", (0.3, 0.3, 0.3)))
    label = options.get("label_file", "gt_alpha.npy")
    images = [p for p in rglob(root, "data.npy")
              if p.parent.name.startswith("P") and (p.parent / label).exists()]
    return pair(images, lambda p: p.parent / label, lambda p: p.parent.name, spacing)
