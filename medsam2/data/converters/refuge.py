"""REFUGE (Orlando et al. 2020), refuge.grand-challenge.org.

Layout: ``REFUGE2.zip`` holds one zip per subset (images; ``Annotation-...`` /
``...-GT`` masks), unpacked by the nested extraction. Images ``g0001.jpg`` /
``n0001.jpg`` / ``V0001.jpg`` pair with masks ``g0001.bmp`` of the same stem anywhere
under the root (training masks under ``Disc_Cup_Masks/{Glaucoma,Non-Glaucoma}/``). Masks:
0 cup, 128 disc rim, 255 background. Folders named ``*Illustration*`` hold drawings with
the same file names and are skipped, as MMSegmentation's
``tools/dataset_converters/refuge.py`` does. The Kaggle mirror read by torch-em's
``torch_em/data/datasets/medical/refuge.py`` keeps ``{train,val,test}/images/*.jpg`` with
``mask/*.bmp``, or ``mask/*.png`` for the validation split: PNG masks are accepted too.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import index_by_stem, pair, rglob

MASK_SUFFIXES = (".bmp", ".png")


def _kept(path: Path, root: Path) -> bool:
    return not any("illustration" in part.lower() for part in path.relative_to(root).parts)


def find_cases(root: Path, options: dict) -> list[RawCase]:
    masks = index_by_stem(
        (p for p in rglob(root, "*") if p.suffix.lower() in MASK_SUFFIXES and _kept(p, root)),
        MASK_SUFFIXES,
    )
    images = [p for p in rglob(root, "*.jpg") if _kept(p, root)]
    return pair(images, lambda p: masks.get(p.stem), lambda p: p.stem)
