"""End to end: the real `snakemake` on a miniature config, and config errors at start-up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def mini_config(tmp: Path) -> dict:
    """Tiny sizes and few steps: the demo's shape, minutes -> seconds."""
    return {
        "seed": 0,
        "results": "results",
        "resources": "resources",
        "datasets": {
            "mini3d": {"source": "synthetic", "generator": "abdomen3d", "n_cases": 3,
                       "test_fraction": 0.34, "prompt": "box"},
            "mini2d": {"source": "synthetic", "generator": "cells2d", "n_cases": 4,
                       "test_fraction": 0.5, "prompt": "click", "mode_2d": "one_prompt"},
        },
        "models": {
            "medsam2-mini": {"kind": "medsam2", "paper_name": "MedSAM-2", "arch": "tiny",
                             "image_size": 64, "memory": {"policy": "self_sorting"},
                             "preprocess": {"crop": True, "min_area": 10},
                             "train": {"steps": 2, "clip_len": 3}},
            "medsam2-mini-none": {"kind": "medsam2", "paper_name": "MedSAM-2[none]",
                                  "ablation": True, "arch": "tiny", "image_size": 64,
                                  "weights_from": "medsam2-mini",
                                  "preprocess": {"crop": True, "min_area": 10},
                                  "memory": {"policy": "self_sorting", "confidence": False,
                                             "dissimilarity": False, "resampling": False},
                                  "datasets": ["mini3d"]},
            "sam2-mini": {"kind": "sam2", "paper_name": "SAM2", "arch": "tiny",
                          "image_size": 64, "memory": {"policy": "fifo"},
                          "pretrained": "mini-videos",
                          "predict": {"image_size": 96, "mirror": [[0, 1]],
                                      "connected_to_prompt": True, "datasets": ["mini3d"]},
                          "train": {"steps": 2, "clip_len": 3}},
        },
        "pretrain": {"mini-videos": {"arch": "tiny", "image_size": 64, "videos": ["twins"],
                                     "train": {"steps": 2, "clip_len": 3}}},
        "evaluate": {"strict": False, "hd95_penalty": "diagonal"},
        "report": {"main_model": "medsam2-mini"},
    }


