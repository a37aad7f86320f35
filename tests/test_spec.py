"""The typed config: typos and wrong values fail at plan time with a short message naming
the key path, the schema is the specs', the docs name only keys that exist, and training
params hold only what changes the weights."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from baselines.nnunet.spec import NnunetSpec
from medsam2.config import schema_text
from medsam2.spec import (
    ARCHS,
    DATASET_SOURCES,
    Config,
    JobResources,
    PretrainSpec,
    TrackerSpec,
    config_schema,
)
from medsam2.typed import SpecError, parse, to_plain

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def mini() -> dict:
    return {
        "seed": 0,
        "datasets": {
            "mini3d": {"source": "synthetic", "generator": "abdomen3d", "n_cases": 3},
            "mini2d": {"source": "synthetic", "generator": "cells2d", "n_cases": 4},
        },
        "models": {
            "medsam2-mini": {"kind": "medsam2", "image_size": 64,
                             "memory": {"policy": "self_sorting"},
                             "preprocess": {"min_area": 10},
                             "train": {"steps": 2, "datasets": ["mini3d", "mini2d"],
                                       "dataset_weights": [3, 1]}},
            "medsam2-mini-none": {"kind": "medsam2", "ablation": True, "image_size": 64,
                                  "weights_from": "medsam2-mini",
                                  "preprocess": {"min_area": 10},
                                  "memory": {"policy": "self_sorting", "confidence": False},
                                  "datasets": ["mini3d"]},
            "sam2-mini": {"kind": "sam2", "image_size": 64, "pretrained": "mini-videos",
                          "predict": {"image_size": 96, "datasets": ["mini3d"]},
                          "train": {"steps": 2}},
            "nn": {"kind": "nnunet", "datasets": ["mini2d"]},
        },
        "pretrain": {"mini-videos": {"image_size": 64, "train": {"steps": 2}}},
        "report": {"main_model": "medsam2-mini"},
    }


def _set(path: str, value):
    """A mutation of the mini config: set (or with value ... delete) a dotted key."""
    def mutate(cfg: dict) -> None:
        *parents, last = path.split(".")
        node = cfg
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            node.pop(last)
        else:
            node[last] = value
    return mutate


#: the typos and wrong values a user makes, and the key path the message must name
TYPOS = [
    ("models.medsam2-mini.imagesize", 96, "models.medsam2-mini.imagesize: unknown key",
     "did you mean 'image_size'?"),
    ("models.sam2-mini.pretrianed", "mini-videos", "models.sam2-mini.pretrianed: unknown key",
     "did you mean 'pretrained'?"),
    ("models.medsam2-mini.memroy", {"policy": "fifo"}, "models.medsam2-mini.memroy: unknown",
     "did you mean 'memory'?"),
    ("models.medsam2-mini.train.stpes", 10, "models.medsam2-mini.train.stpes: unknown key",
     "did you mean 'steps'?"),
    ("models.sam2-mini.predict.mirorr", [[0, 1]], "models.sam2-mini.predict.mirorr: unknown",
     "did you mean 'mirror'?"),
    ("datasets.mini3d.n_case", 3, "datasets.mini3d.n_case: unknown key",
     "did you mean 'n_cases'?"),
    ("reprot", {}, "reprot: unknown key", "did you mean 'report'?"),
    ("models.medsam2-mini.train.steps", "ten",
     "models.medsam2-mini.train.steps: expected an integer, got 'ten'", None),
    ("models.medsam2-mini.train.dataset_weights", [1, 2, 3],
     "models.medsam2-mini.train.dataset_weights: 3 weights for 2 training datasets", None),
    ("report.main_model", "medsam2-mni", "report.main_model: 'medsam2-mni' is not a model",
     "did you mean 'medsam2-mini'?"),
    ("report.main_modle", "medsam2-mini", "report.main_modle: unknown key",
     "did you mean 'main_model'?"),
]


def _check(cfg: dict, path: Path) -> subprocess.CompletedProcess:
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([str(Path(sys.executable).parent / "medsam2"), "config", "check",
                           "--configfile", str(path)], capture_output=True, text=True,
                          timeout=120)


def _snakemake_message(output: str) -> list[str]:
    """Our lines of a Snakemake start-up error (between its header and its traceback)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("WorkflowError"))
    end = next(i for i, line in enumerate(lines) if line.startswith('  File "') and i > start)
    return lines[start + 1:end]


