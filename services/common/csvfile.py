"""CSV for spreadsheets: cells that a spreadsheet would run as a formula are neutralised.

Post text, excerpts and rule-group names come from outside. A cell starting with = + - @, a tab or a carriage
return is a formula (or the start of one) to Excel, LibreOffice and Google Sheets (OWASP "CSV injection"); it
gets a leading apostrophe, which they show as text. Numbers are written as they are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["safe_cell", "write_csv"]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], fields: list[str]) -> None:
    """UTF-8 with a BOM, so that Excel reads the Chinese text as UTF-8."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: safe_cell(v) for k, v in row.items()})
