"""`medsam2 <stage> ...`: the one command that Snakemake rules call.

Each stage module owns its sub-command: it defines ``add_subcommand(subparsers)``, which
adds a parser whose ``func`` default takes the parsed arguments and returns an exit code.
This file only lists the stages, and imports just the module of the stage being run: a
rule that generates phantoms does not pay for importing torch. Baselines bring their own
sub-command: every ``baselines/<kind>/cli.py`` is the stage ``medsam2 <kind>``, its help
the first line of that file's docstring.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from collections.abc import Sequence
from importlib import resources

#: stage name -> (module defining ``add_subcommand``, one-line help), in pipeline order
STAGES: dict[str, tuple[str, str]] = {
    "datasets": ("medsam2.data.registry", "list, download, extract, convert paper datasets"),
    "synth": ("medsam2.data.phantoms", "generate a synthetic phantom dataset"),
    "preprocess": ("medsam2.data.preprocess", "cache MedSAM-2's training preprocessing"),
    "prompts": ("medsam2.data.prompts", "compute the evaluation prompts of a dataset"),
    "checkpoint": ("medsam2.model.checkpoints",
                   "fetch a published checkpoint (SAM 2, MedSAM-2, MedSAM2, SAM, MedSAM)"),
    "pretrain": ("medsam2.pretrain", "pretrain a tracker on synthetic videos (demo's SAM 2)"),
    "train": ("medsam2.train", "train a MedSAM-2 / SAM 2 model on frame clips"),
    "predict": ("medsam2.predict", "predict a dataset's test split with MedSAM-2 / SAM 2"),
    "sensitivity": ("medsam2.sensitivity", "One-Prompt template sensitivity over seeds (2D)"),
    "evaluate": ("medsam2.evaluate", "Dice / HD95 per case and label into a metrics CSV"),
    "report": ("medsam2.report.build", "tables, statistics and figures from all metrics"),
    "config": ("medsam2.config", "validate a config or write the resolved config"),
    "profile": ("medsam2.profile", "install the SLURM profile for `snakemake --profile slurm`"),
}


def baseline_stages() -> dict[str, tuple[str, str]]:
    """``kind -> (module, help)`` of every baseline folder with a ``cli.py``."""
    out = {}
    for folder in sorted(resources.files("baselines").iterdir(), key=lambda p: p.name):
        cli = folder / "cli.py"
        if folder.name.startswith(("_", ".")) or not cli.is_file():
            continue
        doc = ast.get_docstring(ast.parse(cli.read_text())) or f"{folder.name} baseline"
        out[folder.name] = (f"baselines.{folder.name}.cli", doc.strip().splitlines()[0])
    return out


def all_stages() -> dict[str, tuple[str, str]]:
    """The pipeline's stages, then the baselines' (a baseline cannot shadow a stage)."""
    return {**STAGES, **{k: v for k, v in baseline_stages().items() if k not in STAGES}}


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``stage`` only that stage's module is imported and its flags added."""
    parser = argparse.ArgumentParser(
        prog="medsam2",
        description="MedSAM-2 benchmark stages (normally called by the Snakemake workflow).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for name, (module, help_text) in all_stages().items():
        if name == stage:
            importlib.import_module(module).add_subcommand(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stage = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(stage if stage in all_stages() else None).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
