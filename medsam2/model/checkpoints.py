"""Published checkpoints the workflow can fetch: where each comes from, fetched and verified.

The files are downloaded by the workflow (rule ``fetch_checkpoint``) into
``resources/checkpoints/`` with resume, retries and a sha256 check. None of the publishers
lists hashes next to the files, so the first download's hash is recorded in the lock file
beside them and enforced from then on (see ``medsam2.data.download``). A file put there
by hand (an offline cluster) is verified the same way. A file without a stable direct URL
(MedSAM's, on a Google Drive folder) is never downloaded: the rule stops with a message
naming the page, the file and the path to put it at.

Layouts (how each file is loaded strictly, tested in tests/test_checkpoint_layouts.py):

- ``sam2``: ``{"model": SAM2Base state dict}`` (Meta's SAM 2 / 2.1, the MedSAM-2 release,
  MedSAM2), loaded by ``medsam2.model.build.load_checkpoint``;
- ``segment_anything``: a plain ``Sam`` state dict (Meta's SAM, MedSAM), loaded by
  ``baselines.sam.model.load_sam_checkpoint``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from medsam2.data.download import (
    DownloadError,
    ManualDownloadRequired,
    download_file,
    verify_existing,
)

_SAM21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
_SAM20 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824"
_SAM2_PAGE = "https://github.com/facebookresearch/sam2#download-checkpoints"


@dataclass(frozen=True)
class Official:
    """One published checkpoint file."""

    url: str | None  # a stable direct download; None: placed by hand (see ``page``)
    arch: str  # medsam2.model.build.ARCHS for layout sam2, a baselines.sam arch otherwise
    layout: Literal["sam2", "segment_anything"]
    page: str  # where the publisher offers it (for placing it by hand)
    source: str  # where the URL, arch and layout were read


#: file name -> where it comes from and how it loads
OFFICIAL: dict[str, Official] = {
    **{name: Official(f"{base}/{name}", arch, "sam2", _SAM2_PAGE,
                      "facebookresearch/sam2 checkpoints/download_ckpts.sh")
       for name, base, arch in (
           ("sam2.1_hiera_tiny.pt", _SAM21, "hiera_t"),
           ("sam2.1_hiera_small.pt", _SAM21, "hiera_s"),
           ("sam2.1_hiera_base_plus.pt", _SAM21, "hiera_b+"),
           ("sam2.1_hiera_large.pt", _SAM21, "hiera_l"),
           ("sam2_hiera_tiny.pt", _SAM20, "sam2_hiera_t"),
           ("sam2_hiera_small.pt", _SAM20, "sam2_hiera_s"),
           ("sam2_hiera_base_plus.pt", _SAM20, "sam2_hiera_b+"),
           ("sam2_hiera_large.pt", _SAM20, "sam2_hiera_l"),
       )},
    # The MedSAM-2 authors' released weights. SuperMedIntel/Medical-SAM2 README.md ("We
    # released our pretrain weight here") links the Hugging Face repository
    # jiayuanz3/MedSAM2_pretrain; the file name is the one its users load
    # (github.com/ImprintLab/Medical-SAM2/issues/82: torch.load(...)["model"] into the SAM 2.0
    # hiera-small net of the README's commands, `-sam_config sam2_hiera_s`); the URL is
    # Hugging Face's resolve/main form of that file. That net is Meta's SAM 2.0 hiera-small:
    # SuperMedIntel/Medical-SAM2 sam2_train/sam2_hiera_s.yaml differs from sam2's
    # configs/sam2/sam2_hiera_s.yaml only in RoPE feat_sizes (32 x 32, not a weight), and
    # its sam2_train/modeling declares the same parameters (compared by name, not run).
    # Unverified here (no network): the file's own key set; the strict load names any
    # difference on first use.
    "MedSAM2_pretrain.pth": Official(
        "https://huggingface.co/jiayuanz3/MedSAM2_pretrain/resolve/main/MedSAM2_pretrain.pth",
        "sam2_hiera_s", "sam2", "https://huggingface.co/jiayuanz3/MedSAM2_pretrain/tree/main",
        "SuperMedIntel/Medical-SAM2 README.md; github.com/ImprintLab/Medical-SAM2/issues/82"),
    # MedSAM2 (Ma et al. 2025): bowang-lab/MedSAM2 download.sh (HF_BASE_URL + MODEL5),
    # loaded by its sam2/build_sam.py as torch.load(..., weights_only=True)["model"] into
    # sam2/configs/sam2.1_hiera_t512.yaml = SAM 2.1 hiera-tiny at 512 px (arch hiera_t,
    # image_size 512: the same YAML with image_size 512 and RoPE feat_sizes 32 x 32).
    "MedSAM2_latest.pt": Official(
        "https://huggingface.co/wanglab/MedSAM2/resolve/main/MedSAM2_latest.pt",
        "hiera_t", "sam2", "https://huggingface.co/wanglab/MedSAM2",
        "bowang-lab/MedSAM2 download.sh, checkpoints/README.md, medsam2_infer_3D_CT.py"),
    # Meta's SAM ViT-B: facebookresearch/segment-anything README.md "Model Checkpoints"
    # (also bowang-lab/MedSAM comparisons/SAM/README.md); segment_anything/build_sam.py
    # loads it as a plain state dict (sam.load_state_dict(torch.load(f))).
    "sam_vit_b_01ec64.pth": Official(
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        "vit_b", "segment_anything",
        "https://github.com/facebookresearch/segment-anything#model-checkpoints",
        "facebookresearch/segment-anything README.md"),
    # MedSAM ViT-B: bowang-lab/MedSAM README.md "Get Started" links only a Google Drive
    # folder (no stable direct URL); MedSAM_Inference.py loads it through
    # sam_model_registry["vit_b"](checkpoint=...), i.e. a plain Sam state dict.
    "medsam_vit_b.pth": Official(
        None, "vit_b", "segment_anything",
        "https://drive.google.com/drive/folders/1ETWmi4AiniJeWOt6HAsYgTjYv_fkgzoN "
        "(linked from https://github.com/bowang-lab/MedSAM#get-started)",
        "bowang-lab/MedSAM README.md, MedSAM_Inference.py"),
}


def manual_message(name: str, dest: Path) -> str:
    """What to do for a file that is not downloaded automatically."""
    entry = OFFICIAL[name]
    return (f"checkpoint '{name}' has no stable direct download: download the file "
            f"'{name}' from {entry.page} and put it at {dest.resolve()} (its sha256 is "
            "recorded on first use and enforced from then on)")


def fetch_checkpoint(name: str, out_dir: Path | str, url: str | None = None) -> Path:
    """Download (or verify a hand-placed) published checkpoint; returns its path.

    Raises ManualDownloadRequired (saying where to get it and where to put it) for a file
    without a direct URL that is not in place yet.
    """
    if name not in OFFICIAL and url is None:
        raise ValueError(f"unknown official checkpoint '{name}' (known: {sorted(OFFICIAL)})")
    dest = Path(out_dir) / name
    source = url or OFFICIAL[name].url
    if source is None:
        if not dest.is_file():
            raise ManualDownloadRequired(manual_message(name, dest))
        verify_existing(dest)
    else:
        download_file(source, dest)  # a file in place is verified, not fetched again
    return dest


def _cli(args: argparse.Namespace) -> int:
    try:
        print(fetch_checkpoint(args.name, args.out_dir, args.url))
    except DownloadError as err:
        print(f"medsam2 checkpoint: {err}", file=sys.stderr)
        return 1
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("checkpoint", help="fetch a published checkpoint (SAM 2 / 2.1, "
                                                 "MedSAM-2, MedSAM2, SAM, MedSAM)")
    p.add_argument("name", help=f"file name, one of: {', '.join(OFFICIAL)}")
    p.add_argument("--out-dir", type=Path, default=Path("resources/checkpoints"))
    p.add_argument("--url", help="another source (a mirror, or file:// on an offline cluster)")
    p.set_defaults(func=_cli)
