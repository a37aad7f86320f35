"""SegRap23 (Luo et al. 2023), segrap2023.grand-challenge.org.

Layout (HiLab-git/SegRap2023 ``Tutorial/preprocessing.py``; torch-em's
``torch_em/data/datasets/medical/segrap.py``): images in
``SegRap2023_Training_Set_120cases/segrap_0000/image.nii.gz`` and
``image_contrast.nii.gz``, with one binary file per structure beside them (``GTVp.nii.gz``,
``GTVnd.nii.gz``, and the 45 organs); the second archive holds one multi-class file per
case and task, ``SegRap2023_Training_Set_120cases_OneHot_Labels/Task002/segrap_0000.nii.gz``
(GTVp 1, GTVnd 2; the folder is spelled ``Task002`` or ``Task002_GTVs`` in public code).
The multi-class file is used where present; otherwise the binary files beside the images
(``options.masks``: file stem -> value) are composed. ``options.image`` picks the CT.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase, safe_case_id
from medsam2.data.converters._common import rglob


def _multi_class_files(root: Path, task: str) -> dict[str, Path]:
    """Case id -> multi-class label file in any folder whose name starts with ``task``."""
    return {p.name[: -len(".nii.gz")]: p for p in rglob(root, "segrap_*.nii.gz")
            if p.parent.name.lower().startswith(task.lower())}


def find_cases(root: Path, options: dict) -> list[RawCase]:
    image_name = options.get("image", "image_contrast.nii.gz")
    structures: dict[str, int] = options.get("masks", {"GTVp": 1, "GTVnd": 2})
    multi = _multi_class_files(root, options.get("task_dir", "Task002"))
    cases = []
    for image in rglob(root, image_name):
        cid = image.parent.name
        label: Path | tuple[tuple[Path, int], ...] | None = multi.get(cid)
        if label is None:
            binaries = tuple((image.parent / f"{name}.nii.gz", value)
                             for name, value in structures.items()
                             if (image.parent / f"{name}.nii.gz").exists())
            label = binaries or None
        cases.append(RawCase(safe_case_id(cid), image, label))
    return cases
