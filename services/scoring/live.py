"""Between tier changes: each group's live spread (SpreadSnapshot) and the forecast (TierForecast). No Kafka.

Called on the scoring worker's tick, after the tier stage has moved every group's windows to the tick's time.
Both read the window state and never write it: a snapshot is the running sums the tiers are decided on, a
per-minute series and the posts driving it; the forecast (services/scoring/forecast.py) is asked once for
every minute completed since the group's last one, so that what it emits does not depend on when ticks come.

A snapshot goes out at most every `interval_seconds` per group (the injected clock) and only when what it
shows changed. The last one sent per group is kept in memory: after a restart or a rebalance the first tick
sends each group's snapshot again, which a reader keeping the newest per group takes as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from schemas.events import Platform, SpreadPost, SpreadSnapshot, TierForecast
from schemas.labels import window_label
from services.common.clock import Clock, system_clock, utc
from services.scoring.core import ScoringState, TierStage
from services.scoring.forecast import ForecastStage
from services.scoring.windows import minute_of

__all__ = ["LiveStage"]

_TOP = 5  # posts a snapshot carries


def _minute_start(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


@dataclass
class _Sent:
    content: tuple[Any, ...]
    at: datetime  # the injected clock when it was sent


@dataclass
class LiveStage:
    """One partition's live spread and forecasts. The forecast's dedup rows (one per group and tier while a
    warning stands) are the state's "forecasts" table, saved by the caller with the rest of it."""

    tiers: TierStage
    forecast: ForecastStage
    interval_seconds: float = 15.0
    series_minutes: int = 120
    clock: Clock = system_clock
    _sent: dict[str, _Sent] = field(default_factory=dict)
    _forecast_minute: dict[str, int] = field(default_factory=dict)  # the last as_of asked, per group

    def tick(self, state: ScoringState, now: datetime) -> tuple[list[TierForecast], list[SpreadSnapshot]]:
        """Forecasts due and snapshots due at `now` (the scoring clock: wall or newest event time), for every
        group with windows in `state`. The caller produces them before it saves the forecasts table."""
        now = utc(now)
        out: list[TierForecast] = []
        snaps: list[SpreadSnapshot] = []
        wall = self.clock()
        for group in list(state.windows_meta.keys()):
            out.extend(self._forecasts(group, state, now))
            last = self._sent.get(group)
            if last is not None and (wall - last.at).total_seconds() < self.interval_seconds:
                continue
            snap = self._snapshot(group, state, now)
            content = (snap.tier, tuple(snap.counts.items()), snap.series, snap.top_posts)
            if last is not None and last.content == content:
                continue
            self._sent[group] = _Sent(content, wall)
            snaps.append(snap)
        return out, snaps

    def _forecasts(self, group: str, state: ScoringState, now: datetime) -> list[TierForecast]:
        if not self.forecast.config.enabled:
            return []
        as_of = minute_of(now) - 1  # the last complete minute
        previous = self._forecast_minute.get(group)
        if previous is not None and previous >= as_of:
            return []
        # Every minute completed since the last one asked (a replay's ticks may skip several), but none older
        # than the lead time: a warning for a crossing already due is no warning.
        first = as_of if previous is None else max(previous + 1, as_of - self.forecast.config.lead_minutes)
        self._forecast_minute[group] = as_of
        rules = self.tiers.tiers_for(group)
        longest = max(r.window_minutes for r in rules.rules)
        series = self.tiers.windows(state, group).series(group, first - longest + 1, as_of)
        current = self.tiers.tier_of(group, state)
        out: list[TierForecast] = []
        for minute in range(first, as_of + 1):
            at = _minute_start(minute + 1)
            out.extend(self.forecast.evaluate(group, series, at, rules, current, state.forecasts))
        return out

    def _snapshot(self, group: str, state: ScoringState, now: datetime) -> SpreadSnapshot:
        windows = self.tiers.windows(state, group)
        rules = self.tiers.tiers_for(group).rules
        end = minute_of(now)
        start = end - self.series_minutes + 1
        per_minute = windows.series(group, start, end)
        sums = windows.sums(group)
        longest = max(r.window_minutes for r in rules)
        top = []
        for p in self.tiers.top_posts(group, state, end - longest, end)[:_TOP]:
            try:
                top.append(
                    SpreadPost(
                        post=p["post"],
                        platform=Platform(p["platform"]),
                        spread=p["spread"],
                        excerpt=p["excerpt"][:80],
                        url=p["url"],
                    )
                )
            except (ValidationError, ValueError):
                continue  # a row no KeywordHit could have made: leave it off rather than lose the snapshot
        return SpreadSnapshot(
            # Whole seconds: the id must not hang on the microseconds of a tick.
            event_time=now.replace(microsecond=0),
            group=group,
            tier=self.tiers.tier_of(group, state),
            counts={window_label(r.window_minutes): sums.get(r.window_minutes, 0) for r in rules},
            series_start=_minute_start(start),
            series=tuple(per_minute.get(m, 0) for m in range(start, end + 1)),
            top_posts=tuple(top),
            detected_at=self.clock(),
        )
