"""Tests of the report stage: table values, bold best, "–" for missing, footnotes, the
paper's Tables 1-3 layout with its reported numbers, statistics, figures and overlays.

Fixtures are metrics CSVs in the metrics contract written here (hand-made numbers where
values are checked) and a tiny standard dataset written with ``layout.write_case``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medsam2.cli import main as cli_main
from medsam2.data.layout import (
    Volume,
    affine_from_spacing,
    write_case,
    write_dataset_json,
    write_volume,
)
from medsam2.report import build, overlays, render, stats
from medsam2.report.build import METRIC_COLUMNS
from medsam2.report.files import dataset_figure_files, report_files
from medsam2.report.tables import ABLATION_STEPS, MISSING, load_reported
from medsam2.spec import Config

PAPER_DATASETS = ("wbc", "refuge", "stare", "pendal", "cadvidset", "kits23", "atlas23",
                  "tdsc_abus23", "segrap23", "crossmoda23", "lnq23", "cas23", "toothfairy23",
                  "btcv")
BTCV_STRUCTURES = ("spleen", "right_kidney", "left_kidney", "gallbladder", "esophagus", "liver",
                   "stomach", "aorta", "ivc", "portal_splenic_vein", "pancreas",
                   "adrenal_gland")


def metric_rows(dataset: str, model: str, values: dict[tuple[str, str], float],
                hd95: float = 3.0, status: dict | None = None) -> pd.DataFrame:
    """Rows in the metrics contract; ``values`` maps (case, label) -> Dice."""
    labels = list(dict.fromkeys(label for _, label in values))
    rows = []
    for (case, label), dice in values.items():
        st = (status or {}).get((case, label), "ok")
        rows.append({
            "dataset": dataset, "model": model, "case": case, "label": label,
            "label_value": labels.index(label) + 1, "dice": dice,
            "iou": dice / (2 - dice) if np.isfinite(dice) else np.nan,
            "hd95_mm": np.nan if st != "ok" else hd95 * (1 + (1 - dice)),
            "gt_voxels": 100, "pred_voxels": 90, "spacing": "1x1x2", "diagonal_mm": 50.0,
            "status": st,
        })
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


def write_metrics(metrics_dir: Path, df: pd.DataFrame) -> None:
    for (dataset, model), g in df.groupby(["dataset", "model"]):
        path = metrics_dir / dataset / f"{model}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        g.to_csv(path, index=False)


def write_config(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config))
    return path


# ------------------------------------------------------------------- hand-made fixture
@pytest.fixture
def hand(tmp_path: Path) -> tuple[Path, Path]:
    """dA: 2 labels, 2 cases; dB: 1 label, 2 cases. m3 has no metrics file (not run)."""
    config = {
        "seed": 7,
        "datasets": {"dA": {"source": "local", "path": "dA", "prompt": "box"},
                     "dB": {"source": "local", "path": "dB", "prompt": "click"}},
        "models": {
            "m1": {"kind": "medsam2", "paper_name": "MedSAM-2", "checkpoint": "m1.pt"},
            "m2": {"kind": "sam2", "paper_name": "SAM2", "checkpoint": "m2.pt"},
            "m3": {"kind": "nnunet", "datasets": ["dA"], "footnote": "trained on dA only"},
        },
        "evaluate": {"hd95_penalty": "diagonal"},
        "report": {"main_model": "m1"},
    }
    mdir = tmp_path / "metrics"
    frames = [
        metric_rows("dA", "m1", {("c1", "organ"): 0.9, ("c2", "organ"): 0.7,
                                 ("c1", "lesion"): 0.5, ("c2", "lesion"): 0.0},
                    status={("c2", "lesion"): "empty_pred"}),
        metric_rows("dA", "m2", {("c1", "organ"): 0.8, ("c2", "organ"): 0.6,
                                 ("c1", "lesion"): 0.4, ("c2", "lesion"): 0.2}),
        metric_rows("dB", "m1", {("c1", "cell"): 0.8, ("c2", "cell"): 0.6}),
        metric_rows("dB", "m2", {("c1", "cell"): 0.5, ("c2", "cell"): 0.7}),
    ]
    write_metrics(mdir, pd.concat(frames))
    return mdir, write_config(tmp_path / "config.resolved.json", config)


def test_hand_fixture_table_values_bold_missing_and_footnotes(hand, tmp_path):
    mdir, cfg = hand
    ctx, _ = build.prepare(mdir, cfg)
    tables = {t.name: t for t in build.build_tables(ctx)}
    t2 = tables["table2_dice"]
    ours = t2.blocks[0]
    assert [b.kind for b in t2.blocks] == ["ours"]  # no paper_key: nothing reported
    assert list(ours.mean.columns) == ["dA", "dB", "mean"]
    assert ours.mean.loc["m1 (MedSAM-2)", "dB"] == pytest.approx(0.7)
    assert ours.std.loc["m1 (MedSAM-2)", "dB"] == pytest.approx(math.sqrt(0.02))
    # dA pooled over cases and labels: (0.9 + 0.7 + 0.5 + 0.0) / 4
    assert ours.mean.loc["m1 (MedSAM-2)", "dA"] == pytest.approx(0.525)
    assert ours.mean.loc["m1 (MedSAM-2)", "mean"] == pytest.approx((0.525 + 0.7) / 2)
    assert np.isnan(ours.mean.loc["m3", "dA"])  # configured, no metrics file

    md = render.to_markdown(t2)
    assert "| m1 (MedSAM-2) | **52.5 ± 38.6** | **70.0 ± 14.1** | **61.3** |" in md
    assert "| m2 (SAM2) | 50.0 ± 25.8 | 60.0 ± 14.1 | 55.0 |" in md
    assert "| m3 | – | – | – |" in md
    assert " 0.0 " not in md and "| 0 |" not in md
    tex = render.to_latex(t2)
    assert "\\textbf{70.0 $\\pm$ 14.1}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "m3 & -- & -- & --" in tex
    html = render.to_html(t2)
    assert "<b>70.0 ± 14.1</b>" in html

    notes = " ".join(t2.footnotes)
    assert "dA: key slice, box prompts; dB: key slice, click prompts" in notes
    assert "Seed(s): 7" in notes
    assert "counted as the image diagonal in mm in means (1 case-labels)" in notes
    assert "Test cases: dA: 2, dB: 2" in notes
    assert "config sha256 " + ctx.provenance["config_hash"] in notes
    assert len(ctx.provenance["config_hash"]) == 12
    assert "Git commit " in notes and "No metrics file (not run): dA/m3" in notes
    assert "m3: trained on dA only" in notes

    # HD95: lower is better; the one-sided empty lesion of m1 counts as the 50 mm diagonal
    hd = tables["table1_hd95"]
    assert list(hd.blocks[0].mean.columns) == ["organ", "lesion", "mean"]
    lesion_m1 = hd.blocks[0].mean.loc["m1 (MedSAM-2)", "lesion"]
    assert lesion_m1 == pytest.approx((3.0 * 1.5 + 50.0) / 2)
    md_hd = render.to_markdown(hd)
    organ_best = f"**{hd.blocks[0].mean.loc['m2 (SAM2)', 'lesion']:.2f}"
    assert organ_best in md_hd


def test_the_footnote_names_the_commit_of_the_code_not_of_the_working_directory(
        hand, tmp_path, monkeypatch):
    """Snakemake runs with -d <results folder>, usually outside any checkout."""
    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=False).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    monkeypatch.chdir(tmp_path)
    assert build.provenance(build.load_config(hand[1]))["commit"] == head


def test_summary_csv_and_missing_pair(hand, tmp_path):
    mdir, cfg = hand
    out = tmp_path / "report"
    build.build_report(mdir, cfg, out, n_boot=200)
    summary = pd.read_csv(out / "summary.csv", dtype=str, keep_default_na=False)
    row = summary[(summary.dataset == "dB") & (summary.model == "m1")].iloc[0]
    assert float(row.dice_mean) == pytest.approx(0.7)
    assert set(summary[summary.dataset == "dA"].label) == {"organ", "lesion", "all", MISSING}
    missing = summary[summary.model == "m3"].iloc[0]
    assert missing.dice_mean == MISSING and missing.n == MISSING
    md = (out / "summary.md").read_text()
    assert "| dB | m1 | cell | 2 | 0.700 ± 0.141 |" in md
    assert "| dA | m3 | – | – | – | – |" in md
    st = pd.read_csv(out / "stats.csv")
    m2 = st[(st.dataset == "dB") & (st.model == "m2") & (st.metric == "dice")].iloc[0]
    assert m2.vs_model == "m1" and m2.n_pairs == 2
    assert m2.ci_low <= m2["mean"] <= m2.ci_high
    assert m2.median_main_minus_model == pytest.approx(0.1)
    config = build.load_config(cfg)
    for name in report_files(config):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    # no ablation variant and no paper task: those figures are not drawn, and it says why
    assert not list((out / "figures").glob("ablation.*"))
    assert not list((out / "figures").glob("reported_vs_ours.*"))
    report = (out / "report.md").read_text()
    assert "- ablation: not drawn, no ablation variants configured" in report
    assert "- reported_vs_ours: not drawn, no dataset with a paper_key" in report


def test_cli_report_subcommand(hand, tmp_path):
    mdir, cfg = hand
    out = tmp_path / "cli"
    rc = cli_main(["report", "--metrics-dir", str(mdir), "--config", str(cfg), "--out-dir",
                   str(out), "--n-boot", "50"])
    assert rc == 0 and (out / "table2_dice.md").is_file()


def test_bad_inputs_name_the_file(hand, tmp_path):
    mdir, cfg = hand
    bad = mdir / "dB" / "m2.csv"
    pd.read_csv(bad).drop(columns=["hd95_mm"]).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"m2\.csv: metrics CSV lacks columns \['hd95_mm'\]"):
        build.prepare(mdir, cfg)
    broken = tmp_path / "broken.json"
    broken.write_text('{"datasets": {}}')
    with pytest.raises(ValueError, match="broken.json: datasets: required"):
        build.load_config(broken)


def add_both_empty_case(mdir: Path, cfg: Path, policy: str) -> None:
    """dA/m1 gains case c3: organ 0.8 and a lesion absent from ground truth and prediction
    (NaN metrics, as ``medsam2 evaluate`` writes it under the default policy)."""
    path = mdir / "dA" / "m1.csv"
    extra = metric_rows("dA", "m1", {("c3", "organ"): 0.8, ("c3", "lesion"): np.nan},
                        status={("c3", "lesion"): "both_empty"})
    extra["label_value"] = [1, 2]
    pd.concat([pd.read_csv(path), extra]).to_csv(path, index=False)
    if policy != "exclude":  # exclude: the default, unset
        config = json.loads(cfg.read_text())
        config["evaluate"]["both_empty"] = policy
        write_config(cfg, config)


def test_without_both_empty_pairs_the_footnotes_say_nothing_of_them(hand):
    ctx, _ = build.prepare(*hand)
    for table in build.build_tables(ctx):
        assert not any("empty in both" in n for n in table.footnotes), table.name


def test_both_empty_pairs_are_left_out_and_counted_in_footnotes(hand, tmp_path):
    mdir, cfg = hand
    add_both_empty_case(mdir, cfg, "exclude")
    ctx, metrics = build.prepare(mdir, cfg)
    tables = {t.name: t for t in build.build_tables(ctx)}
    ours = tables["table1_dice"].blocks[0].mean
    assert ours.loc["m1 (MedSAM-2)", "lesion"] == pytest.approx((0.5 + 0.0) / 2)
    assert ours.loc["m1 (MedSAM-2)", "organ"] == pytest.approx((0.9 + 0.7 + 0.8) / 3)
    note = ("1 label-case pair empty in both ground truth and prediction is left out of the "
            "means (evaluate.both_empty: exclude).")
    for name in ("table1_dice", "table1_hd95", "table2_dice"):
        assert note in tables[name].footnotes, name
    assert "failed cases are excluded (0)" in " ".join(tables["table1_dice"].footnotes)
    cell = ctx.cells.loc[("dA", "m1", "lesion")]
    assert (cell.n, cell.n_error, cell.n_both_empty, cell.n_hd95_penalised) == (2, 0, 1, 1)
    # per case: no row for the empty lesion, c3's value is its organ alone
    rows = stats.per_row_values(metrics, "diagonal")
    m1 = rows[(rows.dataset == "dA") & (rows.model == "m1")].set_index(["case", "label"])
    assert ("c3", "lesion") not in m1.index and ("c3", "organ") in m1.index
    per_case = stats.per_case_values(rows).set_index(["dataset", "model", "case"])
    assert per_case.loc[("dA", "m1", "c3"), "dice"] == pytest.approx(0.8)
    st = stats.stats_table(stats.per_case_values(rows), "m1", 0, 50)
    assert st[(st.dataset == "dA") & (st.model == "m1")]["n_cases"].tolist() == [3, 3]
    out = tmp_path / "report"
    build.build_report(mdir, cfg, out, n_boot=50)
    summary = pd.read_csv(out / "summary.csv", dtype=str, keep_default_na=False)
    lesion = summary[(summary.dataset == "dA") & (summary.model == "m1")
                     & (summary.label == "lesion")].iloc[0]
    assert (lesion.n, lesion.n_error, lesion.n_both_empty) == ("2", "0", "1")
    assert note in (out / "summary.md").read_text()


def test_per_row_values_leaves_both_empty_out():
    """A both-empty lesion (Dice 1 as the old convention wrote it) gives no per-case value:
    case c2's value is its organ alone, not lifted by a perfect empty lesion."""
    metrics = metric_rows("d", "m", {("c1", "organ"): 0.6, ("c1", "lesion"): 0.4,
                                     ("c2", "organ"): 0.7, ("c2", "lesion"): 1.0},
                          status={("c2", "lesion"): "both_empty"})
    rows = stats.per_row_values(metrics, "diagonal")
    assert list(zip(rows.case, rows.label, strict=True)) == [
        ("c1", "organ"), ("c1", "lesion"), ("c2", "organ")]
    per_case = stats.per_case_values(rows).set_index("case")["dice"]
    assert per_case.to_dict() == pytest.approx({"c1": 0.5, "c2": 0.7})
    kept = stats.per_row_values(metrics, "diagonal", "one").set_index(["case", "label"])
    assert tuple(kept.loc[("c2", "lesion"), ["dice", "hd95"]]) == (1.0, 0.0)


