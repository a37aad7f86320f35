"""The Snakemake profiles parse as Snakemake parses them, ask for GPUs only in GPU rules,
take partition/account from the environment, and `medsam2 profile install` makes the
literal `snakemake --profile slurm` work without clobbering anybody's profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import REPO, mini_workflow
from snakemake.profiles import ProfileConfigFileParser

from medsam2.cli import main
from medsam2.profile import ProfileError, available_profiles, install_profile

PROFILES = REPO / "workflow" / "profiles"
#: the rules that run a model: they may ask for GPUs (the model's spec says how many)
MODEL_RULES = {"pretrain_tracker", "train_tracker", "predict_tracker", "template_sensitivity",
               "nnunet_train", "nnunet_predict"}
ENV_VARS = ("MEDSAM2_SLURM_ACCOUNT", "MEDSAM2_SLURM_PARTITION", "MEDSAM2_SLURM_GPU_PARTITION",
            "MEDSAM2_SLURM_GPU_MODEL", "SBATCH_ACCOUNT", "SBATCH_PARTITION")
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def parse(profile: str) -> dict:
    """The profile as Snakemake's own parser (YTE included) turns it into arguments."""
    path = PROFILES / profile / "config.yaml"
    with path.open() as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def rule_resources(args: dict) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in args.get("set-resources", []):
        rule, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        out.setdefault(rule, {})[key] = value
    return out


@pytest.fixture
def clean_env(monkeypatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_profiles_present():
    assert {"slurm", "local"} <= set(available_profiles())


def test_slurm_profile_defaults(clean_env):
    """The profile says where jobs go, never how big they are: no GPU, memory, minutes or
    threads anywhere in it (the workflow's specs size every job)."""
    args = parse("slurm")
    assert args["executor"] == "slurm"
    assert int(args["retries"]) >= 1 and int(args["jobs"]) >= 10
    assert args["slurm-logdir"] == "results/logs/slurm"
    assert args["slurm-status-command"] == "squeue"
    assert "set-threads" not in args
    sized = ("gpu", "mem_mb", "runtime", "threads")
    assert all(res == {} for res in rule_resources(args).values()) or \
        not any(k in res for res in rule_resources(args).values() for k in sized)
    assert not args.get("default-resources")  # no partition or account set either


def test_slurm_profile_reads_environment(clean_env):
    clean_env.setenv("MEDSAM2_SLURM_ACCOUNT", "proj-7")
    clean_env.setenv("SBATCH_PARTITION", "all")  # fallback; a Python builtin's name
    clean_env.setenv("MEDSAM2_SLURM_GPU_PARTITION", "gpu")
    clean_env.setenv("MEDSAM2_SLURM_GPU_MODEL", "a100")
    args = parse("slurm")
    defaults = dict(item.split("=", 1) for item in args["default-resources"])
    # quoted, so that Snakemake evaluates them to strings, never to a builtin like all()
    assert defaults == {"slurm_account": "'proj-7'", "slurm_partition": "'all'"}
    res = rule_resources(args)
    assert set(res) == MODEL_RULES
    for rule in MODEL_RULES:
        assert res[rule] == {"slurm_partition": "'gpu'", "gpu_model": "'a100'"}


def test_local_profile():
    args = parse("local")
    assert int(args["cores"]) == 2 and "executor" not in args


def test_dry_run_gives_gpus_to_gpu_rules_only(tmp_path, clean_env):
    """Snakemake itself applies the profile: resources per job of the miniature DAG."""
    root = mini_workflow(tmp_path / "wf")
    clean_env.setenv("MEDSAM2_SLURM_PARTITION", "cpu")
    clean_env.setenv("MEDSAM2_SLURM_GPU_PARTITION", "gpu")
    proc = subprocess.run([SNAKEMAKE, "-n", "--profile", "workflow/profiles/slurm"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rules: dict[str, str] = {}
    current = None
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith(("rule ", "localrule ")):
            current = line.split()[1].rstrip(":")
        elif line.strip().startswith("resources:") and current:
            rules[current] = line
    assert {"synthesize", "train_tracker", "predict_tracker", "evaluate", "report"} <= set(rules)
    for rule, line in rules.items():
        if rule in MODEL_RULES:  # the miniature tracker asks for a GPU in its resources
            assert "gpu=1" in line and "slurm_partition=gpu" in line, line
        else:
            assert "gpu=" not in line and "slurm_partition=cpu" in line, line
    # sized by the spec for a tiny model on a small node, not by the profile
    assert "mem_mb=4000" in rules["train_tracker"] and "runtime=60" in rules["train_tracker"]


def test_install_links_and_is_idempotent(tmp_path):
    link = install_profile("slurm", config_dir=tmp_path)
    assert link == tmp_path / "slurm" and link.is_symlink()
    assert link.resolve() == (PROFILES / "slurm").resolve()
    assert install_profile("slurm", config_dir=tmp_path) == link  # again: no error


def test_install_refuses_a_different_profile(tmp_path):
    theirs = tmp_path / "slurm"
    theirs.mkdir()
    (theirs / "config.yaml").write_text("executor: slurm\njobs: 3\n")
    with pytest.raises(ProfileError, match="already exists"):
        install_profile("slurm", config_dir=tmp_path)
    assert (theirs / "config.yaml").read_text() == "executor: slurm\njobs: 3\n"
    other = tmp_path / "elsewhere"
    other.mkdir()
    (tmp_path / "ours").symlink_to(other)
    with pytest.raises(ProfileError, match="link to"):
        install_profile("slurm", name="ours", config_dir=tmp_path)
    assert (tmp_path / "ours").resolve() == other.resolve()
    # under another name it is fine
    assert install_profile("slurm", name="medsam2-slurm", config_dir=tmp_path).is_symlink()


def test_install_force_moves_theirs_aside(tmp_path):
    theirs = tmp_path / "slurm"
    theirs.mkdir()
    (theirs / "config.yaml").write_text("jobs: 3\n")
    link = install_profile("slurm", config_dir=tmp_path, force=True)
    assert link.is_symlink()
    backups = list(tmp_path.glob("slurm.bak-*"))
    assert len(backups) == 1 and (backups[0] / "config.yaml").read_text() == "jobs: 3\n"


def test_install_unknown_profile(tmp_path):
    with pytest.raises(ProfileError, match="no such profile"):
        install_profile("pbs", config_dir=tmp_path)


def test_cli_refuses_with_exit_code(tmp_path, capsys):
    (tmp_path / "slurm").mkdir()
    assert main(["profile", "install", "--config-dir", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["profile", "install", "--config-dir", str(tmp_path), "--name", "x"]) == 0
    assert (tmp_path / "x").is_symlink()


def test_literal_profile_name_works_after_install(tmp_path, clean_env):
    """`medsam2 profile install` then `snakemake --profile slurm`, with a fresh HOME."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(home)
    medsam2 = str(Path(sys.executable).with_name("medsam2"))
    root = mini_workflow(tmp_path / "wf")
    before = subprocess.run([SNAKEMAKE, "-n", "--profile", "slurm"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=120)
    assert before.returncode != 0  # not found yet
    assert "profile" in (before.stdout + before.stderr).lower()
    inst = subprocess.run([medsam2, "profile", "install"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    assert (home / ".config" / "snakemake" / "slurm").is_symlink()
    after = subprocess.run([SNAKEMAKE, "-n", "--profile", "slurm"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=120)
    assert after.returncode == 0, after.stderr[-2000:]
    out = after.stdout + after.stderr
    assert "Using profile slurm" in out and "train_tracker" in out
