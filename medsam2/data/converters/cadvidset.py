"""CadVidSet (Wang et al. 2020): coronary angiography video frames with artery masks.

The release layout is not public (see the dataset file's ``unverified``). Assumed:
``<video>/images/<frame>.png`` with the mask at ``<video>/masks/<frame>.png``; each frame
is one 2D case named ``<video>_<frame>``, grouped by ``video`` (a split by video keeps a
video's frames on one side). ``options.image_dir`` / ``options.mask_dir`` rename the two
folders.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import sibling_pairs

#: group keys its cases carry (``group_by`` of a config dataset entry)
GROUP_KEYS = ("video",)


def find_cases(root: Path, options: dict) -> list[RawCase]:
    cases = sibling_pairs(root, "*.png", options.get("image_dir", "images"),
                          options.get("mask_dir", "masks"),
                          lambda p: f"{p.parent.parent.name}_{p.stem}")
    return [replace(c, groups=(("video", c.image.parent.parent.name),)) for c in cases]
