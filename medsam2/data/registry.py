"""The dataset registry: one ``config/datasets/<key>.yaml`` per dataset of the paper.

A dataset file says where the data comes from (URLs or, behind a registration, the page
and the exact file to fetch by hand), how to check it (sha256, size), which converter maps
its layout, and what its labels mean. This module loads and validates those files, runs
download / extract / convert / verify for one key, and reports each key's status on this
machine; ``medsam2 datasets ...`` at the bottom is the thin CLI the Snakemake rules call.

Besides the keys in ``REQUIRED``, a dataset file may carry the rules its converter applies
(``label_rule``, ``resample_label``, ``placeholder_spacing``: see
``medsam2/data/converters/_rules.py``) and ``max_skipped``, the number of cases the
conversion may lose before it fails (default 0: every case of a paper dataset must convert).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsam2.data import download as dl
from medsam2.data import extract as ex
from medsam2.fileio import read_yaml

if TYPE_CHECKING:  # pragma: no cover
    from medsam2.data.converters._rules import CaseRules

ACCESS = ("public", "registration", "request")  # request: from the authors, by asking
PROMPTS = ("click", "box", "mask")
REQUIRED = (
    "key", "task", "modality", "dims", "access", "page", "license", "citation", "files",
    "converter", "source_labels", "labels", "target_labels", "prompt", "split",
)
COMPLETE = ".complete"


class RegistryError(ValueError):
    """A dataset file is missing or invalid (the message names the file and the key)."""


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch: ``url`` None means it must be downloaded by hand."""

    name: str
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    place: str | None = None  # non-archives: where to put it under the extracted folder


@dataclass
class DatasetSpec:
    key: str
    task: str
    modality: str
    dims: int
    access: str
    page: str
    license: str
    citation: str
    files: list[FileSpec]
    converter: str
    source_labels: dict[str, int]
    labels: dict[str, list[str]]
    target_labels: list[str]
    prompt: str
    split: dict[str, Any]
    channel_name: str = "image"
    options: dict[str, Any] = field(default_factory=dict)
    instructions: str = ""
    paper_key: str | None = None
    paper_structures: dict[str, str] = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)
    max_skipped: int = 0
    rules: CaseRules | None = None
    path: Path | None = None

    @property
    def access_mode(self) -> str:
        """direct (every file has a URL), manual (a public file fetched by hand),
        registration (behind a sign-up or data agreement) or on request (from the authors)."""
        if self.access in ("registration", "request"):
            return "on request" if self.access == "request" else "registration"
        return "direct" if all(f.url for f in self.files) else "manual"

    @property
    def output_labels(self) -> dict[str, int]:
        """Converted label values: the output names in order, numbered from 1."""
        return {name: i + 1 for i, name in enumerate(self.labels)}

    @property
    def file_ending(self) -> str:
        return ".png" if self.dims == 2 else ".nii.gz"


def _expand_files(entries: list[dict], where: str) -> list[FileSpec]:
    """Expand ``for_each: {var: "0-2,5"}`` entries (KiTS23: one file per case)."""
    out: list[FileSpec] = []
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            raise RegistryError(f"{where}: each entry of 'files' needs a 'name'")
        loops = entry.get("for_each") or {}
        names = list(loops)
        values = [_parse_ranges(str(loops[n]), where) for n in names]
        for combo in itertools.product(*values) if names else [()]:
            env = dict(zip(names, combo, strict=True))

            def fmt(text: str | None, env: dict = env) -> str | None:
                return None if text is None else str(text).format(**env)

            out.append(FileSpec(
                name=fmt(entry["name"]), url=fmt(entry.get("url")),
                sha256=entry.get("sha256"), size=entry.get("size"), place=fmt(entry.get("place")),
            ))
    return out


def _parse_ranges(text: str, where: str) -> list[int]:
    values: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            values.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError as exc:
            raise RegistryError(f"{where}: bad range '{part}' in for_each") from exc
    return values


