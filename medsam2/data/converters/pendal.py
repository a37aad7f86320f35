"""Panoramic dental X-rays with segmented mandibles (Abdi et al. 2015), Mendeley Data
hxt48yk462.

Layout: ``DentalPanoramicXrays.zip`` holds ``Images/1.png``... and the two annotators'
``Segmentation1/1.png`` and ``Segmentation2/1.png`` (torch-em's
``torch_em/data/datasets/medical/pandental.py``); Mendeley's "Download All" zip holds that
zip (unpacked by the nested extraction). A segmentation file is the X-ray with every pixel
outside the mandible set to zero, so the dataset file's label rule is ``nonzero``.
``options.annotation`` picks the folder (default ``Segmentation1``).
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import index_by_stem, pair, rglob

SUFFIXES = (".png", ".jpg", ".bmp")


def find_cases(root: Path, options: dict) -> list[RawCase]:
    folder = options.get("annotation", "Segmentation1")
    masks = index_by_stem(
        (p for p in rglob(root, "*") if p.parent.name == folder and p.is_file()), SUFFIXES
    )
    images = [p for p in rglob(root, "*") if p.parent.name == "Images" and p.is_file()
              and p.suffix.lower() in SUFFIXES]
    return pair(images, lambda p: masks.get(p.stem), lambda p: f"pano_{p.stem}")
