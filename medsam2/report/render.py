"""Writers for ``tables.Table``: tidy CSV, Markdown, LaTeX (booktabs) and HTML.

All four show the same cells: "mean ± std" for our runs, the paper's number, or the
signed difference; "–" where a run or number is missing; the best value per column (two
or more to compare, delta rows excepted) in bold. HTML exists because
``snakemake --report`` shows HTML inline but offers CSV only as a download.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from medsam2.report.tables import MISSING, Block, Table


def _fmt(value: float, metric: str, kind: str) -> str:
    if not np.isfinite(value):
        return MISSING
    scaled = value * 100 if metric == "dice" else value
    digits = 1 if metric == "dice" else 2
    return f"{scaled:+.{digits}f}" if kind == "delta" else f"{scaled:.{digits}f}"


def _best_mask(block: Block, higher: bool) -> pd.DataFrame:
    """Cells holding the best value of their column (only with 2+ values to compare)."""
    mask = pd.DataFrame(False, index=block.mean.index, columns=block.mean.columns)
    if block.kind == "delta":
        return mask
    for col in block.mean.columns:
        vals = block.mean[col].astype(float)
        if vals.notna().sum() < 2:
            continue
        best = vals.max() if higher else vals.min()
        mask[col] = np.isclose(vals, best, rtol=1e-9, atol=1e-12) & vals.notna()
    return mask


def cell_texts(table: Table, block: Block) -> pd.DataFrame:
    """Display strings (no markup) for a block; bold handled by the writers."""
    out = pd.DataFrame(MISSING, index=block.mean.index, columns=block.mean.columns, dtype=object)
    for row in block.mean.index:
        for col in block.mean.columns:
            text = _fmt(float(block.mean.loc[row, col]), table.metric, block.kind)
            sd = np.nan if block.std is None else float(block.std.loc[row, col])
            if text != MISSING and np.isfinite(sd):
                text += " ± " + _fmt(sd, table.metric, "ours")
            out.loc[row, col] = text
    return out


def to_markdown(table: Table) -> str:
    lines = [f"### {table.title}", ""]
    if not table.blocks or not table.columns:
        lines += [f"_No data for this table._ {MISSING}", ""]
    for block in table.blocks:
        texts, bold = cell_texts(table, block), _best_mask(block, table.higher_is_better)
        lines += [f"**{block.title}**", "", "| Model | " + " | ".join(texts.columns) + " |",
                  "|---|" + "---:|" * len(texts.columns)]
        for row in texts.index:
            cells = [f"**{t}**" if bold.loc[row, c] else t for c, t in texts.loc[row].items()]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Notes:", ""] + [f"{i}. {n}" for i, n in enumerate(table.footnotes, 1)]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"–": "--", "−": "$-$", "±": "$\\pm$", "Δ": "$\\Delta$", "→": "$\\to$"}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    for uni, tex in _LATEX_UNICODE.items():
        out = out.replace(uni, tex)
    return out


def to_latex(table: Table) -> str:
    """A booktabs table (needs \\usepackage{booktabs,graphicx}); best per column bold."""
    ncol = len(table.columns) + 1
    lines = ["% needs \\usepackage{booktabs,graphicx}", "\\begin{table}[t]", "\\centering",
             f"\\caption{{{latex_escape(table.title)}}}", f"\\label{{tab:{table.name}}}",
             "\\resizebox{\\textwidth}{!}{%", f"\\begin{{tabular}}{{l{'c' * (ncol - 1)}}}",
             "\\toprule",
             " & ".join(["Model"] + [latex_escape(c.name) for c in table.columns]) + " \\\\"]
    if not table.blocks:
        lines += ["\\midrule", f"\\multicolumn{{{ncol}}}{{l}}{{No data}} \\\\"]
    for block in table.blocks:
        texts, bold = cell_texts(table, block), _best_mask(block, table.higher_is_better)
        lines += ["\\midrule",
                  f"\\multicolumn{{{ncol}}}{{l}}{{\\textit{{{latex_escape(block.title)}}}}} \\\\"]
        for row in texts.index:
            cells = [f"\\textbf{{{latex_escape(t)}}}" if bold.loc[row, c] else latex_escape(t)
                     for c, t in texts.loc[row].items()]
            lines.append(" & ".join([latex_escape(row)] + cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}}", "\\par\\smallskip\\footnotesize"]
    lines += [f"({i}) {latex_escape(n)}\\\\" for i, n in enumerate(table.footnotes, 1)]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    """A self-contained page: ``snakemake --report`` shows HTML inline (CSV only as a link)."""
    esc = html.escape
    ncol = len(table.columns) + 1
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>{esc(table.title)}</title><style>table{{border-collapse:collapse;"
             "font-family:sans-serif;font-size:13px}td,th{padding:3px 8px;text-align:right}"
             "td:first-child,th.block{text-align:left}thead{border-bottom:2px solid #000}"
             "tbody{border-bottom:1px solid #000}</style></head><body>",
             f"<h3>{esc(table.title)}</h3><table><thead><tr><th>Model</th>"
             + "".join(f"<th>{esc(c.name)}</th>" for c in table.columns) + "</tr></thead>"]
    if not table.blocks:
        parts.append(f"<tbody><tr><td colspan='{ncol}'>No data</td></tr></tbody>")
    for block in table.blocks:
        texts, bold = cell_texts(table, block), _best_mask(block, table.higher_is_better)
        parts.append(f"<tbody><tr><th class='block' colspan='{ncol}'><i>{esc(block.title)}"
                     "</i></th></tr>")
        for row in texts.index:
            cells = "".join(f"<td><b>{esc(t)}</b></td>" if bold.loc[row, c] else
                            f"<td>{esc(t)}</td>" for c, t in texts.loc[row].items())
            parts.append(f"<tr><td>{esc(row)}</td>{cells}</tr>")
        parts.append("</tbody>")
    parts.append("</table><ol>" + "".join(f"<li>{esc(n)}</li>" for n in table.footnotes))
    parts.append("</ol></body></html>")
    return "\n".join(parts) + "\n"


def to_frame(table: Table) -> pd.DataFrame:
    """Tidy CSV form: one row per (block, model, column); Dice as a fraction, HD95 in mm."""
    records = []
    for block in table.blocks:
        for row in block.mean.index:
            for col in block.mean.columns:
                value = float(block.mean.loc[row, col])
                sd = np.nan if block.std is None else float(block.std.loc[row, col])
                records.append({
                    "table": table.name, "metric": table.metric, "block": block.kind,
                    "model": row, "run": block.runs.get(row, MISSING) if block.kind == "ours"
                    else MISSING, "column": col,
                    "value": round(value, 6) if np.isfinite(value) else MISSING,
                    "std": round(sd, 6) if np.isfinite(sd) else MISSING,
                })
    cols = ["table", "metric", "block", "model", "run", "column", "value", "std"]
    return pd.DataFrame.from_records(records, columns=cols)


def write_table(table: Table, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{table.name}.{ext}" for ext in ("csv", "md", "tex", "html")]
    to_frame(table).to_csv(paths[0], index=False)
    paths[1].write_text(to_markdown(table), encoding="utf-8")
    paths[2].write_text(to_latex(table), encoding="utf-8")
    paths[3].write_text(to_html(table), encoding="utf-8")
    return paths
