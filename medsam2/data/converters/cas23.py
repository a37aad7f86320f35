"""CAS23 (cerebral artery segmentation on MRA, MICCAI 2023).

The release layout could not be verified (see the dataset file). Assumed: an image
folder and a label folder (names set by ``options.image_dir`` / ``options.label_dir``,
default ``data`` and ``label``) holding NIfTI files paired by name.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import sibling_pairs


def find_cases(root: Path, options: dict) -> list[RawCase]:
    return sibling_pairs(root, "*.nii*", options.get("image_dir", "data"),
                         options.get("label_dir", "label"),
                         lambda p: "cas_" + p.name.split(".")[0])
