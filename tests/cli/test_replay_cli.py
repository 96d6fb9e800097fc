"""`yuqing replay` refuses bad arguments with a one-line error and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.events import Platform
from services.cli import main as cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "0"], "argument --speed: must be a positive, finite number, got '0'"),
        (["--speed", "-3"], "argument --speed: must be a positive, finite number, got '-3'"),
        (["--speed", "inf"], "argument --speed: must be a positive, finite number, got 'inf'"),
        (["--speed", "fast"], "argument --speed: expected a number such as 1 or 10, got 'fast'"),
        (["--platform", "weibo2"], "argument --platform: invalid choice: 'weibo2'"),
    ],
)
def test_bad_arguments_are_a_usage_error(tmp_path: Path, capsys, args, message):
    source = tmp_path / "posts.jsonl"
    source.write_text("{}\n")
    with pytest.raises(SystemExit) as caught:
        cli.main(["replay", str(source), *args])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_platform_is_case_insensitive_and_the_choices_are_the_platforms(tmp_path: Path, capsys):
    assert set(cli._PLATFORMS) == {p.value for p in Platform}
    missing = tmp_path / "missing.jsonl"
    assert cli.main(["replay", str(missing), "--platform", "WeiBo", "--speed", "2"]) == 2
    assert capsys.readouterr().err.strip() == f"yuqing: error: {missing}: no such file"


def test_event_time_is_refused_unless_the_stack_runs_on_event_time(tmp_path: Path, capsys, monkeypatch):
    source = tmp_path / "history.jsonl"
    source.write_text("{}\n")
    monkeypatch.delenv("YUQING_WINDOW_CLOCK", raising=False)
    assert cli.main(["replay", str(source), "--event-time"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("yuqing: error: --event-time needs a stack whose scoring windows follow event time")
    assert "YUQING_WINDOW_CLOCK=event yuqing dev" in err
    monkeypatch.setenv("YUQING_WINDOW_CLOCK", "wall")
    assert cli.main(["replay", str(source), "--event-time"]) == 2
    assert "YUQING_WINDOW_CLOCK is 'wall' here" in capsys.readouterr().err
