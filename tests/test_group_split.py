"""A split by group: the frames of one CadVidSet video never land in both train and test,
and a dataset whose cases carry no such group fails at plan time naming it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsam2.data.convert import ConversionError, convert_dataset, run_conversion
from medsam2.data.converters import cadvidset
from medsam2.data.registry import load_spec
from medsam2.spec import Config, SpecError

REPO = Path(__file__).resolve().parents[1]
MODELS = {"m": {"kind": "medsam2", "checkpoint": "m.pt"}}


def _videos(root: Path, n_videos: int = 6, n_frames: int = 5) -> Path:
    """CadVidSet's assumed layout: <video>/images/<frame>.png + <video>/masks/<frame>.png."""
    rng = np.random.default_rng(0)
    for v in range(n_videos):
        for f in range(n_frames):
            mask = np.zeros((16, 16), np.uint8)
            mask[4:12, 3 + f:9 + f] = 255
            for sub, arr in (("images", rng.integers(0, 255, (16, 16), dtype=np.uint8)),
                             ("masks", mask)):
                path = root / f"video{v:02d}" / sub / f"{f:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(path)
    return root


def _video_of(case_id: str) -> str:
    return case_id.rsplit("_", 1)[0]


def test_cadvidset_split_by_video_keeps_each_video_on_one_side(tmp_path):
    src = _videos(tmp_path / "src")
    spec = load_spec(REPO / "config" / "datasets" / "cadvidset.yaml")
    out = tmp_path / "grouped"
    convert_dataset(spec, src, out, seed=0, test_fraction=0.34, group_by="video")
    splits = json.loads((out / "splits.json").read_text())
    train = {_video_of(c) for c in splits["train"]}
    test = {_video_of(c) for c in splits["test"]}
    assert train and test and not train & test  # no video on both sides
    assert len(splits["train"]) + len(splits["test"]) == 30
    assert splits["group_by"] == "video" and splits["groups"]["video03_002"] == "video03"
    assert len(test) == 2  # a third of the six videos
    # by frame (the old split), frames of one video land on both sides
    by_frame = tmp_path / "by_frame"
    convert_dataset(spec, src, by_frame, seed=0, test_fraction=0.34)
    plain = json.loads((by_frame / "splits.json").read_text())
    assert {_video_of(c) for c in plain["train"]} & {_video_of(c) for c in plain["test"]}


def test_a_case_without_the_group_key_fails_the_conversion_naming_it(tmp_path):
    src = _videos(tmp_path / "src", n_videos=2, n_frames=2)
    cases = cadvidset.find_cases(src, {})
    cases[1] = replace(cases[1], groups=())
    with pytest.raises(ConversionError, match=r"mydata: split.group_by 'video'.*video00_001"):
        run_conversion("mydata", cases, tmp_path / "out", 2, {"artery": 255},
                       {"coronary_artery": ["artery"]}, 0, 0.5, group_by="video")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, entry, hint", [
    ("cadvidset", {"source": "registry", "group_by": "patient"}, "video"),
    ("wbc", {"source": "registry", "group_by": "video"}, "none"),
])
def test_a_group_key_the_cases_lack_fails_at_plan_time_naming_the_dataset(name, entry, hint):
    with pytest.raises(SpecError, match="cannot be split by it") as err:
        Config.from_dict({"datasets": {name: entry}, "models": MODELS})
    assert f"datasets.{name}.group_by" in str(err.value) and f"'{name}'" in str(err.value)
    assert hint in str(err.value)
    ok = Config.from_dict({"datasets": {"cadvidset": {"source": "registry",
                                                      "group_by": "video"}},
                           "models": MODELS})
    assert ok.datasets["cadvidset"].group_by == "video"


def test_the_paper_config_splits_cadvidset_by_video():
    from medsam2.spec import load_config

    paper = load_config(REPO / "config" / "paper.yaml")
    assert {d: s.group_by for d, s in paper.datasets.items() if d.startswith("cadvidset")} == \
        {"cadvidset": "video", "cadvidset-one-prompt": "video"}
