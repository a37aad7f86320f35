"""Safe extraction of zip and tar archives.

Archives from challenge sites are data we do not control: every member is checked before
anything is written (no absolute path, no ``..``, no link or device that could write or
point outside the target; member count, total size and compression ratio under limits, so
a zip bomb is refused before it fills the disk), and the archive is unpacked into a
temporary folder that is renamed into place only when complete, so an interrupted or
refused extraction leaves nothing that looks finished.

Some datasets ship archives inside archives (Mendeley's "Download All" zip holds the
dataset's own zip; REFUGE2.zip holds one zip per subset). Inner archives are unpacked in
place, under the same rules and limits, before anything is moved into the target.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


@dataclass(frozen=True)
class Limits:
    """What one archive may unpack to; each inner archive gets the same limits.

    The defaults hold the largest paper dataset (a few hundred GB of CT at most) and
    refuse the classic bombs: millions of members, or kilobytes that inflate to terabytes.
    ``max_ratio`` is uncompressed size over archive size (images compress ~2-20x, mostly
    empty masks more); it applies only once an archive unpacks to more than
    ``ratio_applies_above`` bytes, where a bomb starts to hurt.
    """

    max_members: int = 1_000_000
    max_total_bytes: int = 1 << 40  # 1 TiB
    max_ratio: float = 100.0
    ratio_applies_above: int = 1 << 30  # 1 GiB
    max_depth: int = 3  # archive in archive in archive


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


def _check_budget(archive: Path, sizes: list[int], limits: Limits) -> None:
    """Refuse an archive whose members exceed the count, size or ratio limits."""
    if len(sizes) > limits.max_members:
        raise ExtractError(
            f"{archive}: {len(sizes)} members, more than the limit of {limits.max_members} "
            "(refused: possible zip bomb)"
        )
    total = sum(sizes)
    if total > limits.max_total_bytes:
        raise ExtractError(
            f"{archive}: unpacks to {total} bytes, more than the limit of "
            f"{limits.max_total_bytes} bytes (refused: possible zip bomb)"
        )
    packed = max(archive.stat().st_size, 1)
    if total > limits.ratio_applies_above and total / packed > limits.max_ratio:
        raise ExtractError(
            f"{archive}: unpacks to {total} bytes from {packed} bytes (ratio "
            f"{total / packed:.0f} > {limits.max_ratio:.0f}; refused: possible zip bomb)"
        )


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


def _resolve(
    parts: tuple[str, ...], links: dict[tuple[str, ...], str], hops: int = 0
) -> tuple[str, ...] | None:
    """Where a path inside the target lands once the archive's own symlinks are followed.

    ``parts`` is relative to the target; ``links`` maps each symlink extracted so far to
    its link text. Every component is walked as the operating system would: ``..`` after a
    symlink climbs from where the link points, not from where it lies (``d/l1 -> ..`` then
    ``d/l2 -> l1/..`` leaves the target although both texts look harmless). Returns the
    resolved parts, or None when the path leaves the target, is absolute or loops.
    """
    out: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
        text = links.get(tuple(out))
        if text is None:
            continue
        if hops >= 40 or PurePosixPath(text).is_absolute():  # 40: Linux's own loop limit
            return None
        resolved = _resolve((*out[:-1], *PurePosixPath(text).parts), links, hops + 1)
        if resolved is None:
            return None
        out = list(resolved)
    return tuple(out)


def _check_tar(archive: Path, tf: tarfile.TarFile, target: Path) -> None:
    """Refuse any member that would be written, or link, outside the target.

    The check stands alone: it follows the archive's symlinks (chains included) in the
    order they are extracted, so it does not rely on Python's ``data`` extraction filter
    (PEP 706), which only Python 3.10.12+, 3.11.4+ and 3.12+ have.
    """
    links: dict[tuple[str, ...], str] = {}
    for member in tf.getmembers():
        pure = _check_name(archive, member.name)
        parts = tuple(p for p in pure.parts if p not in ("", "."))
        parent = _resolve(parts[:-1], links)
        if parent is None:
            raise ExtractError(
                f"{archive}: member '{member.name}' lies under a symlink that leads outside "
                "the target (refused)"
            )
        if member.issym():
            dest = _resolve((*parent, *PurePosixPath(member.linkname).parts), links)
            if PurePosixPath(member.linkname).is_absolute() or dest is None:
                raise ExtractError(
                    f"{archive}: member '{member.name}' is a symlink to '{member.linkname}' "
                    "outside the target (refused)"
                )
            if parts:
                links[parts] = member.linkname
        elif member.islnk():
            _check_name(archive, member.linkname)
            if _resolve(PurePosixPath(member.linkname).parts, links) is None:
                raise ExtractError(
                    f"{archive}: member '{member.name}' is a hard link to '{member.linkname}' "
                    "outside the target (refused)"
                )
        elif not (member.isfile() or member.isdir()):
            raise ExtractError(
                f"{archive}: member '{member.name}' is a device or FIFO (refused)"
            )
        elif _resolve(parts, links) is None:  # a file written through an earlier symlink
            raise ExtractError(
                f"{archive}: member '{member.name}' would be written through a symlink "
                "outside the target (refused)"
            )


def extract_archive(
    archive: Path | str, target: Path | str, limits: Limits | None = None, _depth: int = 0
) -> Path:
    """Extract ``archive`` into ``target`` (created; existing files there are kept).

    Archives found inside are unpacked where they lie (and then removed), up to
    ``limits.max_depth`` levels. Raises ExtractError naming the archive (and the inner
    archive) for a truncated/corrupt archive, an unsafe member or a broken limit; in that
    case nothing is added to ``target``.
    """
    archive, target = Path(archive), Path(target)
    limits = limits or Limits()
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
                _check_budget(archive, [i.file_size for i in zf.infolist()], limits)
                _check_zip(archive, zf, real_tmp)
                zf.extractall(real_tmp)
        else:
            with tarfile.open(archive) as tf:
                _check_budget(archive, [m.size for m in tf.getmembers()], limits)
                _check_tar(archive, tf, real_tmp)
                # The data filter (Python 3.10.12+, 3.11.4+, 3.12+) is a second guard
                # only; _check_tar is sufficient on its own.
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(real_tmp, filter="data")
                else:  # pragma: no cover - depends on the Python patch release
                    tf.extractall(real_tmp)
        _extract_inner(archive, real_tmp, limits, _depth)
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


def _extract_inner(archive: Path, folder: Path, limits: Limits, depth: int) -> None:
    """Unpack every archive found under ``folder`` where it lies, then remove it."""
    inner = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not p.is_symlink() and is_archive(p))
    if inner and depth + 1 > limits.max_depth:
        raise ExtractError(
            f"{archive}: archives nested deeper than {limits.max_depth} levels (refused)"
        )
    for path in inner:
        rel = path.relative_to(folder)
        try:
            extract_archive(path, path.parent, limits, depth + 1)
        except ExtractError as exc:
            raise ExtractError(f"{archive}: inner archive '{rel}': {exc}") from exc
        path.unlink()


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