def test_both_empty_pairs_count_as_one_under_policy_one(hand):
    mdir, cfg = hand
    add_both_empty_case(mdir, cfg, "one")
    ctx, metrics = build.prepare(mdir, cfg)
    tables = {t.name: t for t in build.build_tables(ctx)}
    ours = tables["table1_dice"].blocks[0].mean
    assert ours.loc["m1 (MedSAM-2)", "lesion"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert ("1 label-case pair empty in both ground truth and prediction counts as Dice 1 "
            "(100 %) and HD95 0 mm in the means (evaluate.both_empty: one).") \
        in tables["table1_dice"].footnotes
    rows = stats.per_row_values(metrics, "diagonal", "one").set_index(
        ["dataset", "model", "case", "label"])
    assert tuple(rows.loc[("dA", "m1", "c3", "lesion"), ["dice", "hd95"]]) == (1.0, 0.0)
    cell = ctx.cells.loc[("dA", "m1", "lesion")]
    assert (cell.n, cell.n_error, cell.n_both_empty) == (3, 0, 1)


# ------------------------------------------------------------------- statistics
def test_bootstrap_is_seeded_and_wilcoxon_matches_scipy():
    vals = np.array([0.1, 0.5, 0.7, 0.9, 0.3])
    assert stats.bootstrap_ci(vals, 3) == stats.bootstrap_ci(vals, 3)
    lo, hi = stats.bootstrap_ci(vals, 3)
    assert lo < vals.mean() < hi
    a, b = np.array([0.9, 0.8, 0.85, 0.7, 0.95, 0.6]), np.array([0.5, 0.6, 0.4, 0.65, 0.7, 0.1])
    stat, p = stats.paired_wilcoxon(a, b)
    assert stat == 0.0 and p == pytest.approx(0.03125)  # all 6 differences positive, exact
    assert stats.paired_wilcoxon(a, a) == (0.0, 1.0)


# ------------------------------------------------------------------- paper-like fixture
def paper_config() -> dict:
    datasets = {d: {"source": "registry", "prompt": "box", "paper_key": d} for d in
                PAPER_DATASETS}
    for d, entry in datasets.items():  # the paper's setting: Δ beside its numbers
        two_d = d in ("wbc", "refuge", "stare", "pendal", "cadvidset")
        entry.update(protocol="interactive_one_prompt", prompt_rate=0.3) if two_d else \
            entry.update(protocol="interactive", prompt_rate=0.25)
    datasets["btcv"]["paper_structures"] = {f"organ{i}": s for i, s in
                                            enumerate(BTCV_STRUCTURES, 1)}
    models = {
        "medsam2": {"kind": "medsam2", "paper_name": "MedSAM-2", "checkpoint": "m.pt"},
        "sam2": {"kind": "sam2", "paper_name": "SAM2", "checkpoint": "s.pt"},
        "nnunet": {"kind": "nnunet", "paper_name": "nnUNet"},
    }
    steps = list(ABLATION_STEPS)
    for i, name in enumerate(reversed(steps)):  # config order deliberately reversed
        models[f"abl{i}"] = {"kind": "medsam2", "paper_name": name, "checkpoint": "m.pt",
                             "datasets": ["cadvidset", "btcv"]}
    return {"seed": 0, "datasets": datasets, "models": models,
            "evaluate": {"hd95_penalty": "diagonal"}, "report": {"main_model": "medsam2"}}


@pytest.fixture
def paper(tmp_path: Path) -> tuple[Path, Path, dict]:
    config = paper_config()
    rng = np.random.default_rng(0)
    frames = []
    for model, mcfg in config["models"].items():
        for d in mcfg.get("datasets") or PAPER_DATASETS:
            labels = [f"organ{i}" for i in range(1, 13)] if d == "btcv" else ["target"]
            vals = {(f"case{c}", lab): float(rng.uniform(0.3, 0.95)) for c in range(3)
                    for lab in labels}
            frames.append(metric_rows(d, model, vals))
    mdir = tmp_path / "metrics"
    write_metrics(mdir, pd.concat(frames))
    return mdir, write_config(tmp_path / "paper.json", config), config


def test_paper_tables_have_the_papers_rows_columns_and_numbers(paper, tmp_path):
    mdir, cfg, config = paper
    reported = load_reported()
    ctx, _ = build.prepare(mdir, cfg)
    tables = {t.name: t for t in build.build_tables(ctx)}

    t1 = tables["table1_dice"]
    assert [b.kind for b in t1.blocks] == ["ours", "reported", "delta"]
    assert [c.name for c in t1.columns] == [
        f"organ{i} ({s})" for i, s in enumerate(BTCV_STRUCTURES, 1)] + ["mean"]
    rep1 = t1.blocks[1].mean
    assert list(rep1.index) == list(dict.fromkeys(
        reported.loc[reported.table == "table1_btcv", "model"]))
    assert len(rep1) == 20
    assert rep1.loc["TransUNet", "organ1 (spleen)"] == pytest.approx(0.952)  # spleen
    assert rep1.loc["MedSAM-2", "mean"] == pytest.approx(
        reported.query("table == 'table1_btcv' and model == 'MedSAM-2' and structure == 'mean'")
        .dice.item())
    assert list(t1.blocks[0].mean.index) == ["medsam2 (MedSAM-2)", "sam2 (SAM2)",
                                             "nnunet (nnUNet)"]
    delta = t1.blocks[2].mean
    aorta = "organ8 (aorta)"
    assert delta.loc["medsam2 − MedSAM-2", aorta] == pytest.approx(
        t1.blocks[0].mean.loc["medsam2 (MedSAM-2)", aorta] - rep1.loc["MedSAM-2", aorta])

    t2 = tables["table2_dice"]
    paper_cols = [d for d in dict.fromkeys(
        reported.loc[reported.table == "table2_zero_shot", "dataset"]) if d != "mean"]
    assert [c.name for c in t2.columns] == paper_cols + ["mean"]
    assert len(paper_cols) == 11
    rep2 = t2.blocks[1].mean
    assert len(rep2) == 13
    assert rep2.loc["MedSAM-2", "kits23"] == pytest.approx(0.782)
    assert rep2.loc["MedSAM-2", "mean"] == pytest.approx(0.768)  # the paper's printed mean
    assert rep2.loc["nnUNet", "toothfairy23"] == pytest.approx(0.353)
    assert "stare, tdsc_abus23, btcv" in " ".join(t2.footnotes)

    t3 = tables["table3_dice"]
    assert [c.name for c in t3.columns] == ["cadvidset", "btcv (organ8: aorta)"]
    ours3 = t3.blocks[0].mean
    assert [r.split(" (")[0] for r in ours3.index] == list(ABLATION_STEPS.values())
    rep3 = t3.blocks[1].mean
    assert list(rep3.index) == list(ABLATION_STEPS.values())
    assert rep3.loc["none", "cadvidset"] == pytest.approx(0.539)
    assert rep3.loc["+resampling", "btcv (organ8: aorta)"] == pytest.approx(0.896)
    assert "abl" not in " ".join(t2.blocks[0].mean.index)  # ablation variants only in Table 3

    render.write_table(t2, tmp_path / "out")
    md = (tmp_path / "out" / "table2_dice.md").read_text()
    assert "| MedSAM-2 | 78.2 | 71.8 | 80.5 |" in md.replace("**", "")
    csv = pd.read_csv(tmp_path / "out" / "table2_dice.csv", dtype=str)
    hit = csv[(csv.block == "reported") & (csv.model == "SAM2") & (csv.column == "wbc")]
    assert float(hit.value.item()) == pytest.approx(0.691)
    # a reported-only model has no run of ours: its run is "–" and it has no ours/delta row
    trans = csv[csv.model == "TransUNet"]
    assert set(trans.block) == {"reported"} and (trans["run"] == MISSING).all()
    assert len(trans) == 12 and not (trans.value == "0").any()


def test_the_main_model_is_the_last_ablation_step(paper, tmp_path):
    """Without a '+resampling' variant, the full MedSAM-2 (the main model) fills that row
    of Table 3 with its own numbers; a main model that is not the full bank does not."""
    mdir, _, config = paper
    config["models"].pop("abl0")  # the '+resampling' variant
    for path in mdir.glob("*/abl0.csv"):
        path.unlink()
    config["models"]["medsam2"]["memory"] = {"policy": "self_sorting", "confidence": True,
                                             "dissimilarity": True, "resampling": True}
    ctx, _ = build.prepare(mdir, write_config(tmp_path / "full.json", config))
    ours = {t.name: t for t in build.build_tables(ctx)}["table3_dice"].blocks[0].mean
    assert list(ours.index)[-1] == "+resampling (medsam2)"
    assert [r.split(" (")[0] for r in ours.index] == list(ABLATION_STEPS.values())
    mine = pd.read_csv(mdir / "cadvidset" / "medsam2.csv")
    assert ours.loc["+resampling (medsam2)", "cadvidset"] == pytest.approx(mine.dice.mean())
    config["models"]["medsam2"]["memory"]["resampling"] = False
    ctx, _ = build.prepare(mdir, write_config(tmp_path / "part.json", config))
    ours = {t.name: t for t in build.build_tables(ctx)}["table3_dice"].blocks[0].mean
    assert len(ours) == 3 and not any("medsam2)" in r for r in ours.index)


def test_missing_ours_show_dash_next_to_reported(paper, tmp_path):
    mdir, cfg, _ = paper
    (mdir / "kits23" / "sam2.csv").unlink()
    ctx, _ = build.prepare(mdir, cfg)
    t2 = {t.name: t for t in build.build_tables(ctx)}["table2_dice"]
    md = render.to_markdown(t2)
    sam_row = next(line for line in md.splitlines() if line.startswith("| sam2 (SAM2) |"))
    cells = [c.strip() for c in sam_row.strip("|").split("|")]
    assert cells[1] == MISSING and cells[-1] == MISSING  # kits23 and the mean
    delta_row = next(line for line in md.splitlines() if line.startswith("| sam2 − SAM2 |"))
    assert delta_row.split("|")[2].strip() == MISSING
    assert "kits23/sam2" in " ".join(t2.footnotes)


# ------------------------------------------------------------------- figures + overlays
def tiny_datasets(root: Path, preds: Path) -> dict:
    """A 3D dataset (2 labels, anisotropic) and a 2D PNG dataset, with predictions."""
    rng = np.random.default_rng(1)
    spacing = (0.8, 0.8, 2.5)
    for i in range(3):
        img = rng.normal(0, 1, (32, 32, 10)).astype(np.float32)
        lab = np.zeros((32, 32, 10), np.uint8)
        r = 6 + 2 * i
        yy, xx = np.mgrid[:32, :32]
        for k in range(2, 9):
            disk = (yy - 16) ** 2 + (xx - 14) ** 2 < (r - abs(k - 5)) ** 2
            lab[..., k][disk] = 1
        lab[14:18, 12:16, 4:6] = 2
        img[lab > 0] += 3
        aff = affine_from_spacing(spacing)
        write_case(root / "synth3d", f"v{i}", "test", Volume(img, aff), Volume(lab, aff))
        for m, shift in (("mA", i), ("mB", 2 * i + 1)):
            write_volume(preds / "synth3d" / m / f"v{i}.nii.gz",
                         Volume(np.roll(lab, shift, axis=0), aff), is_label=True)
    write_dataset_json(root / "synth3d", {"organ": 1, "lesion": 2}, 0, ".nii.gz")
    for i in range(3):
        lab = np.zeros((40, 48), np.uint8)
        lab[10 + i:25 + i, 12:30] = 1
        img = (60 + 120 * lab + rng.normal(0, 10, lab.shape)).clip(0, 255).astype(np.uint8)
        write_case(root / "synth2d", f"im{i}", "test", Volume(img), Volume(lab), ".png")
        for m, shift in (("mA", i), ("mB", 3 + i)):
            write_volume(preds / "synth2d" / m / f"im{i}.png",
                         Volume(np.roll(lab, shift, axis=1)), is_label=True)
    write_dataset_json(root / "synth2d", {"cell": 1}, 0, ".png")
    return {"seed": 0, "datasets": {"synth3d": {"source": "local", "path": "synth3d"},
                                    "synth2d": {"source": "local", "path": "synth2d",
                                                "paper_key": "wbc"}},
            "models": {"mA": {"kind": "medsam2", "paper_name": "MedSAM-2", "checkpoint": "a.pt"},
                       "mB": {"kind": "sam2", "paper_name": "SAM2", "checkpoint": "b.pt",
                              "ablation": True}},
            "evaluate": {"hd95_penalty": "diagonal"}, "report": {"main_model": "mA"}}


def test_key_slices_and_case_picks():
    lab = np.zeros((8, 8, 12), np.uint8)
    lab[2:6, 2:6, 3:10] = 1
    lab[1:7, 1:7, 7] = 1  # largest area at k = 7
    slices, key = overlays.key_slices(lab, 1, axis=2)
    assert key == 7 and slices == [5, 7, 8]
    assert overlays.slice_axis((0.8, 0.8, 2.5)) == 2 and overlays.slice_axis((1, 1, 1)) == 2
    per_case = pd.DataFrame({"dataset": "d", "model": "m", "case": list("abcde"),
                             "dice": [0.5, 0.9, 0.1, 0.7, 0.3], "hd95": 1.0})
    assert [(r, c) for r, c, _ in overlays.pick_cases(per_case, "d", "m")] == [
        ("best", "b"), ("median", "a"), ("worst", "c")]


def scored_tiny(tmp_path: Path) -> tuple[Path, Path, Path, dict, Path]:
    """tiny_datasets scored by the real scorer: (datasets, predictions, metrics folders,
    the config, its resolved JSON)."""
    from medsam2.evaluate import evaluate_dataset

    root, preds, mdir = tmp_path / "datasets", tmp_path / "predictions", tmp_path / "metrics"
    config = tiny_datasets(root, preds)
    for d in config["datasets"]:
        for m in config["models"]:
            evaluate_dataset(root / d, preds / d / m, d, m, mdir / d / f"{m}.csv")
    return root, preds, mdir, config, write_config(tmp_path / "config.resolved.json", config)


def test_figures_and_overlays_are_written(tmp_path):
    root, preds, mdir, config, cfg = scored_tiny(tmp_path)
    out = tmp_path / "report"
    paths = build.build_report(mdir, cfg, out, root, preds, n_boot=200)
    figs = [p for p in paths if p.parent.name == "figures"]
    assert {p.name for p in figs} >= {"synth3d_per_case.png", "synth3d_overlays.pdf",
                                      "synth2d_overlays.png", "ablation.png",
                                      "reported_vs_ours.png"}
    for p in figs:
        assert p.stat().st_size > 2000, p
    # overlays are real image panels (3 cases x 3 slices), not a "no data" note
    from PIL import Image

    with Image.open(out / "figures" / "synth3d_overlays.png") as im:
        assert im.size[1] > 800 and im.size[0] > 1000
    assert "organ" in (out / "table1_dice.md").read_text()
    # the same numbers give the same files, byte for byte (seeded jitter, no PDF date)
    again = build.build_report(mdir, cfg, tmp_path / "again", root, preds, n_boot=200)
    assert [p.name for p in again] == [p.name for p in paths]
    for first, second in zip(paths, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_a_dataset_s_figures_drawn_alone_equal_the_report_s(tmp_path):
    """The workflow draws each dataset's figures in a job of its own, from that dataset's
    metrics files only; they are the report's own figures, byte for byte, and the report
    drawn without them lists them all the same."""
    root, preds, mdir, config, cfg = scored_tiny(tmp_path)
    whole = tmp_path / "whole"
    build.build_report(mdir, cfg, whole, root, preds, n_boot=50)
    split = tmp_path / "split"
    written = build.build_report(mdir, cfg, split, root, preds, n_boot=50,
                                 with_dataset_figures=False)
    assert not list((split / "figures").glob("synth*"))
    assert (split / "report.md").read_text() == (whole / "report.md").read_text()
    for dataset in config["datasets"]:
        figs = build.build_dataset_figures(mdir, cfg, dataset, split, root, preds)
        assert sorted(p.relative_to(split).as_posix() for p in figs) == sorted(
            dataset_figure_files(dataset))
        for p in figs:
            assert p.read_bytes() == (whole / p.relative_to(split)).read_bytes(), p.name
    names = {p.relative_to(split).as_posix() for p in written}
    assert names == set(report_files(build.load_config(cfg), dataset_figures=False))
    assert names | {n for d in config["datasets"] for n in dataset_figure_files(d)} == set(
        report_files(build.load_config(cfg)))
    with pytest.raises(ValueError, match="config.resolved.json: no dataset 'nope'"):
        build.build_dataset_figures(mdir, cfg, "nope", split, root, preds)


STUB_SNAKEFILE = """configfile: "config.yaml"


include: "{rules}/common.smk"
include: "{rules}/report.smk"


rule all:  # snakemake 9.15's --report fails on a one-rule graph (max() of no edges)
    input:
        rules.report.output,
"""


def test_snakemake_rule_runs_and_html_report_has_tables_and_figures(tmp_path):
    """report.smk (with common.smk, the other stages left out) under real snakemake, then
    --report."""
    from medsam2.evaluate import evaluate_dataset

    results = tmp_path / "results"
    config = tiny_datasets(results / "datasets", results / "predictions")
    for d in config["datasets"]:
        for m in config["models"]:
            evaluate_dataset(results / "datasets" / d, results / "predictions" / d / m, d, m,
                             results / "metrics" / d / f"{m}.csv")
    config["results"] = "results"
    write_config(tmp_path / "config.yaml", config)  # JSON is YAML
    rules = Path(__file__).resolve().parents[1] / "workflow" / "rules"
    (tmp_path / "Snakefile").write_text(STUB_SNAKEFILE.format(rules=rules))
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    snakemake = str(bindir / "snakemake") if (bindir / "snakemake").exists() else "snakemake"
    for cmd in (["--cores", "1"], ["--report", "report.html"]):
        res = subprocess.run([snakemake, *cmd], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    for name in report_files(Config.from_dict(config)):
        assert (results / "report" / name).is_file(), name
    assert "wrote" in (results / "logs" / "report.log").read_text()
    page = (tmp_path / "report.html").read_text()
    for item in ("table1_dice.html", "table2_hd95.html", "summary.html", "stats.csv",
                 "synth3d_overlays.png", "synth2d_per_case.png", "reported_vs_ours.png",
                 "Analogue of the paper's Table 2"):
        assert item in page, item


def test_tables_from_the_real_paper_config(tmp_path):
    """config/paper.yaml + a metrics fixture for every (dataset, model) pair it plans."""
    import yaml

    from medsam2.spec import Config

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config" / "paper.yaml").read_text())
    rng = np.random.default_rng(1)
    frames = []
    spec = Config.from_dict(config)
    for model in config["models"]:
        for d in spec.model_datasets(model):
            reg = yaml.safe_load(spec.registry_file(d).read_text())
            vals = {(f"case{c}", lab): float(rng.uniform(0.3, 0.95)) for c in range(3)
                    for lab in reg["labels"]}
            frames.append(metric_rows(d, model, vals))
    mdir = tmp_path / "metrics"
    write_metrics(mdir, pd.concat(frames))
    ctx, _ = build.prepare(mdir, write_config(tmp_path / "paper.json", config))
    tables = {t.name: t for t in build.build_tables(ctx)}
    t1 = tables["table1_dice"]  # BTCV in the headline and the key-slice protocol
    names = [c.name for c in t1.columns]
    assert names[12] == "btcv: mean" and names[-1] == "btcv-key-slice: mean"
    assert len(t1.columns) == 26 and "spleen" in t1.columns[0].name
    assert len(t1.blocks[1].mean) == 20  # the paper's 20 models, reported numbers
    assert "medsam2 (MedSAM-2)" in t1.blocks[0].mean.index
    delta1 = t1.blocks[2].mean
    assert delta1["btcv: mean"].notna().all() and delta1["btcv-key-slice: mean"].isna().all()
    t2 = tables["table2_dice"]  # 11 tasks x 2 protocols + the mean
    assert len(t2.columns) == 23 and t2.blocks[1].mean.loc["MedSAM-2", "kits23"] == \
        pytest.approx(0.782)
    assert t2.blocks[1].mean.loc["MedSAM-2", "kits23-key-slice"] == pytest.approx(0.782)
    ours2 = t2.blocks[0].mean
    assert {"medsam2 (MedSAM-2)", "sam2 (SAM2)", "nnunet (nnUNet)"} <= set(ours2.index)
    assert ours2.loc["nnunet (nnUNet)", "kits23-key-slice"] != \
        ours2.loc["nnunet (nnUNet)", "kits23-key-slice"]  # NaN: nnU-Net runs once per task
    notes = " ".join(t2.footnotes)
    assert "kits23: interactive 3D, p = 0.25, click prompts" in notes
    assert "wbc-one-prompt: One-Prompt, click prompts" in notes
    t3 = tables["table3_dice"]
    assert [r.split(" (")[0] for r in t3.blocks[0].mean.index] == list(ABLATION_STEPS.values())
    assert t3.blocks[0].mean.index[0] == "none (sam2-finetuned)"  # SAM 2 FIFO, fine-tuned
    assert t3.blocks[0].mean.index[-1] == "+resampling (medsam2)"  # the main model itself
    assert t3.blocks[1].mean.loc["+resampling"].notna().all()
    assert "object pointers" in " ".join(t3.footnotes)
