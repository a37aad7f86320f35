"""Safe extraction of zip and tar archives.

Archives from challenge sites are data we do not control: every member is checked before
anything is written (no absolute path, no ``..``, no link or device that could write or
point outside the target), and the archive is unpacked into a temporary folder that is
renamed into place only when complete, so an interrupted or refused extraction leaves
nothing that looks finished.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class ExtractError(RuntimeError):
    """An archive is unreadable or unsafe (the message names the archive and the member)."""


def is_archive(path: Path | str) -> bool:
    name = str(path).lower()
    return name.endswith(ARCHIVE_SUFFIXES)


def _check_name(archive: Path, name: str) -> PurePosixPath:
    """Reject member names that would land outside the target folder."""
    norm = name.replace("\\", "/")
    pure = PurePosixPath(norm)
    if pure.is_absolute() or (len(norm) > 1 and norm[1] == ":"):
        raise ExtractError(f"{archive}: member '{name}' has an absolute path (refused)")
    if ".." in pure.parts:
        raise ExtractError(f"{archive}: member '{name}' contains '..' (path traversal refused)")
    return pure


def _inside(target: Path, link_parent: PurePosixPath, link_target: str) -> bool:
    """Whether a link stored at ``link_parent`` pointing to ``link_target`` stays in target."""
    if PurePosixPath(link_target).is_absolute():
        return False
    resolved = os.path.normpath(os.path.join(str(target), str(link_parent), link_target))
    return resolved == str(target) or resolved.startswith(str(target) + os.sep)


def _check_zip(archive: Path, zf: zipfile.ZipFile, target: Path) -> None:
    for info in zf.infolist():
        pure = _check_name(archive, info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            link = zf.read(info).decode("utf-8", "replace")
            if not _inside(target, pure.parent, link):
                raise ExtractError(
                    f"{archive}: member '{info.filename}' is a symlink to '{link}' outside "
                    "the target (refused)"
                )


def _check_tar(archive: Path, tf: tarfile.TarFile, target: Path) -> None:
    for member in tf.getmembers():
        pure = _check_name(archive, member.name)
        if member.issym():
            if not _inside(target, pure.parent, member.linkname):
                raise ExtractError(
                    f"{archive}: member '{member.name}' is a symlink to '{member.linkname}' "
                    "outside the target (refused)"
                )
        elif member.islnk():
            _check_name(archive, member.linkname)
            if not _inside(target, PurePosixPath("."), member.linkname):
                raise ExtractError(
                    f"{archive}: member '{member.name}' is a hard link to '{member.linkname}' "
                    "outside the target (refused)"
                )
        elif not (member.isfile() or member.isdir()):
            raise ExtractError(
                f"{archive}: member '{member.name}' is a device or FIFO (refused)"
            )


def extract_archive(archive: Path | str, target: Path | str) -> Path:
    """Extract ``archive`` into ``target`` (created; existing files there are kept).

    Raises ExtractError naming the archive for a truncated/corrupt archive or an unsafe
    member; in that case nothing is added to ``target``.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise ExtractError(f"{archive}: archive not found")
    target.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.extracting-{archive.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    real_tmp = Path(os.path.realpath(tmp))
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise ExtractError(f"{archive}: member '{bad}' is corrupt (CRC mismatch)")
                _check_zip(archive, zf, real_tmp)
                zf.extractall(real_tmp)
        else:
            with tarfile.open(archive) as tf:
                _check_tar(archive, tf, real_tmp)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second guard
                    tf.extractall(real_tmp, filter="data")
                else:  # pragma: no cover - older Pythons rely on _check_tar alone
                    tf.extractall(real_tmp)
        _merge(real_tmp, target)
    except ExtractError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ExtractError(
            f"{archive}: unreadable archive, truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _merge(src: Path, dst: Path) -> None:
    """Move the extracted tree into place (several archives may share one target)."""
    for item in src.iterdir():
        dest = dst / item.name
        if dest.is_dir() and item.is_dir() and not item.is_symlink():
            _merge(item, dest)
        else:
            if dest.exists() or dest.is_symlink():
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                else:
                    dest.unlink()
            item.replace(dest)
