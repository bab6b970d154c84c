"""Files written whole or not at all.

Every file the project writes (checkpoints, results, reports, figures) goes
to a temporary name beside its target and is renamed into place: a rename within a folder is
atomic, so a run killed at any moment leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` writes the file's content to a temporary path, which then replaces `path`.
    The temporary name keeps the suffix (matplotlib picks the format from it)."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, obj) -> None:
    # numpy and torch scalars carry .item(); anything else unknown is written as its str().
    write_text_atomic(path, json.dumps(obj, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
