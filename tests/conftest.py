"""Shared fixtures: tiny phantom datasets made once per session (seeded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medsam2.data.phantoms import make_phantom_dataset

REPO = Path(__file__).resolve().parents[1]

# SAM 2's many small ops run several times faster with one thread on small CPUs than with
# two OpenMP threads; tests pin it, as the workflow's jobs do (--threads 1).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def phantom3d(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth3d")
    make_phantom_dataset(out, "abdomen3d", n_cases=4, test_fraction=0.25, seed=0)
    return out


@pytest.fixture(scope="session")
def phantom2d(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth2d")
    make_phantom_dataset(out, "cells2d", n_cases=6, test_fraction=0.34, seed=0)
    return out


def colour_copy(grey_root: Path, out: Path) -> Path:
    """A colour version of a grey 2D dataset: per pixel R = v, G = 255 - v, B = v // 2 (three
    different channels, hue varying with the grey value), labels and split unchanged.

    Written with PIL, as nnU-Net's natural-image datasets are: ``{case}_0000.png`` an
    8-bit RGB PNG and ``channel_names`` R, G, B (MIC-DKFZ/nnUNet
    nnunetv2/dataset_conversion/Dataset120_RoadSegmentation.py).
    """
    import json
    import shutil

    from PIL import Image

    for folder in ("imagesTr", "imagesTs"):
        (out / folder).mkdir(parents=True)
        for png in sorted((grey_root / folder).glob("*.png")):
            with Image.open(png) as im:
                v = np.asarray(im).astype(np.uint8)
            Image.fromarray(np.stack([v, 255 - v, v // 2], axis=-1)).save(out / folder / png.name)
    for folder in ("labelsTr", "labelsTs"):
        shutil.copytree(grey_root / folder, out / folder)
    meta = json.loads((grey_root / "dataset.json").read_text())
    meta["channel_names"] = {"0": "R", "1": "G", "2": "B"}
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.copy(grey_root / "splits.json", out / "splits.json")
    return out


@pytest.fixture(scope="session")
def phantom2d_rgb(phantom2d, tmp_path_factory) -> Path:
    """``phantom2d`` in colour (``colour_copy``): an RGB dataset in the standard layout."""
    return colour_copy(phantom2d, tmp_path_factory.mktemp("synth2d_rgb"))
