"""Verified downloads: resume, retries, size and sha256 checks, atomic rename, lock file.

A file is written to ``<name>.part`` and renamed only once its size and hash are right,
so a half-written file never looks complete to a later rule. Where the dataset file gives
no sha256 (a moving GitHub archive, a file we could not see), the first hash seen is
recorded in ``sha256.lock.json`` beside the downloads and enforced on every later run
(trust on first use), so a silently changed upstream file is noticed.

A large file with the wrong hash is not deleted: it is renamed aside
(``<name>.sha256-mismatch``) and the error says so, so that hours of download survive a
wrong hash in a dataset file and can be inspected, or renamed back by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from medsam2.fileio import read_json

LOCK_NAME = "sha256.lock.json"
CHUNK = 1 << 20
KEEP_ASIDE_BYTES = 64 << 20  # a wrong file at least this big is renamed aside, not deleted
ASIDE_SUFFIX = ".sha256-mismatch"


class DownloadError(RuntimeError):
    """A download failed or its content is not what the dataset file says (names the file)."""


class ManualDownloadRequired(DownloadError):
    """The file sits behind a registration: the message says where to get it and where to put it."""


def sha256_of(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_lock(folder: Path | str) -> dict[str, str]:
    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return {}
    return dict(read_json(path, "checksum lock file", require=(), error=DownloadError))


def record_lock(folder: Path | str, name: str, digest: str) -> Path:
    """Record the hash seen for ``name`` (atomically: write a temp file, then rename)."""
    folder = Path(folder)
    lock = read_lock(folder)
    lock[name] = digest
    path = folder / LOCK_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def _local_source(url: str) -> Path | None:
    """A ``file://`` URL or a plain path is a local source (used by tests and mirrors)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("", None) or (len(parsed.scheme) == 1 and url[1:3] == ":\\"):
        return Path(url)
    return None


def _fetch_http(url: str, part: Path, timeout: float) -> None:
    """Fetch ``url`` into ``part``, resuming from its current size with a Range request."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "medsam2-bench"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = getattr(response, "status", 200)
        mode = "ab" if start and status == 206 else "wb"  # server ignored Range: start over
        length = response.headers.get("Content-Length")
        received = 0
        with open(part, mode) as fh:
            for block in iter(lambda: response.read(CHUNK), b""):
                fh.write(block)
                received += len(block)
        if length is not None and received < int(length):  # the connection broke off
            raise OSError(f"incomplete transfer: {received} of {length} bytes")


def check_file(path: Path, name: str, sha256: str | None, size: int | None) -> str:
    """Return the file's sha256; raise DownloadError naming it if size or hash is wrong."""
    if size is not None and path.stat().st_size != int(size):
        raise DownloadError(
            f"{name}: size {path.stat().st_size} bytes, expected {int(size)} bytes "
            f"(file {path})"
        )
    digest = sha256_of(path)
    if sha256 is not None and digest != sha256.lower():
        raise DownloadError(f"{name}: sha256 mismatch, expected {sha256}, got {digest} ({path})")
    return digest


def _discard(part: Path, dest: Path, keep_aside_bytes: int) -> str:
    """Remove a downloaded file that failed its check, or keep a large one aside.

    Returns a sentence for the error message saying what happened to the file.
    """
    if part.is_file() and part.stat().st_size >= keep_aside_bytes:
        aside = dest.with_name(dest.name + ASIDE_SUFFIX)
        part.replace(aside)
        return f"the file is kept aside as {aside} (rename it to {dest.name} if it is right)"
    part.unlink(missing_ok=True)
    return "the file was removed"


def download_file(
    url: str,
    dest: Path | str,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 3,
    backoff_s: float = 2.0,
    timeout: float = 60.0,
    keep_aside_bytes: int = KEEP_ASIDE_BYTES,
) -> str:
    """Download ``url`` to ``dest`` and return its sha256.

    A wrong hash or size raises; the file is removed, or renamed aside when it is at least
    ``keep_aside_bytes`` big (a multi-GB download is not thrown away). A network error is retried
    ``retries`` times (resuming where the server supports ranges). Where ``sha256`` is
    None, the lock file beside ``dest`` supplies the hash seen before, if any, and
    records this one otherwise.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256 or read_lock(dest.parent).get(dest.name)
    if dest.is_file():
        return verify_existing(dest, sha256, size)
    part = dest.with_name(dest.name + ".part")
    local = _local_source(url)
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            if local is not None:
                if not local.is_file():
                    raise DownloadError(f"{dest.name}: source file {local} not found")
                shutil.copyfile(local, part)
            else:
                _fetch_http(url, part, timeout)
            last_error = None
            break
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last_error = exc
            if isinstance(exc, urllib.error.HTTPError) and exc.code in (401, 403, 404):
                break  # retrying will not help
            if attempt < retries:
                time.sleep(backoff_s * (2**attempt))
    if last_error is not None:  # the .part file stays: the next run resumes from it
        raise DownloadError(
            f"{dest.name}: download from {url} failed after {retries + 1} tries ({last_error});"
            f" partial data kept in {part} for resuming"
        )
    try:
        digest = check_file(part, dest.name, expected, size)
    except DownloadError as exc:
        raise DownloadError(f"{exc}; {_discard(part, dest, keep_aside_bytes)}") from exc
    part.replace(dest)
    if sha256 is None:
        record_lock(dest.parent, dest.name, digest)
    return digest


def verify_existing(path: Path | str, sha256: str | None = None, size: int | None = None) -> str:
    """Check a file already in place (a manual download) against the yaml hash or the lock.

    A first-seen hash is recorded in the lock file; a file that contradicts a known hash
    raises (it is left in place: the user put it there and should see what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise DownloadError(f"{path}: file not found")
    expected = sha256 or read_lock(path.parent).get(path.name)
    digest = check_file(path, path.name, expected, size)
    if sha256 is None and expected is None:
        record_lock(path.parent, path.name, digest)
    return digest
