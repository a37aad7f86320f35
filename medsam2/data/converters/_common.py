"""Small helpers the per-dataset layout functions share (finding and pairing files)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from medsam2.data.convert import RawCase, safe_case_id

IGNORED_PARTS = ("__MACOSX",)


def rglob(root: Path, pattern: str) -> list[Path]:
    """Sorted recursive glob that skips macOS resource forks and hidden files."""
    return sorted(
        p for p in root.rglob(pattern)
        if not any(part in IGNORED_PARTS for part in p.parts) and not p.name.startswith(".")
    )


def strip_suffix(name: str, suffixes: Iterable[str]) -> str:
    for suffix in suffixes:
        if name.lower().endswith(suffix.lower()):
            return name[: -len(suffix)]
    return name


def pair(
    images: Iterable[Path],
    label_for: Callable[[Path], Path | None],
    case_id: Callable[[Path], str],
    spacing: tuple[float, ...] | None = None,
) -> list[RawCase]:
    """One RawCase per image; a missing label is kept as None (reported, then skipped)."""
    cases = []
    for image in images:
        label = label_for(image)
        cases.append(RawCase(
            safe_case_id(case_id(image)), image,
            label if label is not None and label.exists() else None, spacing,
        ))
    return cases


def index_by_stem(files: Iterable[Path], suffixes: Iterable[str]) -> dict[str, Path]:
    suffixes = tuple(suffixes)
    return {strip_suffix(p.name, suffixes): p for p in files}


def sibling_pairs(
    root: Path, pattern: str, image_dir: str, label_dir: str, case_id: Callable[[Path], str]
) -> list[RawCase]:
    """Cases laid out as ``<parent>/<image_dir>/<file>`` + ``<parent>/<label_dir>/<file>``."""
    images = [p for p in rglob(root, pattern) if p.parent.name == image_dir]
    return pair(images, lambda p: p.parent.parent / label_dir / p.name, case_id)
