"""Benchmark: how long Snakemake takes to plan the paper reproduction (`snakemake -n`).

Why: on a cluster every `snakemake --profile slurm` call, every resume and every status
check starts by building the whole DAG (14 datasets x all models: download, convert,
prompts, training, prediction, evaluation, report). If planning is slow, every restart
is. Target: under 10 s.

    python bench/dag.py                          # config/paper.yaml, 3 repeats
    python bench/dag.py --config my.yaml --repeats 5

Without config/paper.yaml (or with --equivalent) it plans an equivalent temporary config:
every registry dataset of config/datasets/ x MedSAM-2, SAM 2, the four ablation variants
and nnU-Net (when baselines/nnunet/rules.smk exists). The dry run runs in a scratch folder
that links the workflow, so it neither reads nor locks the checkout's results/.

Last lines: ``RESULT paper_dag_jobs <n>`` and ``RESULT paper_dag_seconds <median wall s>``
(the whole `snakemake -n` process: interpreter start, imports, parsing, DAG).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 10.0
ABLATION = {  # model name -> (paper name, memory switches)
    "medsam2-none": ("MedSAM-2[none]", (False, False, False)),
    "medsam2-confidence": ("MedSAM-2[+confidence_threshold]", (True, False, False)),
    "medsam2-dissimilarity": ("MedSAM-2[+dissimilarity_selection]", (True, True, False)),
    "medsam2-resampling": ("MedSAM-2[+resampling]", (True, True, True)),
}


def equivalent_config(repo: Path = REPO) -> dict:
    """All registry datasets x all model kinds, shaped like config/paper.yaml."""
    datasets = {p.stem: {"source": "registry"}
                for p in sorted((repo / "config" / "datasets").glob("*.yaml"))}
    full = {"policy": "self_sorting", "confidence": True, "dissimilarity": True,
            "resampling": True}
    ckpt = "resources/checkpoints/sam2.1_hiera_small.pt"
    models: dict[str, dict] = {
        "medsam2": {"kind": "medsam2", "paper_name": "MedSAM-2", "arch": "hiera_s",
                    "image_size": 1024, "checkpoint": ckpt, "memory": full,
                    "train": {"steps": 40000}},
        "sam2": {"kind": "sam2", "paper_name": "SAM2", "arch": "hiera_s", "image_size": 1024,
                 "checkpoint": ckpt, "memory": {"policy": "fifo"}},
    }
    for name, (paper_name, (conf, dis, res)) in ABLATION.items():
        models[name] = {"kind": "medsam2", "paper_name": paper_name, "ablation": True,
                        "arch": "hiera_s", "image_size": 1024, "weights_from": "medsam2",
                        "memory": {"policy": "self_sorting", "confidence": conf,
                                   "dissimilarity": dis, "resampling": res}}
    if (repo / "baselines" / "nnunet" / "rules.smk").is_file():
        models["nnunet"] = {"kind": "nnunet", "paper_name": "nnUNet"}
    return {"seed": 0, "results": "results", "resources": "resources", "datasets": datasets,
            "models": models, "report": {"main_model": "medsam2"}}


def scratch_checkout(root: Path, repo: Path = REPO) -> Path:
    """A folder that links the workflow (Snakefile, rules, baselines, registry)."""
    (root / "config").mkdir(parents=True)
    for name in ("Snakefile", "workflow", "baselines"):
        (root / name).symlink_to(repo / name)
    (root / "config" / "datasets").symlink_to(repo / "config" / "datasets")
    (root / "config" / "config.yaml").symlink_to(repo / "config" / "config.yaml")
    return root


def time_dry_run(workdir: Path, configfile: Path) -> tuple[float, int]:
    """Wall seconds of one `snakemake -n`, and the number of jobs it planned."""
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-n", "--quiet", "rules",
           "--configfile", str(configfile)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    match = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no job count in the output of {' '.join(cmd)}")
    return seconds, int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config" / "paper.yaml")
    parser.add_argument("--equivalent", action="store_true",
                        help="plan the generated all-datasets x all-models config instead")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dagbench-") as tmp:
        work = scratch_checkout(Path(tmp) / "checkout")
        if args.equivalent or not args.config.is_file():
            configfile = Path(tmp) / "paper_equivalent.yaml"
            configfile.write_text(yaml.safe_dump(equivalent_config(), sort_keys=False))
            print(f"config: generated equivalent ({configfile.name}; "
                  f"{args.config} {'ignored' if args.equivalent else 'absent'})")
        else:
            configfile = args.config.resolve()
            print(f"config: {configfile}")
        cfg = yaml.safe_load(configfile.read_text())
        print(f"datasets: {len(cfg['datasets'])}  models: {len(cfg['models'])} "
              f"({', '.join(cfg['models'])})")
        runs = [time_dry_run(work, configfile) for _ in range(args.repeats)]
        t0 = time.perf_counter()  # what the interpreter and Snakemake's import cost alone
        subprocess.run([str(Path(sys.executable).with_name("snakemake")), "--version"],
                       cwd=work, capture_output=True, check=True)
        startup = time.perf_counter() - t0
    seconds = [s for s, _ in runs]
    print("dry runs (s): " + " ".join(f"{s:.2f}" for s in seconds)
          + f"   (snakemake --version alone: {startup:.2f} s)")
    median = statistics.median(seconds)
    print(f"target < {TARGET_SECONDS:.0f} s: {'met' if median < TARGET_SECONDS else 'MISSED'}")
    print(f"RESULT paper_dag_jobs {runs[0][1]}")
    print(f"RESULT paper_dag_seconds {median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
