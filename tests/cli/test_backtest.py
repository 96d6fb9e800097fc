"""`yuqing backtest`: the scoring core over a file, in process; the same tier changes as `yuqing demo`."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import Post, TierChange
from services.cli import main as cli
from services.cli.backtest import run_backtest
from services.cli.demo import load_sample
from services.common import json
from services.common.clock import FakeClock
from services.common.config import bundled_config_path, load_config
from services.scoring.backtest import Backtest
from services.scoring.core import HitStage, ScoringState, TierStage
from services.scoring.matcher import RuleMatcher

NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
SAMPLE = Path(__file__).resolve().parents[2] / "services" / "common" / "data" / "sample_crisis.jsonl"


def _backtest(posts: list[dict[str, Any]]) -> list[TierChange]:
    backtest = Backtest(load_config(bundled_config_path()))
    for p in posts:
        backtest.feed(Post.model_validate(p))
    return backtest.changes


def _demo_pipeline(posts: list[dict[str, Any]], speed: float = 270.0, tick: float = 30.0) -> list[TierChange]:
    """What `yuqing demo`'s scoring worker decides: the sample fed at `speed` x real time from NOW (it ends a
    minute before), hits scored as they come, and a tick at the wall clock every `tick` seconds."""
    config = load_config(bundled_config_path())
    clock = FakeClock(NOW)
    hits = HitStage(config, RuleMatcher(config.rules), clock=clock)
    tiers, state = TierStage(config, rule_version=hits.matcher.version, clock=clock), ScoringState.in_memory()
    first = datetime.fromisoformat(posts[0]["event_time"])
    next_tick = NOW + timedelta(seconds=tick)
    out: list[TierChange] = []
    for p in posts:
        post = Post.model_validate(p)
        due = NOW + (post.event_time - first) / speed
        while next_tick <= due:
            clock.set(next_tick)
            out.extend(tiers.tick(state))
            next_tick += timedelta(seconds=tick)
        clock.set(due)
        for hit in hits.process(post, state):
            out.extend(tiers.process(hit, state))
    clock.set(next_tick)
    out.extend(tiers.tick(state))
    return out


def _essence(changes: list[TierChange]) -> list[tuple[Any, ...]]:
    return [(int(c.previous), int(c.tier), c.reason, c.window_end, c.counts, c.event_id) for c in changes]


def test_backtesting_the_sample_gives_the_tier_changes_of_the_demo() -> None:
    posts = load_sample(NOW)
    backtest = _backtest(posts)
    # What tests/integration/test_demo.py requires of `yuqing demo`: 0 -> 3 -> 2 -> 1, up, by threshold.
    assert [(int(c.previous), int(c.tier), c.direction, c.reason) for c in backtest] == [
        (0, 3, "up", "threshold"),
        (3, 2, "up", "threshold"),
        (2, 1, "up", "threshold"),
    ]
    # The demo's worker saw every hit behind its wall-clock ticks (3 hours of posts in 40 s): the same
    # changes, at the same event times, with the same ids.
    assert _essence(_demo_pipeline(posts)) == _essence(backtest)
    assert _essence(_demo_pipeline(posts, speed=60.0, tick=5.0)) == _essence(backtest)


def test_a_backtest_is_the_same_whenever_it_runs() -> None:
    """detected_at is the newest event time, not the wall clock: two runs give identical output."""
    first, second = _backtest(load_sample(NOW)), _backtest(load_sample(NOW))
    assert [c.model_dump() for c in first] == [c.model_dump() for c in second]
    assert all(c.detected_at <= c.window_end for c in first)


def test_the_command_prints_the_timeline_and_writes_json_and_csv(tmp_path: Path, capsys) -> None:
    code = cli.main(
        [
            "backtest",
            str(SAMPLE),
            "--config",
            str(bundled_config_path()),
            "--json",
            str(tmp_path / "t.json"),
            "--csv",
            str(tmp_path / "t.csv"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    assert "xinghe: 0 -> 3 (up, threshold)  8h 10,055" in out
    assert "xinghe: 2 -> 1 (up, threshold)" in out
    assert "xinghe: 335 hits on 105 posts, spread 188,306" in out
    written = json.loads((tmp_path / "t.json").read_bytes())
    raw = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    expected = _backtest(raw)
    assert [c["event_id"] for c in written["tier_changes"]] == [c.event_id for c in expected]
    assert written["final_tiers"] == {"xinghe": 1}
    assert written["hits"]["xinghe"]["spread"] == 188_306
    rows = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text(encoding="utf-8-sig"))))
    assert [(r["previous"], r["tier"], r["spread_2h"]) for r in rows] == [
        (str(int(c.previous)), str(int(c.tier)), str(c.counts["2h"])) for c in expected
    ]
    assert rows[0]["window_end"] == expected[0].window_end.isoformat()


def test_progress_goes_to_stderr_when_asked(tmp_path: Path, capsys) -> None:
    args = ["backtest", str(SAMPLE), "--json", str(tmp_path / "t.json"), "--csv", str(tmp_path / "t.csv")]
    assert cli.main([*args, "--progress"]) == 0
    assert "backtest [########################] 100.0%  418 posts  0 bad" in capsys.readouterr().err


def _hostile_config(path: Path) -> Path:
    path.write_text(
        "rules:\n  groups:\n    - name: '=HYPERLINK(\"x\")'\n      brands: ['星河电器']\n",
        encoding="utf-8",
    )
    return path


def test_csv_cells_are_neutralised_and_the_terminal_sees_no_escapes(tmp_path: Path) -> None:
    source = tmp_path / "posts.jsonl"
    t = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    lines = [
        {
            "platform": "weibo",
            "post_id": f"p{n}",
            "text": "星河电器空调起火了\x1b[31m要求退款",
            "published_at": t.isoformat(),
            "event_time": (t + timedelta(minutes=n)).isoformat(),
            "engagement": {"reposts": 6_000},
        }
        for n in range(2)
    ]
    source.write_bytes(b"\n".join(json.dumps(x) for x in lines) + b"\n{not json\n")
    out, err = io.StringIO(), io.StringIO()
    code = run_backtest(
        source,
        _hostile_config(tmp_path / "rules.yaml"),
        json_out=tmp_path / "t.json",
        csv_out=tmp_path / "t.csv",
        out=out,
        err=err,
    )
    assert code == 0
    assert "\x1b" not in out.getvalue()
    assert "2 posts, 1 bad lines" in out.getvalue()
    assert err.getvalue().startswith("line 3: invalid JSON")
    (row,) = csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text(encoding="utf-8-sig")))
    assert row["group"] == '\'=HYPERLINK("x")'
    assert row["tier"] == "3"


def test_native_payloads_without_an_observation_time_take_their_publish_time(tmp_path: Path) -> None:
    source = tmp_path / "weibo.jsonl"
    payload = {
        "mid": "5012345678901234",
        "text": "星河电器空调起火了，要求退款",
        "created_at": "Sat Mar 01 09:00:00 +0800 2025",
        "reposts_count": 4000,
        "comments_count": 3000,
        "attitudes_count": 3001,
        "user": {"screen_name": "网友"},
    }
    source.write_bytes(json.dumps(payload) + b"\n")
    out = io.StringIO()
    code = run_backtest(
        source, None, platform="weibo", json_out=tmp_path / "t.json", csv_out=tmp_path / "t.csv", out=out
    )
    assert code == 0
    assert "1 without an observation time took their publish time" in out.getvalue()
    written = json.loads((tmp_path / "t.json").read_bytes())
    (change,) = written["tier_changes"]
    assert change["window_end"] == "2025-03-01T01:01:00Z"
    assert change["counts"]["8h"] == 10_001


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such file"),
        (["{src}", "--config", "nope.yaml"], "--config nope.yaml: no such file"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    source = tmp_path / "posts.jsonl"
    source.write_text("")
    argv = ["backtest", *(a.format(src=source) for a in args)]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip().endswith(message)
