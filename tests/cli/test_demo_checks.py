"""`yuqing demo` passes only on everything the foundation issue asks for, and fails with a summary, not a
traceback."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import Deadline, Delivery, IncidentEvent, Tier
from schemas.topics import Topics
from services.cli import demo
from services.cli.main import main
from services.common.exceptions import BrokerError
from tests.factories import T0, tier_change


def _opened(deadlines: tuple[Deadline, ...]) -> IncidentEvent:
    return IncidentEvent.model_validate(
        {
            "incident_id": "i1",
            "group": "xinghe",
            "kind": "opened",
            "state": "opened",
            "tier": 3,
            "deadlines": deadlines,
            "sequence": 0,
            "event_time": T0,
        }
    )


def _delivered(latency: float | None) -> Delivery:
    return Delivery.model_validate(
        {
            "alert_id": "a",
            "dedup_key": "k",
            "channel": "demo-webhook",
            "outcome": "delivered",
            "attempt": 1,
            "latency_seconds": latency,
            "event_time": T0,
        }
    )


class _Receiver:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = [{"kind": "keyword_hits"}, {"kind": "incident_opened"}]
        self.bad_signatures = 0


def _complete() -> demo._Collector:
    c = demo._Collector("", Topics.with_prefix("y."))
    c.tier_changes = [
        tier_change(Tier.level3, Tier.none, {"8h": 1}),
        tier_change(Tier.level2, Tier.level3, {"8h": 1}),
        tier_change(Tier.level1, Tier.level2, {"8h": 1}),
    ]
    c.incidents = [_opened((Deadline(name="ack", due_at=T0 + timedelta(hours=1)),))]
    c.deliveries = [_delivered(42.0)]
    return c


def test_a_complete_run_misses_nothing() -> None:
    assert demo._missing(_complete(), _Receiver()) == []  # type: ignore[arg-type]


def test_an_incident_without_deadlines_is_not_enough() -> None:
    c = _complete()
    c.incidents = [_opened(())]
    assert demo._missing(c, _Receiver()) == ["an opened incident with its SLA deadlines"]  # type: ignore[arg-type]


def test_a_delivery_without_a_measured_latency_is_not_enough() -> None:
    c = _complete()
    c.deliveries = [_delivered(None)]
    missing = demo._missing(c, _Receiver())  # type: ignore[arg-type]
    assert missing == ["a delivered alert with its measured hit-to-alert latency"]


def test_summary_prints_the_latency_and_the_deadlines(capsys: pytest.CaptureFixture[str]) -> None:
    c = _complete()
    c.deliveries = [_delivered(30.0), _delivered(12.5), _delivered(90.0)]
    demo._summary(c, _Receiver(), 10.0, [])  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "keyword hit -> alert delivered: min 12.5s, median 30.0s, max 90.0s over 3 deliveries" in out
    assert "opened; deadlines: ack by 2026-11-21T03:00+00:00" in out


class _BrokenStack:
    log_dir = Path("/nonexistent")

    def start(self) -> None:
        raise BrokerError("java not found on PATH: install a Java 17+ runtime")

    def check(self) -> list[str]:
        return []

    def stop(self) -> None:
        return None


def test_a_failure_exits_1_with_a_summary_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "_stack_for_demo", lambda *a: _BrokenStack())
    assert main(["demo", "--timeout", "5"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "== tier changes ==" in captured.out
    assert "keyword hit -> alert delivered: NOT MEASURED" in captured.out
    assert "demo: FAILED: java not found on PATH" in captured.out
    assert "not seen: tier changes up to level 3, then 2, then 1" in captured.out