def spec_from_dict(raw: dict, where: str = "<dict>") -> DatasetSpec:
    """Validate a parsed dataset file; every problem names ``where``."""
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: expected a mapping at top level")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise RegistryError(f"{where}: missing keys {missing}")
    known = set(REQUIRED) | {
        "channel_name", "options", "instructions", "paper_key", "paper_structures", "unverified",
        "max_skipped",
    }
    rule_keys = {"label_rule", "resample_label", "placeholder_spacing"}
    known |= rule_keys
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RegistryError(f"{where}: unknown keys {unknown}")
    if raw["access"] not in ACCESS:
        raise RegistryError(f"{where}: access must be one of {ACCESS}, got {raw['access']!r}")
    if raw["dims"] not in (2, 3):
        raise RegistryError(f"{where}: dims must be 2 or 3, got {raw['dims']!r}")
    if raw["prompt"] not in PROMPTS:
        raise RegistryError(f"{where}: prompt must be one of {PROMPTS}, got {raw['prompt']!r}")
    src = raw["source_labels"]
    if not isinstance(src, dict) or not all(isinstance(v, int) for v in src.values()):
        raise RegistryError(f"{where}: source_labels must map names to integer values")
    labels = raw["labels"]
    if not isinstance(labels, dict) or not labels:
        raise RegistryError(f"{where}: labels must map output names to lists of source labels")
    for name, parts in labels.items():
        if not isinstance(parts, list) or not parts or any(p not in src for p in parts):
            raise RegistryError(
                f"{where}: labels.{name} must list names from source_labels {sorted(src)}"
            )
    bad_targets = [t for t in raw["target_labels"] if t not in labels]
    if bad_targets:
        raise RegistryError(f"{where}: target_labels {bad_targets} are not in labels")
    frac = (raw["split"] or {}).get("test_fraction")
    if not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        raise RegistryError(f"{where}: split.test_fraction must be in (0, 1]")
    files = _expand_files(raw["files"] or [], where)
    if any(f.url is None for f in files) and not (raw["access"] != "public"
                                                  or raw.get("instructions")):
        raise RegistryError(
            f"{where}: a public file without url needs 'instructions' for the manual download"
        )
    from medsam2.data.converters import CONVERTERS
    from medsam2.data.converters._rules import RuleError, parse_rules

    if raw["converter"] not in CONVERTERS:
        raise RegistryError(
            f"{where}: converter {raw['converter']!r} unknown (known: {sorted(CONVERTERS)})"
        )
    max_skipped = raw.get("max_skipped", 0)
    if not isinstance(max_skipped, int) or isinstance(max_skipped, bool) or max_skipped < 0:
        raise RegistryError(f"{where}: max_skipped must be a whole number >= 0")
    try:
        rules = parse_rules(raw, src, where)
    except RuleError as exc:
        raise RegistryError(str(exc)) from exc
    kwargs = {k: raw[k] for k in known - rule_keys if k in raw and k != "files"}
    return DatasetSpec(**kwargs, files=files, rules=rules)


def load_spec(path: Path | str) -> DatasetSpec:
    path = Path(path)
    if not path.is_file():
        raise RegistryError(f"{path}: dataset file not found")
    raw = read_yaml(path, "dataset registry file", error=RegistryError)
    spec = spec_from_dict(raw, str(path))
    if spec.key != path.stem:
        raise RegistryError(f"{path}: key {spec.key!r} differs from the file name")
    spec.path = path
    return spec


def load_registry(registry_dir: Path | str = "config/datasets") -> dict[str, DatasetSpec]:
    return {p.stem: load_spec(p) for p in sorted(Path(registry_dir).glob("*.yaml"))}


# --------------------------------------------------------------------------- stages
def manual_message(spec: DatasetSpec, f: FileSpec, dest: Path) -> str:
    steps = f"\n  {spec.instructions.strip()}" if spec.instructions else ""
    why = {"registration": "needs a registration",
           "request": "is given by its authors on request"}.get(spec.access,
                                                                 "needs a manual download")
    return (
        f"dataset '{spec.key}' {why}: download the file '{f.name}' from {spec.page} "
        f"and put it at {dest.resolve()}{steps}"
    )


