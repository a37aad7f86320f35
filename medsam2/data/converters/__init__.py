"""Per-dataset layout functions: ``find_cases(root, options) -> list[RawCase]``.

Each module only knows where its dataset keeps images and labels; reading, checking,
label mapping and writing are common (``medsam2.data.convert``). A new dataset is one
module here plus one ``config/datasets/<key>.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medsam2.data.converters import (
    atlas23,
    btcv,
    cadvidset,
    cas23,
    crossmoda23,
    kits23,
    lnq23,
    pendal,
    refuge,
    segrap23,
    stare,
    tdsc_abus23,
    toothfairy23,
    wbc,
)

CONVERTERS: dict[str, Callable[[Path, dict], list]] = {
    m.__name__.rsplit(".", 1)[-1]: m.find_cases
    for m in (wbc, refuge, stare, pendal, cadvidset, kits23, atlas23, tdsc_abus23, segrap23,
              crossmoda23, lnq23, cas23, toothfairy23, btcv)
}