@pytest.mark.parametrize("key, value, message, hint", TYPOS, ids=[t[0] for t in TYPOS])
def test_typos_fail_at_plan_time_in_three_lines(tmp_path, key, value, message, hint):
    cfg = mini()
    _set(key, value)(cfg)
    cfg_file = tmp_path / "my.yaml"
    checked = _check(cfg, cfg_file)
    assert checked.returncode == 1 and checked.stdout == ""
    lines = checked.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, checked.stderr
    assert lines[0] == f"{cfg_file}: {message}" or lines[0].startswith(f"{cfg_file}: {message}")
    if hint:
        assert hint in checked.stderr
    planned = subprocess.run([*SNAKEMAKE, "--directory", str(tmp_path), "--configfile",
                              str(cfg_file), "-n"], capture_output=True, text=True, timeout=300)
    assert planned.returncode != 0
    ours = _snakemake_message(planned.stdout + planned.stderr)
    assert ours == lines, planned.stdout + planned.stderr


@pytest.mark.parametrize("mutate, message", [
    (_set("models.sam2-mini.kind", "unet9000"), "models.sam2-mini.kind: unknown kind 'unet9000'"),
    (_set("datasets", ...), "datasets: required"),
    (_set("models.medsam2-mini.kind", ...), "models.medsam2-mini.kind: required"),
    (_set("datasets.mini3d.source", "web"), "datasets.mini3d.source: 'web' is not allowed"),
    (_set("models.sam2-mini.memory", {"policy": "self_sorting"}),
     "models.sam2-mini.memory.policy: plain SAM 2 uses 'fifo' memory"),
    (_set("models.medsam2-mini-none.weights_from", "nope"),
     "models.medsam2-mini-none.weights_from: 'nope' is not a trained tracker"),
    (_set("models.medsam2-mini-none.preprocess", ...),
     "models.medsam2-mini-none.preprocess: must equal models.medsam2-mini.preprocess"),
    (_set("models.medsam2-mini-none.multimask_tracking", False),
     "models.medsam2-mini-none.multimask_tracking: must equal models.medsam2-mini"),
    (_set("models.sam2-mini.pretrained", "nope"),
     "models.sam2-mini.pretrained: 'nope' is not an entry of 'pretrain'"),
    (_set("pretrain.mini-videos.multimask_tracking", True),
     "models.sam2-mini.multimask_tracking: must equal pretrain.mini-videos.multimask_tracking"),
    (_set("models.sam2-mini.checkpoint", "x.pt"),
     "models.sam2-mini.pretrained: give 'pretrained' or 'checkpoint', not both"),
    (_set("models.sam2-mini.train", ...), "models.sam2-mini.pretrained: only a model with"),
    (_set("models.sam2-mini.predict.image_size", 100),
     "models.sam2-mini.predict.image_size: 100 is out of range\n  must be a multiple of 32"),
    (_set("models.nn.predict", {"image_size": 96}), "models.nn.predict: unknown key"),
    (_set("models.nn.folds", [0, "one"]), "models.nn.folds[1]"),
    (_set("models.sam2-mini.predict.datasets", ["mini4d"]),
     "models.sam2-mini.predict.datasets: 'mini4d' is not a dataset of this config"),
    (_set("models.sam2-mini.datasets", ["mini3"]), "did you mean 'mini3d'?"),
    (_set("models.sam2-mini.predict.mirror", [[0], [0]]),
     "models.sam2-mini.predict.mirror[1]: [0]: a view is a non-empty set"),
    (_set("datasets.mini3d.prompt_rate", 1.5),
     "datasets.mini3d.prompt_rate: 1.5 is out of range\n  must be <= 1"),
    (_set("models.medsam2-mini.train.prompt_probs", [1, 0]),
     "models.medsam2-mini.train.prompt_probs: expected 3 items, got 2"),
    (_set("models.medsam2-mini.resources.train.gpus", 2),
     "models.medsam2-mini.resources.train.gpus: unknown key\n  did you mean 'gpu'?"),
    (_set("datasets.mine", {"source": "registry"}), "datasets.mine.registry: no registry file"),
])
def test_inconsistent_configs_name_the_key(mutate, message):
    cfg = mini()
    mutate(cfg)
    with pytest.raises(SpecError) as err:
        Config.from_dict(cfg, "c.yaml")
    assert str(err.value).startswith("c.yaml: ")
    assert message in str(err.value)
    assert len(str(err.value).splitlines()) <= 3


