"""STARE (Hoover et al. 2000), cecas.clemson.edu/~ahoover/stare/probing/.

Layout: ``stare-images.tar`` holds ``im0001.ppm.gz``...; ``labels-ah.tar`` holds
``im0001.ah.ppm.gz`` (Hoover's vessel tracing, 255 = vessel); ``labels-vk.tar`` the
second observer's ``.vk.`` files. ``options.annotator`` picks ``ah`` (default) or ``vk``.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import pair, rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    annotator = options.get("annotator", "ah")
    labels = {p.name.split(".")[0]: p for p in rglob(root, f"im*.{annotator}.ppm*")}
    images = [p for p in rglob(root, "im*.ppm*") if p.name.split(".")[1] == "ppm"]
    return pair(images, lambda p: labels.get(p.name.split(".")[0]), lambda p: p.name.split(".")[0])
