"""`medsam2 profile install`: make ``snakemake --profile slurm`` find our SLURM profile.

Snakemake resolves a bare profile name in the current directory, then the user's config
directory (``~/.config/snakemake`` on Linux, wherever platformdirs puts it elsewhere) and
the site one (``/etc/xdg/snakemake``). We link the repository's
``workflow/profiles/<profile>`` there, so the literal command works from the checkout and
later edits of the profile take effect without reinstalling. An existing entry of that
name that is not our link is somebody else's profile: we refuse to touch it, and with
``--force`` move it aside to ``<name>.bak-<time>`` instead of deleting it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from medsam2.config import REPO_ROOT

PROFILES_DIR = REPO_ROOT / "workflow" / "profiles"


class ProfileError(RuntimeError):
    """The profile cannot be installed; the message names the path and the reason."""


def available_profiles(profiles_dir: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.parent.name for p in profiles_dir.glob("*/config.yaml"))


def snakemake_config_dir() -> Path:
    """The per-user directory Snakemake searches for profiles (its own platformdirs rule)."""
    from platformdirs import user_config_dir  # a dependency of snakemake

    return Path(user_config_dir("snakemake", "snakemake"))


def install_profile(
    profile: str = "slurm",
    name: str | None = None,
    config_dir: Path | None = None,
    force: bool = False,
    profiles_dir: Path = PROFILES_DIR,
) -> Path:
    """Link ``profiles_dir/profile`` as ``config_dir/name``; returns the link path.

    Idempotent when the link already points at our profile. Raises ProfileError when the
    source is missing or ``name`` is taken by something else and ``force`` is false.
    """
    source = profiles_dir / profile
    if not (source / "config.yaml").is_file():
        raise ProfileError(f"{source}/config.yaml: no such profile (known: "
                           f"{available_profiles(profiles_dir)}; install from a checkout "
                           "of the repository, the profiles are not part of the wheel)")
    config_dir = snakemake_config_dir() if config_dir is None else config_dir
    link = config_dir / (name or profile)
    if link.is_symlink() and link.resolve() == source.resolve():
        return link
    if link.exists() or link.is_symlink():
        if not force:
            what = f"a link to {link.readlink()}" if link.is_symlink() else "a different profile"
            raise ProfileError(f"{link}: already exists ({what}); not replacing it. Use "
                               "--force to move it aside, or --name to install under "
                               "another name")
        if link.is_symlink():
            link.unlink()
        else:
            backup = link.with_name(f"{link.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
            link.rename(backup)
    config_dir.mkdir(parents=True, exist_ok=True)
    link.symlink_to(source.resolve(), target_is_directory=True)
    return link


def _cli(args: argparse.Namespace) -> int:
    try:
        link = install_profile(args.profile, args.name, args.config_dir, args.force)
    except ProfileError as err:
        print(f"medsam2 profile install: {err}", file=sys.stderr)
        return 1
    print(f"{link} -> {link.resolve()}\nnow: snakemake --profile {link.name}")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile", help="install the SLURM profile for `snakemake --profile slurm`",
        description="Link one of workflow/profiles/* into Snakemake's per-user profile "
                    "directory so that `snakemake --profile <name>` finds it.")
    p.add_argument("action", choices=["install"])
    p.add_argument("--profile", default="slurm", choices=available_profiles() or None,
                   help="which of workflow/profiles/ to install (default: slurm)")
    p.add_argument("--name", help="name to install it under (default: the profile's name)")
    p.add_argument("--config-dir", type=Path, default=None,
                   help="where Snakemake looks for profiles (default: ~/.config/snakemake, "
                        "as Snakemake resolves it)")
    p.add_argument("--force", action="store_true",
                   help="move an existing, different profile of that name aside")
    p.set_defaults(func=_cli)