def test_the_shipped_configs_and_the_readme_example_are_valid():
    for name in ("config.yaml", "paper.yaml"):
        data = yaml.safe_load((REPO / "config" / name).read_text())
        config = Config.from_dict(data)
        assert Config.from_dict(json.loads(config.to_json())) == config  # round trip
        jsonschema.validate(data, config_schema())  # the schema agrees with the parser
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n(datasets:\n  my_liver:.*?)```", readme, re.S)
    assert block, "README: the bring-your-own example"
    example = yaml.safe_load(block[1])
    cfg = mini()
    cfg["datasets"].update(example["datasets"])
    spec = Config.from_dict(cfg).datasets["my_liver"]
    assert spec.source == "local" and spec.modality == "CT" and spec.test_fraction == 0.2


def test_the_schema_file_is_generated_from_the_specs():
    shipped = (REPO / "workflow" / "schemas" / "config.schema.yaml").read_text()
    assert shipped == schema_text(), "regenerate: medsam2 config schema --out " \
                                     "workflow/schemas/config.schema.yaml"
    models = config_schema()["properties"]["models"]["additionalProperties"]["oneOf"]
    kinds = {json.dumps(m["properties"]["kind"].get("const", m["properties"]["kind"]))
             for m in models}
    assert len(kinds) == len(models) and any("nnunet" in k for k in kinds)
    with pytest.raises(jsonschema.ValidationError):
        bad = mini()
        _set("models.medsam2-mini.imagesize", 96)(bad)
        jsonschema.validate(bad, config_schema())


def _spec_classes() -> list[type]:
    """Every spec dataclass reachable from Config, the dataset sources and the kinds."""
    seen: list[type] = []
    todo = [Config, TrackerSpec, NnunetSpec, PretrainSpec, *DATASET_SOURCES.values()]
    while todo:
        cls = todo.pop()
        if cls in seen or not dataclasses.is_dataclass(cls):
            continue
        seen.append(cls)
        for hint in __import__("typing").get_type_hints(cls).values():
            todo += [a for a in re.findall(r"\w+", str(hint))
                     for a in [getattr(sys.modules[cls.__module__], a, None)]
                     if dataclasses.is_dataclass(a)]
    return seen


def test_every_key_in_the_config_docs_exists():
    keys = {f.name for cls in _spec_classes() for f in dataclasses.fields(cls)}
    doc = (REPO / "config" / "README.md").read_text()
    documented = set()
    for row in re.findall(r"^\| (`[^|]*`) \|", doc, re.M):
        for token in re.findall(r"`([^`]+)`", row):
            for key in token.split("."):
                documented.add(key)
    for name in ("<name>",):
        documented.discard(name)
    unknown = sorted(k for k in documented if k not in keys)
    assert not unknown, f"config/README.md documents keys no spec has: {unknown}"
    assert {"image_size", "prompt_rate", "registry_dir", "modality", "resources"} <= documented


def test_training_params_are_what_changes_the_weights():
    base = Config.from_dict(mini())
    changed = mini()
    changed["models"]["medsam2-mini"].update(datasets=["mini3d"], paper_name="X",
                                            predict={"image_size": 128, "mirror": [[1]]},
                                            orientations={"axes": [0, 2]},
                                            resources={"predict": {"gpu": 1}})
    other = Config.from_dict(changed)
    assert other.training_spec("medsam2-mini") == base.training_spec("medsam2-mini")
    lr = mini()
    lr["models"]["medsam2-mini"]["train"]["lr"] = 5e-4
    assert Config.from_dict(lr).training_spec("medsam2-mini") != \
        base.training_spec("medsam2-mini")
    # without train.datasets a model trains on its evaluation datasets, resolved here
    sam2 = base.training_spec("sam2-mini")
    assert sam2.train.datasets == ("mini3d", "mini2d") and sam2.pretrained == "mini-videos"
    assert sam2.predict == TrackerSpec.__dataclass_fields__["predict"].default_factory()
    # the prediction of another dataset does not see this dataset's options
    assert base.tracker("sam2-mini").for_dataset("mini2d").prediction_spec().image_size == 64
    assert base.tracker("sam2-mini").for_dataset("mini3d").prediction_spec().image_size == 96


def test_job_params_leave_out_names_evaluation_datasets_and_resources():
    """A prediction's or nnU-Net training's params: renaming a row, adding an evaluation
    dataset or raising memory re-runs nothing; an option of the model does."""
    base = Config.from_dict(mini())
    changed = mini()
    for name in ("medsam2-mini", "nn"):
        changed["models"][name].update(datasets=["mini3d"], paper_name="X", footnote="why",
                                       resources={"mem_mb": 123456, "runtime": 999})
    changed["models"]["medsam2-mini"]["ablation"] = True
    other = Config.from_dict(changed)
    for name in ("medsam2-mini", "nn"):
        assert other.models[name] != base.models[name]
        assert other.models[name].job_spec() == base.models[name].job_spec(), name
    job = base.models["nn"].job_spec()
    assert job.paper_name is None and job.datasets is None and job.footnote is None
    tta = mini()
    tta["models"]["nn"]["tta"] = not base.models["nn"].tta
    assert Config.from_dict(tta).models["nn"].job_spec() != base.models["nn"].job_spec()
    orient = mini()
    orient["models"]["medsam2-mini"]["orientations"] = {"axes": [0, 2]}
    assert Config.from_dict(orient).tracker("medsam2-mini").job_spec() != \
        base.tracker("medsam2-mini").job_spec()


def test_resources_default_by_model_size_and_override_per_stage():
    tiny = parse(TrackerSpec, {"kind": "medsam2", "checkpoint": "c.pt"})
    assert tiny.job_resources("train") == JobResources(gpu=0, mem_mb=4000, runtime=60,
                                                       threads=1)
    large = parse(TrackerSpec, {"kind": "medsam2", "arch": "hiera_l", "checkpoint": "c.pt",
                                "resources": {"mem_mb": 80000, "predict": {"runtime": 30}}})
    train, pred = large.job_resources("train"), large.job_resources("predict")
    assert train.gpu == 1 and train.mem_mb == 80000 and train.runtime == 2880
    assert pred.mem_mb == 80000 and pred.runtime == 30
    for arch in ARCHS:  # every architecture has a size class
        parse(TrackerSpec, {"kind": "sam2", "arch": arch, "checkpoint": "c"}).job_resources(
            "predict")
    cpu = parse(NnunetSpec, {"kind": "nnunet", "device": "cpu"})
    assert cpu.job_resources("train").gpu == 0 and cpu.job_resources("plan").threads == 8
    assert parse(NnunetSpec, {"kind": "nnunet"}).job_resources("predict").gpu == 1


def test_archs_equal_the_builders():
    from medsam2.model.build import ARCHS as BUILT

    assert tuple(BUILT) == ARCHS


def test_specs_are_frozen_and_plain_round_trips():
    spec = Config.from_dict(mini())
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 3
    plain = to_plain(spec.models["nn"])
    assert parse(NnunetSpec, copy.deepcopy(plain)) == spec.models["nn"]


def test_baseline_commands_are_found_in_their_folders():
    from medsam2.cli import STAGES, all_stages, baseline_stages

    assert "nnunet" not in STAGES and baseline_stages()["nnunet"][0] == "baselines.nnunet.cli"
    assert list(all_stages())[:len(STAGES)] == list(STAGES)


def test_entries_differing_only_in_protocol_share_one_conversion():
    """A task's key-slice and interactive entries read the same standard dataset (one
    conversion, one split); another split or group key is another conversion."""
    paper = Config.from_dict(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))
    assert paper.data_name("kits23-key-slice") == "kits23"
    assert paper.data_name("cadvidset-one-prompt") == "cadvidset"
    assert paper.data_names("registry") == sorted(
        p.stem for p in (REPO / "config" / "datasets").glob("*.yaml"))
    cfg = mini()
    cfg["datasets"]["b"] = {"source": "registry", "registry": "btcv", "protocol": "key_slice"}
    cfg["datasets"]["btcv"] = {"source": "registry", "protocol": "interactive",
                               "prompt_rate": 0.25}
    cfg["datasets"]["btcv-half"] = {"source": "registry", "registry": "btcv",
                                    "test_fraction": 0.5}
    cfg["datasets"]["mini3d-again"] = dict(cfg["datasets"]["mini3d"], prompt="box")
    config = Config.from_dict(cfg)
    assert config.data_name("btcv") == config.data_name("b") == "b"  # the first in order
    assert config.data_name("btcv-half") == "btcv-half"
    assert config.data_name("mini3d-again") == "mini3d"


def test_the_paper_plan_converts_each_task_once(tmp_path):
    planned = subprocess.run(
        [*SNAKEMAKE, "--configfile", str(REPO / "config" / "paper.yaml"), "-n", "-p", "-j1",
         "--directory", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert planned.returncode == 0, planned.stderr[-3000:]
    converts = re.findall(r"medsam2 datasets convert (\S+)", planned.stdout)
    assert sorted(converts) == sorted(set(converts)) and len(converts) == 14
    prompts = re.findall(r"medsam2 prompts --dataset-dir (\S+) .*--out (\S+)", planned.stdout)
    assert ("results/datasets/kits23", "results/prompts/kits23-key-slice.json") in prompts


def test_nnunet_trains_once_for_entries_that_share_a_conversion(tmp_path):
    """nnU-Net takes no prompts: a task's key-slice and interactive entries get one plan
    and one training (no two jobs writing the same nnU-Net folders), a prediction each."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["models"]["nnunet"]["datasets"] = ["kits23", "kits23-key-slice"]
    config["models"]["nnunet"]["folds"] = 0
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    planned = subprocess.run(
        [*SNAKEMAKE, "--configfile", str(tmp_path / "c.yaml"), "-n", "-p", "-j1",
         "--directory", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert planned.returncode == 0, planned.stderr[-3000:]
    plans = re.findall(r"medsam2 nnunet plan --dataset-dir (\S+)", planned.stdout)
    trains = re.findall(r"medsam2 nnunet train .* --out (\S+)", planned.stdout)
    predicts = re.findall(r"medsam2 nnunet predict .* --out-dir (\S+)", planned.stdout)
    assert plans == ["results/datasets/kits23"]
    assert trains == ["results/nnunet/trained/nnunet/kits23/fold_0.json"]
    assert sorted(predicts) == ["results/predictions/kits23-key-slice/nnunet",
                                "results/predictions/kits23/nnunet"]
