"""The SLURM profile against a real one-node SLURM (tests/slurm_cluster.py).

One scenario, run once per module, checked by the tests below:
  A  `snakemake --profile workflow/profiles/slurm --retries 1` on the miniature workflow;
     the training job is scancel'd while it runs, its retry too: the run fails, naming
     the SLURM job and its state.
  B  the same command with the profile's own settings: it resumes; only training and
     what depends on it are submitted, finished outputs are left alone.
  C  again: nothing to do, nothing submitted.
The profile is used as a user uses it; the only overrides are `--retries 1` in A and the
partition, set through the profile's environment variable. ~2.5 min; skipped where no
cluster can be brought up (not root, no apt), never under CI.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import slurm_cluster
from slurm_cluster import SlurmUnavailable, in_ci, mini_workflow

from medsam2.data.layout import StandardDataset, read_volume

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

BIN = Path(sys.executable).parent
PROFILE = "workflow/profiles/slurm"
GPU_RULES = {"train_tracker", "predict_tracker"}
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
METRICS_COLUMNS = ["dataset", "model", "case", "label", "label_value", "dice", "iou",
                   "hd95_mm", "gt_voxels", "pred_voxels", "spacing", "diagonal_mm", "status"]
DATASETS = ("synth3d", "synth2d")
MODEL = "medsam2-tiny"


@dataclass
class Run:
    returncode: int
    output: str
    seconds: float
    jobs: dict[str, str] = field(default_factory=dict)  # SLURM job id -> rule

    @classmethod
    def parse(cls, returncode: int, output: str, seconds: float) -> Run:
        jobs = {jid: re.search(r"/rule_([^/]+)/", log).group(1)
                for jid, log in SUBMITTED.findall(output)}
        return cls(returncode, output, seconds, jobs)


@dataclass
class Scenario:
    root: Path
    cluster: slurm_cluster.SlurmCluster
    a: Run
    b: Run
    c: Run
    cancelled: list[str]
    mtimes_after_a: dict[str, float]
    tres: dict[str, str]  # job id -> `scontrol show job` TRES line


def _snakemake_cmd(*extra: str, limit: int) -> list[str]:
    # timeout -k: without accounting a wrong status command makes Snakemake wait forever
    return ["timeout", "-k", "10", str(limit), str(BIN / "snakemake"), "--profile", PROFILE,
            *extra]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"  # jobs inherit it (sbatch --export=ALL)
    env["MEDSAM2_SLURM_PARTITION"] = slurm_cluster.PARTITION
    return env


def _run(root: Path, *extra: str, limit: int = 240) -> Run:
    t0 = time.monotonic()
    proc = subprocess.run(_snakemake_cmd(*extra, limit=limit), cwd=root, env=_env(),
                          capture_output=True, text=True)
    return Run.parse(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0)


def _run_cancelling_training(cluster, root: Path, times: int, limit: int = 200) -> tuple:
    """Run A: scancel each training job as soon as it runs, `times` times."""
    t0 = time.monotonic()
    out_path = root / "snakemake_run_a.log"  # a file, not a pipe: no blocking while we poll
    with out_path.open("w") as out:
        proc = subprocess.Popen(_snakemake_cmd("--retries", str(times - 1), limit=limit),
                                cwd=root, env=_env(), stdout=out, stderr=subprocess.STDOUT)
        cancelled: list[str] = []
        try:
            while proc.poll() is None and len(cancelled) < times:
                for job in cluster.squeue():
                    if (job["comment"].startswith("rule_train_tracker")
                            and job["state"] == "RUNNING" and job["id"] not in cancelled):
                        subprocess.run(["scancel", job["id"]], check=True, timeout=30)
                        cancelled.append(job["id"])
                time.sleep(0.5)
            proc.wait(timeout=limit + 20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = out_path.read_text()
    return Run.parse(proc.returncode, output, time.monotonic() - t0), cancelled


def _scontrol_tres(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                         text=True, timeout=30).stdout
    return " ".join(w for w in out.split() if w.startswith(("TresPerJob", "TRES=", "Partition")))


def _finished_outputs(root: Path) -> list[Path]:
    res = root / "results"
    return [*(res / "datasets" / d / "dataset.json" for d in DATASETS),
            *(res / "prompts" / f"{d}.json" for d in DATASETS),
            *sorted((res / "config").glob("resolved-*.json"))]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    try:
        cluster = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as err:
        if in_ci():
            pytest.fail(f"CI must run the SLURM test, but: {err}")
        pytest.skip(str(err))
    try:
        root = mini_workflow(tmp_path_factory.mktemp("mini"))
        a, cancelled = _run_cancelling_training(cluster, root, times=2)
        mtimes = {str(p): p.stat().st_mtime for p in _finished_outputs(root) if p.exists()}
        b = _run(root)
        c = _run(root, limit=120)
        tres = {jid: _scontrol_tres(jid) for jid in {**a.jobs, **b.jobs}}
        for name, run in (("b", b), ("c", c)):  # for whoever debugs a failure
            (root / f"snakemake_run_{name}.log").write_text(run.output)
        yield Scenario(root, cluster, a, b, c, cancelled, mtimes, tres)
    finally:
        cluster.stop()


def _explain(run: Run) -> str:
    return f"rc={run.returncode} after {run.seconds:.0f} s\n{run.output[-4000:]}"


def test_cancelled_job_retried_then_reported(scenario):
    a, cancelled = scenario.a, scenario.cancelled
    assert len(cancelled) == 2, _explain(a)
    assert a.returncode not in (0, 124, 137), _explain(a)  # failed, and not by the timeout
    assert [a.jobs[j] for j in cancelled] == ["train_tracker", "train_tracker"]
    for jid in cancelled:  # each cancel is named with its SLURM id and state
        assert re.search(rf"SLURM-job '{jid}' failed, SLURM status is: 'CANCELLED'", a.output)
        assert list((scenario.root / "results/logs/slurm/rule_train_tracker").rglob(f"{jid}.log"))
    assert "Error in rule train_tracker" in a.output
    assert a.output.count("Trying to restart job") == 1  # --retries 1: one retry, then fail
    # the first cancel was retried: a second training job after it
    assert int(cancelled[1]) > int(cancelled[0])


def test_rerun_resumes_without_redoing_finished_outputs(scenario):
    b, c = scenario.b, scenario.c
    assert b.returncode == 0, _explain(b)
    assert set(scenario.mtimes_after_a) == {str(p) for p in _finished_outputs(scenario.root)}
    assert set(b.jobs.values()) == {"train_tracker", "predict_tracker", "evaluate",
                                    "report_figures", "report"}
    for path, mtime in scenario.mtimes_after_a.items():
        assert Path(path).stat().st_mtime == mtime, f"{path} was redone"
    assert c.returncode == 0 and not c.jobs, _explain(c)
    assert "Nothing to be done" in c.output


def test_jobs_went_through_slurm(scenario):
    known = {j["id"]: j for j in scenario.cluster.squeue()}
    all_jobs = {**scenario.a.jobs, **scenario.b.jobs}
    assert len(all_jobs) >= 10
    for jid, rule in all_jobs.items():
        assert jid in known, f"job {jid} ({rule}) unknown to SLURM"
        assert known[jid]["comment"].startswith(f"rule_{rule}")
        logs = list((scenario.root / "results/logs/slurm" / f"rule_{rule}").rglob(f"{jid}.log"))
        assert len(logs) == 1, f"no SLURM log for job {jid} ({rule})"
        text = logs[0].read_text()
        if jid in scenario.cancelled:  # killed before its Snakemake said anything
            assert f"JOB {jid} ON {scenario.cluster.node} CANCELLED" in text, text
        else:
            assert f"rule {rule}:" in text, text
        assert "Partition=debug" in scenario.tres[jid]  # from MEDSAM2_SLURM_PARTITION
    for jid, rule in scenario.b.jobs.items():
        assert known[jid]["state"] == "COMPLETED", (jid, rule)


def test_gpu_rules_saw_gpus_and_cpu_rules_none(scenario):
    """The step that runs the rule's command (step 0; the task prolog records its
    environment) has CUDA_VISIBLE_DEVICES exactly when the rule asked for a GPU."""
    steps = {(jid, step): cvd for jid, step, cvd in scenario.cluster.steps_env()}
    jobs = scenario.b.jobs
    assert GPU_RULES <= set(jobs.values())
    for jid, rule in jobs.items():
        cvd = steps.get((jid, "0"))
        assert cvd is not None, f"job {jid} ({rule}) ran no step"
        if rule in GPU_RULES:
            assert re.fullmatch(r"\d+(,\d+)*", cvd), (rule, cvd)
            assert "gpu:1" in scenario.tres[jid], scenario.tres[jid]
        else:
            assert cvd == "unset", (rule, cvd)
            assert "gpu" not in scenario.tres[jid], scenario.tres[jid]


def test_outputs_right(scenario):
    res = scenario.root / "results"
    assert (res / "models" / MODEL / "checkpoint.pt").is_file()
    for name in DATASETS:
        ds = StandardDataset(res / "datasets" / name)
        test_cases = ds.cases("test")
        assert test_cases
        with (res / "metrics" / name / f"{MODEL}.csv").open() as f:
            reader = csv.DictReader(f)
            rows = list(reader)
        assert reader.fieldnames == METRICS_COLUMNS
        assert {(r["case"], r["label"]) for r in rows} == {
            (c.case_id, label) for c in test_cases for label in ds.labels}
        for r in rows:
            assert not r["status"].startswith("error"), r
            assert 0.0 <= float(r["dice"]) <= 1.0
        for case in test_cases:
            pred = read_volume(res / "predictions" / name / MODEL / f"{case.case_id}"
                               f"{ds.file_ending}", ds.spacing_2d)
            gt = ds.read_label(case)
            assert pred.array.shape == gt.array.shape
            assert set(np.unique(pred.array)) <= {0, *ds.labels.values()}
    summary = (res / "report" / "summary.csv").read_text()
    assert MODEL in summary and all(d in summary for d in DATASETS)
