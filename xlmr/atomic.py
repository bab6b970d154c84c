"""Files and folders written whole or not at all: the project's one way to write to disk.

A file (a checkpoint, results.json, a report, a figure, metrics.jsonl) is written to a temporary
name beside its target, flushed to the disk, and renamed into place. A rename within a folder is
atomic, so a run killed at any moment, or a disk that fills part-way, leaves the old file or the
new one, never half of one. A folder (a run's resumable state) is written whole under a temporary
name and swapped in with two renames; `whole_folder` finds the whole one if a kill fell between
them.

A write that fails raises `WriteError`, naming the file, the reason in the operating system's
words ("No space left on device") and that the previous file is unchanged. Libraries that write
from native code do not always say why: torch.save on a full disk reports "unexpected pos 576
vs 534" (measured on a 64 KiB tmpfs), so a failure on a file system with no space left is named
as such.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

__all__ = ["WriteError", "whole_folder", "write_atomic", "write_folder_atomic", "write_json_atomic",
           "write_text_atomic"]


class WriteError(OSError):
    """A file or folder that could not be written; the previous one, if any, is unchanged.
    An OSError (errno and strerror set where the reason is an OS error), so callers that
    catch OSError keep working."""

    def __init__(self, path: Path, reason: str, code: int | None = None, kept: str | None = None):
        super().__init__(code, reason)
        self.path, self.reason, self.kept = Path(path), reason, kept  # kept: what is still there

    def __str__(self) -> str:
        after = f"the previous {self.kept} is unchanged" if self.kept else "nothing was written there"
        return f"could not write {self.path}: {self.reason}; {after}"


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` writes the file's content to a temporary path, which then replaces `path`.
    The temporary name keeps the suffix (matplotlib picks the format from it)."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        _flush_to_disk(tmp)  # some file systems report a full disk only here, not on write()
        os.replace(tmp, path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise _failure(path, e, path.name if path.exists() else None) from e
    except BaseException:  # KeyboardInterrupt: cleaned up, passed on as it is
        tmp.unlink(missing_ok=True)
        raise
    _flush_to_disk(path.parent)  # the rename itself, so that a power cut after it keeps it


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, obj) -> None:
    # numpy and torch scalars carry .item(); anything else unknown is written as its str().
    write_text_atomic(path, json.dumps(obj, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def write_folder_atomic(folder: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` fills an empty temporary folder, which then replaces `folder` whole: renamed
    to <name>.old, the new one renamed into place, the old one removed. A kill between the two
    renames leaves <name>.old whole and <name> absent, which `whole_folder` reads. Files inside
    are best written with `write_atomic` too: a failure then names the file."""
    folder = Path(folder)
    tmp, old = folder.with_name(f"{folder.name}.tmp"), folder.with_name(f"{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    if folder.exists():  # a kill during the last clean-up can leave <name>.old behind
        shutil.rmtree(old, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        _flush_to_disk(tmp)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)  # frees what the half-written copy took
        inner = e.path if isinstance(e, WriteError) and e.path.parent == tmp else None
        kept = next((f"{f.name}/" for f in (folder, old) if f.exists()), None)
        raise _failure(folder / inner.name if inner else folder, e, kept) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    _flush_to_disk(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


def whole_folder(folder: Path, marker: str) -> Path | None:
    """The last folder `write_folder_atomic` completed: `folder`, or <name>.old when a kill fell
    between its two renames. `marker` is a file every complete folder holds."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(f"{folder.name}.old")):
        if (candidate / marker).is_file():
            return candidate
    return None


def _flush_to_disk(path: Path) -> None:
    """fsync a file, or a folder's entries (where the platform allows opening one)."""
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        if path.is_dir():
            return  # Windows cannot open a folder; its renames are durable without it
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _failure(path: Path, e: Exception, kept: str | None) -> WriteError:
    """`e` as a WriteError on `path`, with the reason in the operating system's words. `kept`:
    what is still there in its place (None: nothing)."""
    if isinstance(e, WriteError):
        return WriteError(path, e.reason, e.errno, kept)
    if isinstance(e, OSError) and e.strerror:
        return WriteError(path, e.strerror, e.errno, kept)
    # Rust writers (safetensors) say "... (os error 28)".
    found = re.search(r"os error (\d+)", str(e))
    if found:
        code = int(found.group(1))
        return WriteError(path, os.strerror(code), code, kept)
    text = f"{type(e).__name__}: {e}"
    if _no_space_left(path):
        return WriteError(path, f"{os.strerror(errno.ENOSPC)} ({text})", errno.ENOSPC, kept)
    return WriteError(path, text, None, kept)


def _no_space_left(path: Path) -> bool:
    """Whether the file system that holds `path` has no space left for it (less than 64 KiB)."""
    try:
        fs = os.statvfs(path.parent)
    except (OSError, AttributeError):  # AttributeError: Windows has no statvfs
        return False
    return fs.f_bavail * fs.f_frsize < 64 * 1024
