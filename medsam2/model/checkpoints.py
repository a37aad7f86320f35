"""Meta's official SAM 2 / SAM 2.1 checkpoints: where they come from, fetched and verified.

The files are downloaded by the workflow (rule ``fetch_checkpoint``) into
``resources/checkpoints/`` with resume, retries and a sha256 check. Meta publishes no
hashes next to the files, so the first download's hash is recorded in the lock file
beside them and enforced from then on (see ``medsam2.data.download``). A file put there
by hand (an offline cluster) is verified the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medsam2.data.download import download_file

_SAM21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
_SAM20 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824"

#: file name -> (download URL, arch name in medsam2.model.build.ARCHS)
OFFICIAL: dict[str, tuple[str, str]] = {
    "sam2.1_hiera_tiny.pt": (f"{_SAM21}/sam2.1_hiera_tiny.pt", "hiera_t"),
    "sam2.1_hiera_small.pt": (f"{_SAM21}/sam2.1_hiera_small.pt", "hiera_s"),
    "sam2.1_hiera_base_plus.pt": (f"{_SAM21}/sam2.1_hiera_base_plus.pt", "hiera_b+"),
    "sam2.1_hiera_large.pt": (f"{_SAM21}/sam2.1_hiera_large.pt", "hiera_l"),
    "sam2_hiera_tiny.pt": (f"{_SAM20}/sam2_hiera_tiny.pt", "sam2_hiera_t"),
    "sam2_hiera_small.pt": (f"{_SAM20}/sam2_hiera_small.pt", "sam2_hiera_s"),
    "sam2_hiera_base_plus.pt": (f"{_SAM20}/sam2_hiera_base_plus.pt", "sam2_hiera_b+"),
    "sam2_hiera_large.pt": (f"{_SAM20}/sam2_hiera_large.pt", "sam2_hiera_l"),
}


def fetch_checkpoint(name: str, out_dir: Path | str, url: str | None = None) -> Path:
    """Download (or verify a hand-placed) official checkpoint; returns its path."""
    if name not in OFFICIAL and url is None:
        raise ValueError(f"unknown official checkpoint '{name}' (known: {sorted(OFFICIAL)})")
    dest = Path(out_dir) / name
    download_file(url or OFFICIAL[name][0], dest)
    return dest


def _cli(args: argparse.Namespace) -> int:
    print(fetch_checkpoint(args.name, args.out_dir, args.url))
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("checkpoint", help="fetch an official SAM 2 / 2.1 checkpoint")
    p.add_argument("name", help="file name, e.g. sam2.1_hiera_small.pt")
    p.add_argument("--out-dir", type=Path, default=Path("resources/checkpoints"))
    p.add_argument("--url", help="another source (a mirror, or file:// on an offline cluster)")
    p.set_defaults(func=_cli)
