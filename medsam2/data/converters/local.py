"""Bring your own data: an nnU-Net raw folder, or ``images/`` + ``labels/`` paired by name.

nnU-Net raw: ``imagesTr/<case>_0000.<ext>`` with ``labelsTr/<case>.<ext>`` (and the
``Ts`` pair), labels named by its ``dataset.json``. Simple: ``images/<case>.<ext>`` with
``labels/<case>.<ext>``; label names are then ``label_<value>`` for the values found.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medsam2.data.convert import RawCase, read_any
from medsam2.data.converters._common import pair, rglob

ENDINGS = (".nii.gz", ".nii", ".png", ".mha", ".nrrd", ".tif", ".jpg", ".bmp", ".npy")


def _stem(path: Path) -> str:
    for ending in ENDINGS:
        if path.name.lower().endswith(ending):
            return path.name[: -len(ending)]
    return path.stem


def find_cases(root: Path, options: dict) -> tuple[list[RawCase], dict[str, int]]:
    """Cases plus the label names -> values (from dataset.json or the label files)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: local dataset folder not found")
    cases: list[RawCase] = []
    for img_dir, lab_dir in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        for image in rglob(root / img_dir, "*_0000.*") if (root / img_dir).is_dir() else []:
            cid = _stem(image)[: -len("_0000")]
            ending = image.name[len(cid) + len("_0000"):]
            cases += pair([image], lambda p, c=cid, e=ending, d=lab_dir: root / d / f"{c}{e}",
                          lambda p, c=cid: c)
    if not cases and (root / "images").is_dir():
        labels = {_stem(p): p for p in rglob(root / "labels", "*") if p.is_file()}
        images = [p for p in rglob(root / "images", "*") if p.is_file()]
        cases = pair(images, lambda p: labels.get(_stem(p)), _stem)
    if not cases:
        raise FileNotFoundError(
            f"{root}: no cases (expected imagesTr/<case>_0000.* + labelsTr/, "
            "or images/ + labels/ paired by name)"
        )
    meta = root / "dataset.json"
    if meta.is_file():
        names = {k: int(v) for k, v in json.loads(meta.read_text())["labels"].items()}
    else:
        values: set[int] = set()
        for case in cases:
            if isinstance(case.label, Path):
                values |= set(np.unique(read_any(case.label, is_label=True).array).tolist())
        names = {"background": 0, **{f"label_{int(v)}": int(v) for v in sorted(values) if v}}
    return cases, names