def run_snakemake(workdir: Path, config: dict, *extra: str, timeout: int = 900):
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(cfg), "--cores", "2",
         *extra],
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.slow
def test_demo_shaped_workflow_runs_end_to_end(tmp_path):
    res = run_snakemake(tmp_path, mini_config(tmp_path))
    assert res.returncode == 0, res.stderr[-4000:]
    results = tmp_path / "results"
    for dataset, model in [("mini3d", "medsam2-mini"), ("mini3d", "sam2-mini"),
                           ("mini3d", "medsam2-mini-none"), ("mini2d", "medsam2-mini"),
                           ("mini2d", "sam2-mini")]:
        df = pd.read_csv(results / "metrics" / dataset / f"{model}.csv")
        assert len(df) >= 1 and set(df["model"]) == {model}
        assert df["dice"].between(0, 1).all()
        assert set(df["status"]) <= {"ok", "empty_gt", "empty_pred", "both_empty"}
    # 3D: one row per test case and label, both labels scored
    df3 = pd.read_csv(results / "metrics" / "mini3d" / "medsam2-mini.csv")
    assert set(df3["label"]) == {"organ", "lesion"}
    # MedSAM-2 trained on the preprocessing cache; SAM 2 on the raw standard datasets
    assert (results / "preprocessed" / "medsam2-mini" / "mini3d" / "index.json").is_file()
    assert not (results / "preprocessed" / "sam2-mini").exists()
    # SAM 2 started from the synthetic-video pretraining, MedSAM-2 from random init
    pretrained = results / "pretrained" / "mini-videos" / "checkpoint.pt"
    assert pretrained.is_file() and (results / "logs" / "pretrain" / "mini-videos.log").is_file()
    trained = yaml.safe_load((results / "models" / "sam2-mini" / "config.yaml").read_text())
    assert trained["init"] == "results/pretrained/mini-videos/checkpoint.pt"
    scratch = yaml.safe_load((results / "models" / "medsam2-mini" / "config.yaml").read_text())
    assert scratch["init"] is None
    # the ablation variant reused the trained weights: no second training for it
    assert not (results / "models" / "medsam2-mini-none").exists()
    summary = (results / "report" / "summary.md").read_text()
    assert "medsam2-mini" in summary and "sam2-mini" in summary and "mini3d" in summary
    assert (results / "report" / "figures" / "mini3d_per_case.png").stat().st_size > 1000
    # every rule left a log, and prompts are shared: one file per dataset
    assert (results / "logs" / "train" / "medsam2-mini.log").is_file()
    # trackers predict at predict.image_size where set, else at their training size
    logs = results / "logs" / "predict"
    assert "on cpu at 96 px" in (logs / "mini3d" / "sam2-mini.log").read_text()
    assert "on cpu at 64 px" in (logs / "mini3d" / "medsam2-mini.log").read_text()
    assert "on cpu at 64 px" in (logs / "mini2d" / "sam2-mini.log").read_text()  # not listed
    assert sorted(p.name for p in (results / "prompts").iterdir()) == ["mini2d.json",
                                                                      "mini3d.json"]
    # One-Prompt template sensitivity: 3 template seeds scored on the 2D set
    sens = pd.read_csv(results / "sensitivity" / "mini2d" / "medsam2-mini.csv")
    assert sorted(sens["seed"].unique()) == [0, 1, 2] and sens["dice"].between(0, 1).all()
    # nothing left to do: a rerun is a no-op
    again = run_snakemake(tmp_path, mini_config(tmp_path), "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # a new evaluation dataset and other prediction options: predictions, metrics and the
    # report are redone, no training (the models' training sets stay as they were)
    more = mini_config(tmp_path)
    more["datasets"]["mini3d-interactive"] = {**more["datasets"]["mini3d"], "prompt_rate": 0.5}
    for model in ("medsam2-mini", "sam2-mini"):  # as they were: the config file's order
        more["models"][model]["train"]["datasets"] = ["mini2d", "mini3d"]
    more["models"]["sam2-mini"]["predict"]["mirror"] = []
    planned = run_snakemake(tmp_path, more, "-n")
    assert planned.returncode == 0, planned.stderr[-3000:]
    rules = set(re.findall(r"^(?:local)?rule (\w+):", planned.stdout, re.M))
    # the interactive entry reads mini3d's phantoms: nothing is generated again
    assert not rules & {"train_tracker", "pretrain_tracker", "preprocess", "synthesize"}, rules
    assert {"prompts", "predict_tracker", "evaluate", "report", "resolved_config"} <= rules
    assert run_snakemake(tmp_path, more).returncode == 0
    summary = (results / "report" / "summary.md").read_text()
    assert "mini3d-interactive" in summary
    assert (results / "report" / "figures" / "mini3d-interactive_overlays.png").is_file()
    assert "Nothing to be done" in run_snakemake(tmp_path, more, "-n").stdout


def test_dry_run_lists_every_stage(tmp_path):
    res = run_snakemake(tmp_path, mini_config(tmp_path), "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    for rule in ("synthesize", "prompts", "pretrain_tracker", "train_tracker",
                 "predict_tracker", "evaluate", "report", "resolved_config"):
        assert rule in res.stdout, rule


def test_longest_training_jobs_are_scheduled_first(tmp_path):
    """Job priority = the job's runtime estimate (minutes): the longest start first."""
    cfg = mini_config(tmp_path)
    cfg["models"]["sam2-mini"]["resources"] = {"train": {"runtime": 45}}
    res = run_snakemake(tmp_path, cfg, "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = []  # (rule, wildcards, priority)
    for block in re.split(r"^(?=(?:local)?rule )", res.stdout, flags=re.M):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        names = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        level = re.search(r"^\s+priority: (\d+)", block, re.M)
        if rule and names:
            jobs.append((rule[1], names[1], int(level[1]) if level else 0))
    assert ("train_tracker", "model=sam2-mini", 45) in jobs
    assert ("pretrain_tracker", "name=mini-videos", 60) in jobs  # the default runtime
    assert all(p == 0 for r, _, p in jobs if r == "predict_tracker")
    # the seconds-long dataset jobs before any training job, which all wait for them
    data = [p for r, _, p in jobs if r == "synthesize"]
    assert data and min(data) > max(p for r, _, p in jobs if r != "synthesize")


#: the one lint left on purpose: every rule runs in the environment the workflow is started
#: from (README: install), so no rule names a conda environment or container of its own
SOFTWARE_LINT = "Specify a conda environment or container for each rule."


def test_snakemake_lint_finds_nothing_but_the_shared_environment():
    lint = subprocess.run([*SNAKEMAKE, "--lint", "--directory", str(REPO)],
                          capture_output=True, text=True, timeout=300)
    text = lint.stdout + lint.stderr
    found = re.findall(r"^\s+\* (.+?):?$", text, re.M)
    rules = re.findall(r"^Lints for rule (\w+)", text, re.M)
    assert "report" in rules and "predict_tracker" in rules, text[-2000:]  # it linted them
    assert set(found) == {SOFTWARE_LINT}, text[-3000:]
    assert not re.search(r"^Lints for snakefile", text, re.M), text[-3000:]


def test_the_conda_environment_installs_what_make_install_installs():
    """environment.yml is the conda route to the Makefile's environment: the same torch pins,
    then this checkout (conda runs pip from the file's folder, so `-e .` is the checkout),
    on a Python the package supports."""
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    makefile = (REPO / "Makefile").read_text()
    pins = re.search(r"pip install --quiet (torch==\S+ torchvision==\S+)", makefile)[1].split()
    assert pip == [*pins, "-e ."]
    python = next(d for d in conda if d.startswith("python="))
    minimum = re.search(r'requires-python = ">=(\d+)\.(\d+)"',
                        (REPO / "pyproject.toml").read_text())
    version = tuple(int(v) for v in python.split("=")[1].split("."))
    assert version >= (int(minimum[1]), int(minimum[2]))
    assert not (REPO / "workflow" / "envs").exists()  # no per-rule environments to drift


@pytest.mark.parametrize("seeds, expected", [(0, None), (1, "--seeds 0 --out"),
                                             (3, "--seeds 0 1 2 --out")])
def test_template_seeds_set_the_sensitivity_analysis(tmp_path, seeds, expected):
    cfg = mini_config(tmp_path)
    cfg["evaluate"] = {"template_seeds": seeds}
    res = run_snakemake(tmp_path, cfg, "-n", "-p")
    assert res.returncode == 0, res.stderr[-3000:]
    commands = re.findall(r"medsam2 sensitivity .*$", res.stdout, re.M)
    if expected is None:
        assert commands == []
    else:
        assert commands and all(expected in c for c in commands), commands
