"""Shared fixtures: tiny phantom datasets made once per session (seeded)."""

from __future__ import annotations

from pathlib import Path

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
