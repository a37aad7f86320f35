"""LNQ23 (mediastinal lymph nodes), lnq2023.grand-challenge.org.

Layout: ``lnq2023-train-0001-ct.nrrd`` with ``lnq2023-train-0001-seg.nrrd`` (1 = lymph
node, partial annotation); validation files use ``-val-``.
"""

from __future__ import annotations

from pathlib import Path

from medsam2.data.convert import RawCase
from medsam2.data.converters._common import pair, rglob


def find_cases(root: Path, options: dict) -> list[RawCase]:
    return pair(
        rglob(root, "lnq2023-*-ct.nrrd"),
        lambda p: p.with_name(p.name.replace("-ct.nrrd", "-seg.nrrd")),
        lambda p: p.name[: -len("-ct.nrrd")],
    )
