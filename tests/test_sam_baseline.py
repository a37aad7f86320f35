"""The SAM / MedSAM baseline (kind ``sam``): prompts, slices, preprocessing, the contract,
and a miniature run through the real snakemake.

Networks are the real segment-anything classes with small random weights (the ``tiny``
arch, written by the tests as a plain state dict, the published layout). Which slice gets
which prompt is checked with a stand-in segmenter that answers from the ground truth, so
that the walk itself is visible (random weights predict nothing to walk on).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from baselines.sam.model import build_sam
from baselines.sam.runner import (
    MedSamSegmenter,
    _Slices,
    as_sam_prompt,
    predict_dataset,
    segment_label,
)
from baselines.sam.spec import SamSpec
from medsam2.data.layout import StandardDataset
from medsam2.data.prompts import Prompt, box_prompt, dataset_prompts
from medsam2.spec import parse_model
from medsam2.typed import SpecError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(build_sam("tiny", seed=0).state_dict(), path)  # plain state dict
    return path


def _spec(**keys) -> SamSpec:
    return parse_model({"kind": "sam", **keys}, "model")


def test_spec_defaults_and_checks():
    spec = _spec()
    assert spec.checkpoint_path("resources") == "resources/checkpoints/sam_vit_b_01ec64.pth"
    assert _spec(model="medsam_vit_b").checkpoint_file == "medsam_vit_b.pth"
    assert spec.job_resources("predict").gpu == 1
    assert _spec(device="cpu").job_resources("predict").gpu == 0
    with pytest.raises(SpecError, match="tiny arch has no published weights"):
        _spec(arch="tiny")
    with pytest.raises(SpecError, match="slices_3d"):
        _spec(slices_3d="all")


class GroundTruthSegmenter:
    """Answers each prompt with the ground-truth slice if the prompt touches it (else
    nothing) and records what each slice was prompted with."""

    def __init__(self, target: np.ndarray):
        self.target, self.asked = target, {}

    def encode(self, slice_u8):
        return int(slice_u8[0, 0])  # the stack's slices hold their own index

    def probabilities(self, frame, prompt: Prompt):
        self.asked.setdefault(frame, []).append(prompt)
        gt = self.target[frame].astype(np.float32)
        (x0, y0), (x1, y1) = np.array(prompt.points).min(0), np.array(prompt.points).max(0)
        hit = gt[int(y0):int(y1) + 1, int(x0):int(x1) + 1].any()
        return gt if hit else np.zeros_like(gt)


def _tube(n=30, start=5, stop=26) -> np.ndarray:
    target = np.zeros((n, 20, 20), bool)
    for z in range(start, stop):
        r = 3 + (z % 4)
        target[z, 10 - r:10 + r, 8 - r // 2:8 + r] = True
    return target


def test_every_slice_is_prompted_from_its_neighbour_towards_the_nearest_prompt():
    target = _tube()
    seg = GroundTruthSegmenter(target)
    stack = np.broadcast_to(np.arange(30, dtype=np.uint8)[:, None, None], (30, 20, 20))
    seq = _Slices(seg, stack)
    prompts = [box_prompt(target[10], 10), box_prompt(target[21], 21)]
    probs, record = segment_label(seq, prompts, None, propagate=True)
    assert record["prompted"] == [10, 21]
    assert np.array_equal(probs > 0.5, target)  # the walk reached both ends
    # each slice asked once; unprompted ones with the box of the neighbour towards the
    # nearest prompted slice (15 is nearer 10; 16 nearer 21)
    assert all(len(v) == 1 for v in seg.asked.values())
    for z in (11, 15):
        assert seg.asked[z][0].points == box_prompt(target[z - 1], z).points
    for z in (16, 20, 22):
        src = z + 1 if z < 21 else z - 1
        assert seg.asked[z][0].points == box_prompt(target[src], z).points
    # the walk stops at the first empty prediction: slice 4 and 26 were asked, 3 and 27 not
    assert 4 in seg.asked and 26 in seg.asked and 3 not in seg.asked and 27 not in seg.asked
    assert record["propagated"] == len(seg.asked) - 2

    only = GroundTruthSegmenter(target)
    probs, record = segment_label(_Slices(only, stack), prompts, None, propagate=False)
    assert sorted(only.asked) == [10, 21] and record["propagated"] == 0
    assert (probs > 0.5).sum() == target[10].sum() + target[21].sum()


def test_mask_prompt_becomes_the_box_of_its_ground_truth():
    gt = np.zeros((10, 12), bool)
    gt[2:5, 3:9] = True
    boxed = as_sam_prompt(Prompt("mask", 4, [], []), gt)
    assert boxed.kind == "box" and boxed.points == [[3.0, 2.0], [8.0, 4.0]]
    with pytest.raises(ValueError, match="ground-truth slice"):
        as_sam_prompt(Prompt("mask", 4, [], []), None)


def test_medsam_intensity_follows_its_preprocessing():
    ct = np.array([[[-1000.0, -160.0], [40.0, 240.0]], [[1000.0, 0.0], [-50.0, 100.0]]])
    u8 = MedSamSegmenter.to_uint8(ct, ct=True, is_3d=True)
    assert u8.dtype == np.uint8 and u8.min() == 0 and u8.max() == 255
    assert u8[0, 0, 0] == u8[0, 0, 1] == 0 and u8[0, 1, 1] == u8[1, 0, 0] == 255
    mr = np.zeros((4, 4, 4))
    mr[1:3, 1:3, 1:3] = np.arange(8).reshape(2, 2, 2) + 10
    u8 = MedSamSegmenter.to_uint8(mr, ct=False, is_3d=True)
    assert (u8[mr == 0] == 0).all() and u8.max() == 255


@pytest.mark.parametrize("model", ["sam_vit_b", "medsam_vit_b"])
@pytest.mark.parametrize("data", ["phantom2d", "phantom3d"])
def test_predictions_follow_the_contract(request, tiny_weights, tmp_path, model, data):
    root = request.getfixturevalue(data)
    ds = StandardDataset(root)
    kind = "click" if data == "phantom2d" else "box"
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(dataset_prompts(root, kind, seed=0)))
    spec = _spec(model=model, arch="tiny", checkpoint=str(tiny_weights), device="cpu")
    written = predict_dataset(spec, tiny_weights, root, prompts, tmp_path / "out")
    assert len(written) == len(ds.cases("test"))
    allowed = {0, *ds.labels.values()}
    for case in ds.cases("test"):
        gt = ds.read_label(case)
        pred = ds.read_label(type(case)(case.case_id, "test", case.images,
                                        tmp_path / "out" / f"{case.case_id}{ds.file_ending}"))
        assert pred.array.shape == gt.array.shape
        assert np.allclose(pred.affine, gt.affine)
        assert set(np.unique(pred.array)) <= allowed
    record = json.loads((tmp_path / "out" / "slices.json").read_text())
    assert set(record) == {c.case_id for c in ds.cases("test")}


MINI = {
    "seed": 0, "results": "results", "resources": "resources",
    "datasets": {
        "mini3d": {"source": "synthetic", "generator": "abdomen3d", "n_cases": 3,
                   "test_fraction": 0.34, "prompt": "box", "prompt_rate": 0.25},
        "mini2d": {"source": "synthetic", "generator": "cells2d", "n_cases": 4,
                   "test_fraction": 0.5, "prompt": "click"},
    },
    "evaluate": {"strict": True, "hd95_penalty": "diagonal"},
}


@pytest.mark.slow
def test_miniature_workflow_runs_sam_and_medsam_and_scores_them(tiny_weights, tmp_path):
    """The real snakemake: synthesize, prompts, sam_predict, evaluate, for both families
    on a 2D and a 3D set, with tiny random weights given as each model's checkpoint."""
    cfg = {**MINI, "models": {
        "sam-mini": {"kind": "sam", "paper_name": "SAM", "model": "sam_vit_b",
                     "arch": "tiny", "checkpoint": str(tiny_weights),
                     "footnote": "tiny random weights"},
        "medsam-mini": {"kind": "sam", "paper_name": "MedSAM", "model": "medsam_vit_b",
                        "arch": "tiny", "checkpoint": str(tiny_weights),
                        "slices_3d": "prompted"},
    }}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    targets = [f"results/metrics/{d}/{m}.csv" for d in cfg["datasets"] for m in cfg["models"]]
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
         "--cores", "2", *targets], capture_output=True, text=True, timeout=900)
    logs = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}"
                     for p in (tmp_path / "results" / "logs").rglob("*.log"))
    assert proc.returncode == 0, proc.stderr[-3000:] + logs
    for target in targets:
        df = pd.read_csv(tmp_path / target)
        assert len(df) and df["dice"].between(0, 1).all(), target
        assert not df["status"].str.startswith("error").any(), df["status"].tolist()
    slices = json.loads((tmp_path / "results/predictions/mini3d/medsam-mini/slices.json")
                        .read_text())
    assert all(r["propagated"] == 0 for labels in slices.values() for r in labels.values())
