"""The baseline contract, end to end: a new kind is one folder plus one config entry.

A copy of the repository gets ``baselines/threshold/`` (a rules.smk and a module that
thresholds each test image with Otsu's method), and a config whose only model is of that
kind. The real ``snakemake`` then synthesizes the dataset, runs the new rule and our
``evaluate`` rule; the model's metrics CSV must exist with one row per (case, label).
Nothing outside the new folder and the config is touched, which is the point.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "results", "resources", ".snakemake",
                              "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info")

RULES = '''\
# Fixture baseline: Otsu threshold of every test image (kind: threshold).


rule threshold_predict:
    input:
        dataset_json_of,
    output:
        directory(f"{RESULTS}/predictions/{{dataset}}/{{model}}"),
    log:
        f"{LOGS}/threshold/{{dataset}}/{{model}}.log",
    wildcard_constraints:
        model=names_regex(models_of_kind("threshold")),
    params:
        dir=lambda w: dataset_dir(w.dataset),
    shell:
        "python -m baselines.threshold.predict --dataset-dir {params.dir}"
        " --out-dir {output} > {log} 2>&1"
'''

MODULE = '''\
"""Otsu threshold baseline: every test image -> the dataset's first foreground label."""

import argparse
from pathlib import Path

import numpy as np
from skimage.filters import threshold_otsu

from medsam2.data.layout import StandardDataset, Volume, write_volume


def predict(dataset_dir, out_dir):
    ds = StandardDataset(dataset_dir)
    value = min(ds.labels.values())
    for case in ds.cases("test"):
        image = ds.read_image(case)
        mask = image.array < threshold_otsu(image.array)
        pred = Volume(np.where(mask, value, 0).astype(np.uint8), image.affine)
        write_volume(Path(out_dir) / f"{case.case_id}{ds.file_ending}", pred, is_label=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset-dir", required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    predict(args.dataset_dir, args.out_dir)
'''

CONFIG = """\
seed: 0
results: results
resources: resources
datasets:
  tiny2d:
    source: synthetic
    generator: cells2d
    n_cases: 4
    test_fraction: 0.5
    prompt: box
models:
  otsu:
    kind: threshold
    paper_name: Otsu
evaluate:
  strict: true
  hd95_penalty: diagonal
"""


@pytest.mark.slow
def test_extra_baseline_folder_flows_into_metrics(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=SKIP)
    folder = repo / "baselines" / "threshold"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "rules.smk").write_text(RULES)
    (folder / "predict.py").write_text(MODULE)
    # the copy's config replaces the demo's (a --configfile would be merged into it)
    (repo / "config" / "config.yaml").write_text(CONFIG)

    target = "results/metrics/tiny2d/otsu.csv"
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PYTHONPATH": str(repo), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--nolock", target],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    logs = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}"
                     for p in (repo / "results" / "logs").rglob("*.log"))
    assert proc.returncode == 0, textwrap.shorten(proc.stderr[-4000:], 4000) + logs

    pred_dir = repo / "results/predictions/tiny2d/otsu"  # (+ snakemake's .snakemake_timestamp)
    preds = sorted(p.name for p in pred_dir.iterdir() if not p.name.startswith("."))
    assert len(preds) == 2 and all(p.endswith(".png") for p in preds)
    df = pd.read_csv(repo / target)
    assert len(df) == 2  # two test cases x one foreground label
    assert set(df["model"]) == {"otsu"} and set(df["dataset"]) == {"tiny2d"}
    assert df["status"].isin(["ok", "empty_pred"]).all(), df["status"].tolist()
    assert df["dice"].between(0, 1).all()
