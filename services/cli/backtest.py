"""`yuqing backtest`: the scoring core over a file of recorded posts, in process, with no Kafka.

Part of the `yuqing` entry point, like demo.py: it reads lines as `yuqing replay` does (the ingest
adapters) and scores them as the scoring worker does with event-time windows (scoring's Backtest), then
prints the tier timeline and the hits per rule group and writes the timeline as JSON and CSV.
"""

from __future__ import annotations

import sys
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from services.common import json
from services.common.config import load_config
from services.common.csvfile import write_csv
from services.common.progress import ProgressBar
from services.ingest.exceptions import ReplayError
from services.ingest.replay import parse_line
from services.scoring.backtest import Backtest, timeline_row

__all__ = ["run_backtest"]

_SHOW_BAD = 5  # bad lines named on stderr; all are counted
_EXCERPT = 40


def run_backtest(
    path: Path,
    config_path: Path | None,
    *,
    platform: str | None = None,
    json_out: Path,
    csv_out: Path,
    progress: bool | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Backtest `path` under the rules of `config_path` (the bundled example when None); 0 when done."""
    out, err = out or sys.stdout, err or sys.stderr
    config = load_config(config_path)
    backtest = Backtest(config)
    bar = _Progress(
        path.stat().st_size, err if (progress if progress is not None else err.isatty()) else None
    )
    bad = published = read = number = 0
    placeholder = datetime.now(UTC)  # replaced by the publish time below: no line keeps it
    with path.open("rb") as source:
        for raw in source:
            number += 1
            read += len(raw)
            line = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
            if not line.strip():
                continue
            try:
                post, explicit = parse_line(line, platform, placeholder, publish_time=True)
            except ReplayError as exc:
                bad += 1
                if bad <= _SHOW_BAD:
                    print(f"line {number}: {exc}", file=err)
                continue
            published += not explicit
            backtest.feed(post)
            bar.show(read, backtest.posts, bad)
    bar.show(read, backtest.posts, bad, final=True)
    rows = [timeline_row(c) for c in backtest.changes]
    _report(out, path, backtest, rows, bad, published)
    json_out.write_bytes(
        json.dumps(
            {
                "file": str(path),
                "config": str(config_path) if config_path else "bundled example",
                "rule_version": backtest.rule_version,
                "posts": backtest.posts,
                "bad_lines": bad,
                "publish_time_used": published,
                "timeline": rows,
                "tier_changes": [c.model_dump(mode="json") for c in backtest.changes],
                "hits": {g: h.as_dict() for g, h in sorted(backtest.groups.items())},
                "final_tiers": backtest.tiers(),
            }
        )
    )
    fields = list(dict.fromkeys(k for row in rows for k in row)) or list(_EMPTY_FIELDS)
    write_csv(csv_out, rows, fields)
    print(f"timeline written to {json_out} and {csv_out}", file=out)
    return 0


_EMPTY_FIELDS = ("window_end", "detected_at", "group", "previous", "tier", "direction", "reason", "event_id")


def _report(
    out: TextIO, path: Path, backtest: Backtest, rows: list[dict[str, Any]], bad: int, published: int
) -> None:
    extra = f"; {published} without an observation time took their publish time" if published else ""
    print(f"backtest of {path}: {backtest.posts} posts, {bad} bad lines{extra}", file=out)
    print("\n== tier timeline (window end, UTC) ==", file=out)
    if not rows:
        print("  no tier change", file=out)
    for change in backtest.changes:
        counts = "  ".join(f"{label} {n:,}" for label, n in change.counts.items())
        print(
            f"  {change.window_end.isoformat(timespec='minutes')}  {_text(change.group)}: "
            f"{int(change.previous)} -> {int(change.tier)} ({change.direction}, {change.reason})  {counts}",
            file=out,
        )
        for post in change.top_posts[:3]:
            print(
                f"      {_text(str(post.get('post')))}  {post.get('spread', 0):,}  "
                f"{_text(str(post.get('excerpt', '')))[:_EXCERPT]}",
                file=out,
            )
    print("\n== hits per rule group ==", file=out)
    for group, hits in sorted(backtest.groups.items()):
        terms = ", ".join(f"{_text(t)} {n}" for t, n in hits.terms.most_common(5))
        late = f", {hits.late} too late to count" if hits.late else ""
        print(
            f"  {_text(group)}: {hits.hits} hits on {len(hits.posts)} posts, spread {hits.spread:,}{late}"
            + (f"; terms: {terms}" if terms else ""),
            file=out,
        )
    final = ", ".join(f"{_text(g)} {t}" for g, t in backtest.tiers().items()) or "none"
    print(f"\nfinal tiers: {final}\n", file=out)


def _text(value: str) -> str:
    """Outside text made safe for a terminal: control and format characters (escape sequences) dropped."""
    return "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in value)


class _Progress(ProgressBar):
    """One carriage-return line on stderr: bar, percent of the file, posts and bad lines."""

    label = "backtest"

    def detail(self, now: float, *counts: int) -> str:
        posts, bad = counts
        return f"{posts:,} posts  {bad:,} bad"
