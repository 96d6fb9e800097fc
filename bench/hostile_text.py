"""Hostile text benchmark: seconds to clean adversarial markup, parse adversarial times and match
adversarial posts, by size.

    .venv/bin/python bench/hostile_text.py [--sizes 4000,20000,64000]

Each cleaning input is one of the strings that made the former regexes backtrack (audit B1); each matcher
input names brands and tags thousands of times, which made the matcher's pairwise span checks quadratic.
Time must grow about linearly with size: a four times larger input may take about four times as long, not
sixteen. (A post's text is at most 20,000 characters; larger sizes show the growth.)
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.config import bundled_config_path, load_config
from services.ingest.adapters._fields import Reading, clean_text
from services.ingest.adapters.forum import map_payload as forum
from services.ingest.timeparse import parse_time
from services.scoring.matcher import RuleMatcher

_R = Reading(now=datetime.now(UTC))
_M = RuleMatcher(load_config(bundled_config_path()).rules)
_T = 1795230000
CASES = {
    "img alt": lambda n: clean_text("<img alt='" * (n // 10)),
    "script": lambda n: clean_text("<script>" * (n // 8)),
    "tags": lambda n: clean_text("<a" * (n // 2)),
    "comment": lambda n: clean_text("<!--" * (n // 4)),
    "bbcode quote": lambda n: forum({"tid": 1, "message": "[quote]" * (n // 7), "dbdateline": _T}, _R),
    "bbcode attr": lambda n: forum({"tid": 1, "message": "[a=" * (n // 3), "dbdateline": _T}, _R),
    "time blanks": lambda n: _refused("2026-11-21" + " " * n + "x"),
    "match: brand, tag, other brand": lambda n: _M.match(("星河电器投诉，小米差评。" * n)[:n]),
    "match: @brand nicks and tags": lambda n: _M.match(("@星河电器 投诉 @小米 避雷 " * n)[:n]),
    "match: nested tags": lambda n: _M.match(("星河电器集体维权" * n)[:n]),
}


def _refused(value: str) -> None:
    try:
        parse_time(value)
    except ValueError:
        return
    raise AssertionError("a hostile time was accepted")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="4000,20000,64000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    print("| input | " + " | ".join(f"{n // 1000} KB" for n in sizes) + " |")
    print("| --- |" + " --- |" * len(sizes))
    for name, run in CASES.items():
        cells = []
        for n in sizes:
            t0 = time.perf_counter()
            try:
                run(n)
            except Exception as exc:  # an AdapterError (no text left) is an answer, and fast is what counts
                if type(exc).__name__ != "AdapterError":
                    raise
            cells.append(f"{(time.perf_counter() - t0) * 1000:.1f} ms")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
