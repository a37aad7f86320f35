"""REFUGE (Orlando et al. 2020), refuge.grand-challenge.org.

Layout: ``REFUGE2.zip`` holds one zip per subset (images; ``Annotation-...`` /
``...-GT`` masks), unpacked by the nested extraction. Images ``g0001.jpg`` /
``n0001.jpg`` / ``V0001.jpg`` pair with masks ``g0001.bmp`` of the same stem anywhere
under the root (training masks under ``Disc_Cup_Masks/{Glaucoma,Non-Glaucoma}/``). Masks:
0 cup, 128 disc rim, 255 background. Folders named ``*Illustration*`` hold drawings with
the same file names and are skipped, as MMSegmentation's
``tools/dataset_converters/refuge.py`` does.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import index_by_stem, pair, rglob


def _kept(path: Path) -> bool:
    return not any("illustration" in part.lower() for part in path.parts)


def find_cases(root: Path, options: dict) -> list[RawCase]:
    masks = index_by_stem((p for p in rglob(root, "*.bmp") if _kept(p)), [".bmp"])
    images = [p for p in rglob(root, "*.jpg") if _kept(p)]
    return pair(images, lambda p: masks.get(p.stem), lambda p: p.stem)
