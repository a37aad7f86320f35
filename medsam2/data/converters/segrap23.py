"""SegRap23 (Luo et al. 2023), segrap2023.grand-challenge.org.

Layout: ``SegRap2023_Training_Set_120cases/segrap_0000/image.nii.gz`` and
``image_contrast.nii.gz``; one binary mask per structure in
``SegRap2023_Training_Set_120cases_OneHot_Labels/Task002/segrap_0000/GTVp.nii.gz``
(and ``GTVnd.nii.gz``). The masks are composed into one label with the values of the
dataset file's ``source_labels``; ``options.image`` picks the CT (default: contrast).
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase, safe_case_id
from medsam2.data.converters._common import rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    image_name = options.get("image", "image_contrast.nii.gz")
    structures: dict[str, int] = options.get("masks", {"GTVp": 1, "GTVnd": 2})
    label_dirs = {p.parent.name: p.parent for p in rglob(root, "GTV*.nii.gz")
                  if p.parent.parent.name == options.get("task_dir", "Task002")}
    cases = []
    for image in rglob(root, image_name):
        folder = label_dirs.get(image.parent.name)
        masks = tuple(
            (folder / f"{name}.nii.gz", value) for name, value in structures.items()
            if folder is not None and (folder / f"{name}.nii.gz").exists()
        )
        cases.append(RawCase(safe_case_id(image.parent.name), image, masks or None))
    return cases
