"""CadVidSet (Wang et al. 2020): coronary angiography video frames with artery masks.

The release layout is not public (see the dataset file's ``unverified``). Assumed:
``<video>/images/<frame>.png`` with the mask at ``<video>/masks/<frame>.png``; each frame
is one 2D case named ``<video>_<frame>``. ``options.image_dir`` / ``options.mask_dir``
rename the two folders.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import sibling_pairs


def find_cases(root: Path, options: dict) -> list[RawCase]:
    return sibling_pairs(root, "*.png", options.get("image_dir", "images"),
                         options.get("mask_dir", "masks"),
                         lambda p: f"{p.parent.parent.name}_{p.stem}")
