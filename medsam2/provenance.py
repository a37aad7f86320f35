"""Which code produced a result: the git commit of the medsam2 checkout.

Asked of the package's own folder, not of the working directory: the workflow usually runs
with ``snakemake -d <elsewhere>``, where the working directory is no checkout at all (or
another project's). Kept free of heavy imports so that checkpoints and the report share it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_version() -> str:
    """The git commit of this checkout (``unknown`` outside a repository, e.g. a wheel)."""
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else "unknown"
