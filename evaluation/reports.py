"""Result files and plain-text tables.

Every file is written through `xlmr.atomic`: to a temporary name, renamed into place, so an
interrupted run leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from xlmr.atomic import write_json_atomic, write_text_atomic

__all__ = ["format_rows", "write_csv_atomic", "write_json_atomic", "write_text_atomic"]


def write_csv_atomic(path: Path, rows: list[dict], columns: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def format_rows(rows: list[dict], columns: list[str]) -> str:
    """Rows as left-aligned text columns under a header; floats with four decimals."""
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    widths = [max([len(c)] + [len(cell(r[c])) for r in rows]) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(cell(r[c]).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)
