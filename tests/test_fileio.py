"""A malformed JSON, YAML or CSV file fails naming itself, for every reader of such files.

Each case writes garbage where a user or an earlier stage puts the file and calls the
real reader; the error must carry the file's path (a bare ``JSONDecodeError`` or
``KeyError`` from a job of a long run does not say which file to fix).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from baselines.nnunet import cli as nnunet_cli
from medsam2.config import model_spec_from_args
from medsam2.data.converters.local import LabelDeclarationError, read_declaration
from medsam2.data.download import LOCK_NAME, DownloadError, read_lock
from medsam2.data.layout import LayoutError, StandardDataset, write_dataset_json
from medsam2.data.preprocess import is_cache, load_cache
from medsam2.data.prompts import load_prompts
from medsam2.data.registry import RegistryError, load_spec
from medsam2.fileio import FileFormatError, parse_json, read_csv, read_json, read_yaml
from medsam2.pretrain import pretrain
from medsam2.report import build
from medsam2.report.tables import load_reported
from medsam2.spec import Config, PretrainSpec, TrainSpec

BAD_JSON = '{"cases": {"c0": [1, 2'
BAD_YAML = "key: [unclosed\n  other: {a: 1\n"
BAD_CSV = 'dataset,model,case\nd,m,"c0\n'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def raises_naming(path: Path, error: type[BaseException], call: Callable[[], object]) -> str:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert str(path) in message, message
    return message


# ----------------------------------------------------------------------- the helper
def test_helper_messages_name_the_file_and_the_reason(tmp_path):
    js = write(tmp_path / "a.json", BAD_JSON)
    assert re.search(r"a\.json: not a thing \(invalid JSON: .*line 1",
                     raises_naming(js, FileFormatError, lambda: read_json(js, "thing")))
    ym = write(tmp_path / "a.yaml", BAD_YAML)
    assert "a.yaml: not a thing (invalid YAML at line" in raises_naming(
        ym, FileFormatError, lambda: read_yaml(ym, "thing"))
    cs = write(tmp_path / "a.csv", BAD_CSV)
    assert "a.csv: not a table (ParserError" in raises_naming(
        cs, FileFormatError, lambda: read_csv(cs, "table"))
    ok = write(tmp_path / "ok.csv", "x,y\n1,2\n")
    assert "ok.csv: table lacks columns ['z']" in raises_naming(
        ok, FileFormatError, lambda: read_csv(ok, "table", columns=("x", "z")))
    lst = write(tmp_path / "list.json", "[1, 2]")
    assert "list.json: not a record (a list, expected a mapping)" in raises_naming(
        lst, FileFormatError, lambda: read_json(lst, "record", require=()))
    obj = write(tmp_path / "obj.json", '{"seed": 1}')
    assert "obj.json: not a record (key 'attempt' missing)" in raises_naming(
        obj, FileFormatError, lambda: read_json(obj, "record", require=("attempt",)))
    missing = tmp_path / "none.json"
    assert "none.json: record not found" in raises_naming(
        missing, LayoutError, lambda: read_json(missing, "record", error=LayoutError))
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    raises_naming(binary, FileFormatError, lambda: read_json(binary, "record"))
    with pytest.raises(FileFormatError, match=r"--model-json: not a model spec \(invalid"):
        parse_json("{kind: medsam2}", "--model-json", "model spec")
    assert issubclass(FileFormatError, ValueError)  # callers catching ValueError keep working


# ----------------------------------------------------------------------- every reader
def test_dataset_and_splits_files(tmp_path):
    root = tmp_path / "ds"
    meta = write(root / "dataset.json", BAD_JSON)
    raises_naming(meta, LayoutError, lambda: StandardDataset(root))
    write_dataset_json(root, {"background": 0, "organ": 1}, 0, ".nii.gz")
    splits = write(root / "splits.json", BAD_JSON)
    raises_naming(splits, LayoutError, lambda: StandardDataset(root))
    write(splits, '{"seed": 0, "train": []}')
    assert "key 'test' missing" in raises_naming(splits, LayoutError,
                                                 lambda: StandardDataset(root))
    write(meta, '{"labels": {"organ": 1}}')
    assert "keys 'channel_names', 'file_ending' missing" in raises_naming(
        meta, LayoutError, lambda: StandardDataset(root))


def test_local_folder_declaration(tmp_path):
    meta = write(tmp_path / "mine" / "dataset.json", BAD_JSON)
    raises_naming(meta, LabelDeclarationError, lambda: read_declaration(meta.parent))


def test_prompts_file(tmp_path):
    bad = write(tmp_path / "prompts.json", BAD_JSON)
    raises_naming(bad, ValueError, lambda: load_prompts(bad))


def test_registry_files(tmp_path):
    bad = write(tmp_path / "registry" / "mydata.yaml", BAD_YAML)
    raises_naming(bad, RegistryError, lambda: load_spec(bad))
    config = {"registry_dir": str(bad.parent),
              "datasets": {"mydata": {"source": "registry", "group_by": "video"}},
              "models": {"m": {"kind": "medsam2", "checkpoint": "m.pt"}}}
    raises_naming(bad, ValueError, lambda: Config.from_dict(config))


def test_download_lock(tmp_path):
    lock = write(tmp_path / LOCK_NAME, BAD_JSON)
    raises_naming(lock, DownloadError, lambda: read_lock(tmp_path))


def test_preprocessing_cache_index(tmp_path):
    index = write(tmp_path / "cache" / "index.json", BAD_JSON)
    raises_naming(index, ValueError, lambda: is_cache(index.parent))
    raises_naming(index, ValueError, lambda: load_cache(index.parent))


def test_pretraining_attempt_record(tmp_path):
    """Read before any training: a resumed job whose record was cut off says so."""
    state = write(tmp_path / "pre" / "attempt.json", '{"seed": 3}')
    entry = PretrainSpec(train=TrainSpec(steps=1))
    raises_naming(state, ValueError, lambda: pretrain(entry, state.parent, resume=True))


def test_model_spec_file_and_flag(tmp_path):
    bad = write(tmp_path / "model.yaml", BAD_YAML)
    args = argparse.Namespace(model_json=None, model_config=bad)
    raises_naming(bad, ValueError, lambda: model_spec_from_args(args))
    flag = argparse.Namespace(model_json='{"kind": ', model_config=None)
    with pytest.raises(ValueError, match="--model-json: not a model spec"):
        model_spec_from_args(flag)


def test_nnunet_records(tmp_path):
    bad = write(tmp_path / "plan.json", BAD_JSON)
    raises_naming(bad, SystemExit, lambda: nnunet_cli._read_record(bad))


def test_report_inputs(tmp_path):
    for name in ("config.json", "config.yaml"):
        bad = write(tmp_path / name, BAD_JSON if name.endswith("json") else BAD_YAML)
        raises_naming(bad, ValueError, lambda bad=bad: build.load_config(bad))
    reported = write(tmp_path / "reported.csv", BAD_CSV)
    raises_naming(reported, ValueError, lambda: load_reported(reported))
    config = build.load_config(write(
        tmp_path / "ok.json", '{"datasets": {"d": {"source": "local", "path": "d"}}, '
                              '"models": {"m": {"kind": "medsam2", "checkpoint": "m.pt"}}}'))
    metrics = write(tmp_path / "metrics" / "d" / "m.csv", BAD_CSV)
    raises_naming(metrics, ValueError, lambda: build.load_metrics(tmp_path / "metrics", config))
