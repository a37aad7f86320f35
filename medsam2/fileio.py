"""Reading the JSON, YAML and CSV files that users hand in and stages hand on.

Why one module: a run reads hundreds of such files (``dataset.json`` per dataset, prompts,
splits, registry files, caches, records of earlier jobs), and a bare
``JSONDecodeError: Expecting value: line 1 column 1`` or ``KeyError: 'attempt'`` from deep
inside a job does not say which of them is broken. Every reader here fails as
``<path>: <reason>``; a caller with an error type of its own (``LayoutError``,
``RegistryError``, ...) passes it as ``error`` so that its callers keep catching what they
catch. Not named ``io``: a script run from inside the package would shadow the standard
library's module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import pandas as pd

#: what raises: an exception class taking the message (``FileFormatError`` by default)
ErrorType = Callable[[str], BaseException]


class FileFormatError(ValueError):
    """A file the pipeline reads is missing or malformed; the message names the file."""


def _text(path: Path, what: str, error: ErrorType) -> str:
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a {what} (not UTF-8 text: {exc.reason})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def _check_keys(data: Any, require: Sequence[str] | None, source: str, what: str,
                error: ErrorType) -> Any:
    """``data`` itself; with ``require`` (even empty) it must be a mapping with those keys."""
    if require is None:
        return data
    if not isinstance(data, dict):
        raise error(f"{source}: not a {what} (a {type(data).__name__}, expected a mapping)")
    missing = [k for k in require if k not in data]
    if missing:
        keys = ", ".join(f"'{k}'" for k in missing)
        raise error(f"{source}: not a {what} (key{'s' if len(missing) > 1 else ''} {keys} "
                    "missing)")
    return data


def parse_json(text: str, source: str, what: str, *, require: Sequence[str] | None = None,
               error: ErrorType = FileFormatError) -> Any:
    """JSON text from ``source`` (a file, or a flag such as ``--model-json``), parsed."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source}: not a {what} (invalid JSON: {exc})") from None
    return _check_keys(data, require, source, what, error)


def read_json(path: Path | str, what: str, *, require: Sequence[str] | None = None,
              error: ErrorType = FileFormatError) -> Any:
    """A JSON file; ``require`` (even empty) demands an object with those keys."""
    path = Path(path)
    return parse_json(_text(path, what, error), str(path), what, require=require, error=error)


def read_yaml(path: Path | str, what: str, *, require: Sequence[str] | None = None,
              error: ErrorType = FileFormatError) -> Any:
    """A YAML file (an empty file is None); ``require`` as for :func:`read_json`."""
    path = Path(path)
    text = _text(path, what, error)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}: not a {what} (invalid YAML{where}: {first})") from None
    return _check_keys(data, require, str(path), what, error)


def read_csv(path: Path | str, what: str, *, columns: Sequence[str] = (),
             error: ErrorType = FileFormatError, **kwargs: Any) -> pd.DataFrame:
    """A CSV file as a DataFrame (``kwargs`` go to ``pandas.read_csv``) with ``columns``."""
    import pandas as pd  # here: the workflow plans with this module and without pandas

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        df = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise error(f"{path}: not a {what} ({type(exc).__name__}: {reason})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    lacking = [c for c in columns if c not in df.columns]
    if lacking:
        raise error(f"{path}: {what} lacks columns {lacking}")
    return df