def download_dataset(spec: DatasetSpec, downloads: Path | str, retries: int = 3) -> Path:
    """Fetch (or, behind a registration, check) every file into ``downloads``."""
    downloads = Path(downloads)
    downloads.mkdir(parents=True, exist_ok=True)
    missing = []
    for f in spec.files:
        dest = downloads / f.name
        if f.url is None:
            if not dest.is_file():
                missing.append(manual_message(spec, f, dest))
                continue
            dl.verify_existing(dest, f.sha256, f.size)
        else:
            dl.download_file(f.url, dest, f.sha256, f.size, retries=retries)
    if missing:
        raise dl.ManualDownloadRequired("\n".join(missing))
    (downloads / COMPLETE).write_text("ok\n")
    return downloads


def extract_dataset(spec: DatasetSpec, downloads: Path | str, target: Path | str) -> Path:
    """Unpack archives and place other files under ``target`` (then mark it complete)."""
    downloads, target = Path(downloads), Path(target)
    (target / COMPLETE).unlink(missing_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    for f in spec.files:
        src = downloads / f.name
        if not src.is_file():
            raise ex.ExtractError(f"{src}: not downloaded (run the download step first)")
        if ex.is_archive(src) and f.place is None:
            ex.extract_archive(src, target)
            continue
        dest = target / (f.place or f.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
    (target / COMPLETE).write_text("ok\n")
    return target


def verify_dataset(spec: DatasetSpec, downloads: Path | str) -> list[tuple[str, str]]:
    """Re-check every downloaded file against the dataset file's hash or the lock file.

    Returns ``(file name, result)`` per file, result ``ok <sha256>``, ``missing`` or the
    reason it is wrong; nothing is deleted or renamed (this only looks).
    """
    downloads = Path(downloads)
    lock = dl.read_lock(downloads)
    results = []
    for f in spec.files:
        path = downloads / f.name
        if not path.is_file():
            results.append((f.name, "missing"))
            continue
        expected = f.sha256 or lock.get(f.name)
        try:
            digest = dl.check_file(path, f.name, expected, f.size)
        except dl.DownloadError as exc:
            results.append((f.name, f"WRONG: {exc}"))
            continue
        known = "dataset file" if f.sha256 else ("lock file" if expected else "no hash known")
        results.append((f.name, f"ok {digest} ({known})"))
    return results


def status(spec: DatasetSpec, resources: Path | str, results: Path | str, name: str) -> str:
    """missing / downloaded / converted, as seen on this machine."""
    if (Path(results) / "datasets" / name / "dataset.json").is_file():
        return "converted"
    downloads = Path(resources) / "downloads" / spec.key
    if spec.files and all((downloads / f.name).is_file() for f in spec.files):
        return "downloaded"
    return "missing"


# --------------------------------------------------------------------------- CLI
def _cmd_list(args: argparse.Namespace) -> int:
    specs = load_registry(args.registry_dir)
    rows = [("key", "modality", "dims", "access", "prompt", "facts", "status")]
    for key, s in specs.items():
        facts = f"unverified ({len(s.unverified)})" if s.unverified else "checked"
        rows.append((key, s.modality, f"{s.dims}D", s.access_mode, s.prompt, facts,
                     status(s, args.resources, args.results, key)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _spec_arg(args: argparse.Namespace) -> DatasetSpec:
    return load_spec(Path(args.registry_dir) / f"{args.key}.yaml")


def _cmd_download(args: argparse.Namespace) -> int:
    spec = _spec_arg(args)
    try:
        download_dataset(spec, args.dest or Path(args.resources) / "downloads" / spec.key)
    except dl.DownloadError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    spec = _spec_arg(args)
    base = Path(args.resources)
    extract_dataset(spec, base / "downloads" / spec.key, args.dest or base / "extracted" / spec.key)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    spec = _spec_arg(args)
    downloads = args.dest or Path(args.resources) / "downloads" / spec.key
    results = verify_dataset(spec, downloads)
    bad = [r for r in results if not r[1].startswith("ok")]
    for name, result in results:
        print(f"{name}: {result}")
    print(f"{spec.key}: {len(results) - len(bad)} of {len(results)} files verified in {downloads}")
    return 2 if bad else 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from medsam2.data.convert import ConversionError, convert_dataset

    spec = _spec_arg(args)
    src = Path(args.src or Path(args.resources) / "extracted" / spec.key)
    try:
        report = convert_dataset(spec, src, Path(args.out), seed=args.seed,
                                 test_fraction=args.test_fraction, group_by=args.group_by)
    except ConversionError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if report.skipped or report.empty_labels:  # the one line again, last, where it is seen
        print(f"WARNING: {report.one_line()}", file=sys.stderr)
    return 0


def _cmd_import_local(args: argparse.Namespace) -> int:
    from medsam2.data.convert import ConversionError, import_local

    try:
        report = import_local(Path(args.path), Path(args.out), seed=args.seed,
                              test_fraction=args.test_fraction, dims=args.dims,
                              modality=args.modality, prompt=args.prompt,
                              labels=args.labels, label_threshold=args.label_threshold)
    except ConversionError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if report.skipped or report.empty_labels:  # last, where a console reader sees it
        print(f"WARNING: {report.one_line()}", file=sys.stderr)
    return 0


def parse_label_declaration(text: str) -> dict[str, int]:
    """``NAME=VALUE,NAME=VALUE`` -> {name: raw value} (argparse type of ``--labels``)."""
    out: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().lstrip("-").isdigit():
            raise argparse.ArgumentTypeError(
                f"'{item}': expected NAME=VALUE with an integer value (e.g. cell=255)")
        if name.strip() in out:
            raise argparse.ArgumentTypeError(f"label '{name.strip()}' declared twice")
        out[name.strip()] = int(value)
    if not out:
        raise argparse.ArgumentTypeError("no label declared (expected NAME=VALUE,...)")
    return out


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("datasets", help="dataset registry: list/download/convert")
    sub = parser.add_subparsers(dest="datasets_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--registry-dir", default="config/datasets")
        p.add_argument("--resources", default="resources")

    p = sub.add_parser("list", help="print the registry with each dataset's status here")
    common(p)
    p.add_argument("--results", default="results")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("download", help="fetch and verify one dataset's files")
    common(p)
    p.add_argument("key")
    p.add_argument("--dest", type=Path, help="default: <resources>/downloads/<key>")
    p.set_defaults(func=_cmd_download)
    p = sub.add_parser("verify", help="re-check one dataset's downloaded files (sha256)")
    common(p)
    p.add_argument("key")
    p.add_argument("--dest", type=Path, help="default: <resources>/downloads/<key>")
    p.set_defaults(func=_cmd_verify)
    p = sub.add_parser("extract", help="safely unpack one dataset's archives")
    common(p)
    p.add_argument("key")
    p.add_argument("--dest", type=Path, help="default: <resources>/extracted/<key>")
    p.set_defaults(func=_cmd_extract)
    p = sub.add_parser("convert", help="convert one dataset to the standard layout")
    common(p)
    p.add_argument("key")
    p.add_argument("--out", required=True, help="results/datasets/<name>")
    p.add_argument("--src", help="default: <resources>/extracted/<key>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=None)
    p.add_argument("--group-by", default=None,
                   help="split by this group key of the cases (cadvidset: video)")
    p.set_defaults(func=_cmd_convert)
    p = sub.add_parser("import-local", help="bring your own data (nnU-Net raw or images/labels)")
    p.add_argument("--path", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--dims", type=int, choices=(2, 3), default=None)
    p.add_argument("--modality", default="unknown")
    p.add_argument("--prompt", choices=PROMPTS, default="box")
    p.add_argument("--labels", type=parse_label_declaration, default=None,
                   metavar="NAME=VALUE,...",
                   help="the label files' values, e.g. cell=255 or organ=1,lesion=2 "
                        "(default: the folder's dataset.json, else inferred from a clean "
                        "set of values)")
    p.add_argument("--label-threshold", type=float, default=None, metavar="T",
                   help="binary labels: a value >= T is the one foreground label; needed "
                        "for lossy label files (JPEG)")
    p.set_defaults(func=_cmd_import_local)


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - convenience
    parser = argparse.ArgumentParser(prog="medsam2")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
