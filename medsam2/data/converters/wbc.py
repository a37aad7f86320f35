"""WBC (Zheng et al. 2018), github.com/zxaoyou/segmentation_WBC.

Layout: ``Dataset 1/001.bmp`` (image, 24-bit colour) with ``Dataset 1/001.png`` (ground
truth: nucleus white, cytoplasm grey, background black); likewise ``Dataset 2``.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import pair, rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    subsets = options.get("subsets", ["Dataset 1", "Dataset 2"])
    cases: list[RawCase] = []
    for subset in subsets:
        tag = "d" + "".join(ch for ch in subset if ch.isdigit())
        for folder in (p for p in rglob(root, subset) if p.is_dir()):
            cases += pair(
                rglob(folder, "*.bmp"), lambda p: p.with_suffix(".png"),
                lambda p, tag=tag: f"{tag}_{p.stem}",
            )
    return cases
