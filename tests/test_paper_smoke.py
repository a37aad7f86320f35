"""The paper run, every job executed, at toy sizes: config/paper.yaml + paper-smoke.yaml.

What is real: the paper config's 26 dataset entries (14 tasks, each in the paper's
headline protocol and beside it key-slice / pure One-Prompt), its 14 models and its
report. Each dataset is a miniature archive in the real dataset's layout (the builders
of test_datasets_fourteen.py, each following a cited public source) behind a registry
whose only change is where the files come from: direct-download datasets through
file:// URLs with their sha256, registration datasets put into resources/downloads/ by
hand, as a user does. The weights files the paper config names are tiny random weights
of each file's layout, placed in resources/checkpoints/ as on an offline cluster. What
is toy: sizes (paper-smoke.yaml), so the numbers mean nothing; the test checks that every
job ran and that Tables 1-3 carry the paper's numbers beside ours with each protocol
named.

In ``make test`` the comparison rows run on a covering set of entries
(config/paper-smoke-rows.yaml: every stage, dataset, protocol and model still runs);
``PAPER_SMOKE=full`` runs every job of the plan, as ``make paper-smoke`` does (keep its
folder with ``SMOKE_DIR=<dir>``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import test_datasets_fourteen as fourteen
import torch
import yaml
from snakemake.utils import update_config

from baselines.sam.model import build_sam
from medsam2.data.download import sha256_of
from medsam2.model.build import build_from_spec
from medsam2.spec import Config, TrackerSpec

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [REPO / "config" / "paper.yaml", REPO / "config" / "paper-smoke.yaml"] + (
    [] if os.environ.get("PAPER_SMOKE") == "full" else [REPO / "config" / "paper-smoke-rows.yaml"])
#: miniature sizes: big enough for nnU-Net's planner to pool at least once per network
VOLUME, IMAGE = (16, 16, 12), (16, 16)


def merged_config() -> dict:
    """paper.yaml with the smoke files laid over it, merged by Snakemake's own merge."""
    base, *overlays = (yaml.safe_load(p.read_text()) for p in CONFIGS)
    for over in overlays:
        update_config(base, over)
    return base


def write_registry(root: Path) -> Path:
    """Miniature archives of the 14 datasets and a registry that fetches them locally."""
    registry = root / "registry"
    registry.mkdir(parents=True)
    sizes = fourteen.S3, fourteen.S2
    fourteen.S3, fourteen.S2 = VOLUME, IMAGE
    try:
        for key, build in fourteen.BUILDERS.items():
            write_entry(root, registry, key, build)
    finally:
        fourteen.S3, fourteen.S2 = sizes
    return registry


def write_entry(root: Path, registry: Path, key: str, build) -> None:
    """One dataset's archives, and its registry file with only the file sources swapped."""
    upstream = root / "upstream" / key
    upstream.mkdir(parents=True)
    built, _ = build(upstream)
    entry = yaml.safe_load((REPO / "config" / "datasets" / f"{key}.yaml").read_text())
    files = []
    for item in built:
        item = item if isinstance(item, dict) else {"path": item}
        path = item["path"]
        file = {"name": path.name, "sha256": sha256_of(path), "place": item.get("place")}
        if entry["access"] == "public":
            file["url"] = path.as_uri()
        else:  # behind a registration: downloaded by hand, then verified
            file["url"] = None
            downloads = root / "resources" / "downloads" / key
            downloads.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, downloads / path.name)
        files.append(file)
    entry["files"] = files
    (registry / f"{key}.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))


def place_checkpoints(root: Path, config: Config) -> None:
    """Tiny random weights under the file names the paper config names, in each file's
    layout: {"model": SAM 2 state dict} for trackers, a plain Sam state dict for SAM."""
    written: set[Path] = set()
    for spec in config.models.values():
        path = getattr(spec, "checkpoint", None)
        if not path or not path.startswith("resources/") or root / path in written:
            continue
        dest = root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, TrackerSpec):
            torch.save({"model": build_from_spec(spec, seed=0).state_dict()}, dest)
        else:
            torch.save(build_sam(spec.arch, seed=0).state_dict(), dest)
        written.add(dest)


def run_smoke(root: Path, cores: int = os.cpu_count() or 2) -> subprocess.CompletedProcess:
    registry = write_registry(root)
    config = Config.from_dict({**merged_config(), "registry_dir": str(registry)})
    place_checkpoints(root, config)
    exe = Path(sys.executable).with_name("snakemake")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(exe), "-s", str(REPO / "Snakefile"), "-d", str(root), "--cores", str(cores),
         "--configfile", *map(str, CONFIGS), "--config", f"registry_dir={registry}",
         "--rerun-incomplete", "--keep-going"],
        capture_output=True, text=True, timeout=1800, env=env)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    root = Path(os.environ["SMOKE_DIR"]) if os.environ.get("SMOKE_DIR") else (
        tmp_path_factory.mktemp("paper-smoke"))
    proc = run_smoke(root)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    return root


@pytest.mark.slow
def test_every_job_of_the_paper_plan_ran(smoke: Path):
    exe = Path(sys.executable).with_name("snakemake")
    again = subprocess.run(
        [str(exe), "-s", str(REPO / "Snakefile"), "-d", str(smoke), "-n", "--cores", "1",
         "--configfile", *map(str, CONFIGS), "--config",
         f"registry_dir={smoke / 'registry'}"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr
    config = Config.from_dict({**merged_config(), "registry_dir": str(smoke / "registry")})
    pairs = config.model_dataset_pairs()
    # every model and every dataset entry ran (the covering set keeps them all)
    assert {m for _, m in pairs} == set(config.models)
    assert {d for d, _ in pairs} == set(config.datasets)
    for dataset, model in pairs:
        rows = pd.read_csv(smoke / "results" / "metrics" / dataset / f"{model}.csv")
        assert len(rows) and not rows["status"].str.startswith("error").any(), (
            dataset, model, rows["status"].unique())


@pytest.mark.slow
def test_tables_1_to_3_have_the_papers_numbers_beside_ours(smoke: Path):
    report = smoke / "results" / "report"
    config = Config.from_dict({**merged_config(), "registry_dir": str(smoke / "registry")})
    for table in ("table1", "table2", "table3"):
        text = (report / f"{table}_dice.md").read_text()
        assert "**Ours (this run)**" in text and "**Reported by Zhu et al." in text, table
        assert "Protocol and prompt per column:" in text, table
        assert "64 public datasets" in text, table  # the unnamed training collection
    table2 = (report / "table2_dice.md").read_text()
    header = next(line for line in table2.splitlines() if line.startswith("| Model |"))
    # every configured task entry with a paper key is a column of its own (no protocol
    # pair dropped or merged), and each footnote names its protocol
    entries = [d for d, s in config.datasets.items()
               if s.paper_key and s.paper_key != "btcv"]
    assert len(entries) == 22
    for entry in entries:
        assert f" {entry} |" in header, entry
    for protocol in ("interactive 3D, p = 0.25", "key slice", "interactive One-Prompt, p = 0.3",
                     "One-Prompt, "):
        assert protocol in table2, protocol
    table1 = (report / "table1_dice.md").read_text()
    assert "aorta" in table1 and "adrenal_gland" in table1
    table3 = (report / "table3_dice.md").read_text()
    for row in ("| none (sam2-finetuned) |", "| +confidence (medsam2-confidence) |",
                "| +dissimilarity (medsam2-dissimilarity) |", "| +resampling (medsam2) |"):
        assert row in table3, row  # "none" is SAM 2 fine-tuned; the last row the main model
