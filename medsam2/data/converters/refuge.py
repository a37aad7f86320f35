"""REFUGE (Orlando et al. 2020), refuge.grand-challenge.org.

Layout: ``Training400/{Glaucoma,Non-Glaucoma}/g0001.jpg`` with
``Annotation-Training400/Disc_Cup_Masks/{Glaucoma,Non-Glaucoma}/g0001.bmp``; the
validation set has ``REFUGE-Validation400/V0001.jpg`` with
``REFUGE-Validation400-GT/Disc_Cup_Masks/V0001.bmp``. Masks: 0 cup, 128 disc rim, 255
background. Images and masks are paired by file stem anywhere under the root.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import index_by_stem, pair, rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    masks = index_by_stem(
        (p for p in rglob(root, "*.bmp") if "Disc_Cup_Masks" in p.parts), [".bmp"]
    )
    images = [p for p in rglob(root, "*.jpg") if "Disc_Cup_Masks" not in p.parts]
    return pair(images, lambda p: masks.get(p.stem), lambda p: p.stem)
