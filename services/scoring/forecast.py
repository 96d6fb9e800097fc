"""When will a group's spread cross a tier's threshold if its recent trend holds? No Kafka here.

The method and its evaluation are in docs/forecast.md. In short, over the last `fit_minutes` complete minutes:
the inflow rate is their mean, lowered by their Theil–Sen slope when that slope is falling (a rising slope is
never extrapolated); the window sum is projected minute by minute as the sum now, plus that inflow, minus the
buckets that slide out of the window (known exactly); a normal band from the minutes' own scatter (the
rate's error and the noise of the minutes to come) gives the earliest and latest crossing at
`min_confidence`. A warning needs the latest crossing within the lead time.

A forecast never changes a tier. Dedup state (one small row per group and tier while a warning stands) lives
in a table the caller hands in ("forecasts", services/scoring/rows.py), as the rest of the scoring state does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import NormalDist, median
from typing import Literal

from msgspec import Struct

from schemas.events import Tier, TierForecast, TierForecastInputs
from schemas.labels import window_label
from services.common.clock import Clock, system_clock, utc
from services.common.config import ForecastConfig, TierRule, TiersConfig
from services.common.partitioned import Table
from services.scoring.exceptions import BadSeries

__all__ = ["METHOD", "Estimate", "ForecastStage", "ForecastTrack", "estimate"]

METHOD = "mean-rate-falling-trend-1"

Reason = Literal["ok", "above", "sparse", "spike", "no_crossing", "beyond_lead", "low_confidence"]

_MAX_SPREAD = 10**12  # as events bound a count: more in one minute is a corrupt bucket, not a crisis
_NORMAL = NormalDist()


def _minute_start(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


@dataclass(frozen=True, slots=True)
class Estimate:
    """One tier's estimate after minute `as_of`. Times are minutes after the end of that minute ("now")."""

    tier: Tier
    rule: TierRule
    as_of: int  # the last complete minute used (epoch minutes)
    current: int  # spread in the tier's window ending with as_of
    reason: Reason  # "ok": within the lead time with enough confidence; else why not
    active: int = 0  # minutes of the fit window with any spread
    rate: float = 0.0  # projected spread per minute now
    rate_low: float = 0.0
    rate_high: float = 0.0
    trend: float = 0.0  # spread per minute per minute; never above zero
    expected: float | None = None  # None: not within the horizon (twice the lead time)
    earliest: float | None = None
    latest: float | None = None
    confidence: float = 0.0  # the highest chance, at any minute within the lead time, of being over

    @property
    def qualifies(self) -> bool:
        return self.reason == "ok"


def _checked(series: Mapping[int, int], lo: int, hi: int) -> list[int]:
    """Minutes lo..hi of the series; a minute without a bucket counted no spread, as the windows see it."""
    out = []
    for minute in range(lo, hi + 1):
        v = series.get(minute, 0)
        if type(v) is not int or not 0 <= v <= _MAX_SPREAD:
            raise BadSeries(
                f"spread of minute {minute} is {v!r}; expected an integer from 0 to {_MAX_SPREAD}"
            )
        out.append(v)
    return out


def _first(mu: list[float], sd: list[float], need: list[float], k: float) -> float:
    """Minutes until mu + k x sd first exceeds need (linear within the minute); inf if not in the horizon."""
    before = mu[0] + k * sd[0] - need[0]
    for h in range(1, len(mu)):
        gap = mu[h] + k * sd[h] - need[h]
        if gap > 0:
            return h - 1 + before / (before - gap)
        before = gap
    return math.inf


def estimate(
    series: Mapping[int, int], as_of: int, tier: Tier, rule: TierRule, config: ForecastConfig
) -> Estimate:
    """The estimate for one tier rule from the per-minute spread `series` ({epoch minute: spread}).

    Reads minutes up to `as_of` only: the caller passes the last complete minute, so that every evaluation
    within a minute, and a replay of it, sees the same numbers. Raises BadSeries on a value that is not a
    count.
    """
    window, fit, lead = rule.window_minutes, config.fit_minutes, config.lead_minutes
    horizon = 2 * lead
    current = sum(_checked(series, as_of - window + 1, as_of))
    if current > rule.threshold:
        # Already over: the tier stage decides, a forecast has nothing to add.
        return Estimate(tier=tier, rule=rule, as_of=as_of, current=current, reason="above")
    y = _checked(series, as_of - fit + 1, as_of)
    active = sum(1 for v in y if v > 0)
    total = sum(y)
    if active < config.min_active_minutes:
        return Estimate(tier=tier, rule=rule, as_of=as_of, current=current, reason="sparse", active=active)
    if max(y) > config.max_minute_share * total:
        # One minute carries the fit window: a spike, not a trend. It still counts in the window sums.
        return Estimate(tier=tier, rule=rule, as_of=as_of, current=current, reason="spike", active=active)
    level = total / fit  # the mean rate, at the window's centre, fit / 2 minutes before now
    slope = median((y[j] - y[i]) / (j - i) for i in range(fit) for j in range(i + 1, fit))
    centre = (fit - 1) / 2
    var = sum((v - level - slope * (k - centre)) ** 2 for k, v in enumerate(y)) / (fit - 2)
    # A falling rate is projected (a spike dying, a story cooling); a rising one is not: a fit this short
    # cannot tell acceleration from noise, and extrapolating it warns on every plateau's random upswing.
    trend = min(slope, 0.0)
    z = _NORMAL.inv_cdf(config.min_confidence)
    # Minute as_of - window + h leaves the window when minute as_of + h comes in: known, not projected.
    out = _checked(series, as_of - window + 1, as_of - window + horizon)
    mu, sd, need = [0.0], [0.0], [float(rule.threshold - current)]
    for h in range(1, horizon + 1):
        rate = level + trend * (fit / 2 + min(h - 0.5, fit))
        mu.append(mu[-1] + max(rate, 0.0))
        # The rate's own error (var / fit, over h minutes) and the scatter of the h minutes to come.
        sd.append(math.sqrt(var * (h * h / fit + h)))
        need.append(need[-1] + out[h - 1])
    expected, earliest, latest = (_first(mu, sd, need, k) for k in (0.0, z, -z))
    confidence = max(
        _NORMAL.cdf((mu[h] - need[h]) / sd[h]) if sd[h] > 0 else float(mu[h] > need[h])
        for h in range(1, lead + 1)
    )
    reason: Reason
    if math.isinf(expected):
        reason = "no_crossing"
    elif expected > lead:
        reason = "beyond_lead"
    elif latest > lead:
        reason = "low_confidence"
    else:
        reason = "ok"
    rate_now = max(0.0, level + trend * fit / 2)
    error = z * math.sqrt(var / fit)
    return Estimate(
        tier=tier,
        rule=rule,
        as_of=as_of,
        current=current,
        reason=reason,
        active=active,
        rate=rate_now,
        rate_low=max(0.0, rate_now - error),
        rate_high=rate_now + error,
        trend=trend,
        expected=None if math.isinf(expected) else expected,
        earliest=None if math.isinf(earliest) else earliest,
        latest=None if math.isinf(latest) else latest,
        confidence=confidence,
    )


class ForecastTrack(Struct, frozen=True, array_like=True, gc=False, tag="2"):
    """Dedup state of one group and tier while a warning stands; also its row in the "forecasts" table
    (keyed group|tier, services/scoring/rows.py)."""

    last: int  # the last minute evaluated (as_of)
    expected: float  # expected crossing of the warning emitted last, epoch minutes
    quiet_since: int | None = None  # first minute evaluated since then that did not qualify


class ForecastStage:
    """Per-minute spread + tier rules + current tier -> TierForecast events, deduplicated.

    For each tier more severe than the current one: the first qualifying estimate emits a warning; while it
    stands, another is emitted only when the expected crossing moves by more than `reemit_minutes`. The
    warning stands until the group reaches that tier, or until no estimate has qualified for `lead_minutes`;
    only then can a new first warning come. Call `evaluate` for every group each tick: a minute is
    evaluated once, so calls within the same minute return nothing new.
    """

    def __init__(self, config: ForecastConfig, clock: Clock = system_clock) -> None:
        self.config = config
        self.clock = clock

    def estimates(
        self, series: Mapping[int, int], now: datetime, tiers: TiersConfig, current: Tier
    ) -> list[Estimate]:
        """An estimate for every tier more severe than `current`, from the minutes before now's minute."""
        as_of = int(utc(now).timestamp() // 60) - 1
        return [
            estimate(series, as_of, Tier(r.tier), r, self.config)
            for r in tiers.rules
            if Tier(r.tier).severity > current.severity
        ]

    def evaluate(
        self,
        group: str,
        series: Mapping[int, int],
        now: datetime,
        tiers: TiersConfig,
        current: Tier,
        state: Table[ForecastTrack],
    ) -> list[TierForecast]:
        """The forecasts due at `now` for `group`, whose tier is `current`. The caller produces them before
        it saves `state` (as with every scoring output), so that a crash repeats a forecast, never loses it.
        """
        if not self.config.enabled:
            return []
        as_of = int(utc(now).timestamp() // 60) - 1
        out = []
        for rule in tiers.rules:
            tier = Tier(rule.tier)
            key = f"{group}|{rule.tier}"
            track = state.get(key)
            if tier.severity <= current.severity:
                if track is not None:
                    state.delete(key)  # reached (or pinned at or above it): the warning is over
                continue
            if track is not None and as_of <= track.last:
                continue
            est = estimate(series, as_of, tier, rule, self.config)
            stored, (track, due) = track, self._step(track, est)
            if track is None:
                state.delete(key)
            elif track != stored:
                state.set(key, track)
            if due:
                out.append(self._event(group, est, tiers, series, current))
        return out

    def _step(self, track: ForecastTrack | None, est: Estimate) -> tuple[ForecastTrack | None, bool]:
        as_of = est.as_of
        if est.expected is None or not est.qualifies:
            if track is None:
                return None, False
            quiet = as_of if track.quiet_since is None else track.quiet_since
            if as_of - quiet >= self.config.lead_minutes:
                return None, False
            return ForecastTrack(as_of, track.expected, quiet), False
        expected = as_of + 1 + est.expected
        if track is None or abs(expected - track.expected) > self.config.reemit_minutes:
            return ForecastTrack(as_of, expected), True
        return ForecastTrack(as_of, track.expected), False

    def _event(
        self, group: str, est: Estimate, tiers: TiersConfig, series: Mapping[int, int], current: Tier
    ) -> TierForecast:
        expected, earliest, latest = est.expected, est.earliest, est.latest
        if expected is None or earliest is None or latest is None:
            raise ValueError("only a qualifying estimate makes a forecast")
        now = _minute_start(est.as_of + 1)

        def at(minutes: float) -> datetime:
            # Whole seconds: an id must not hang on float noise in the last digits.
            return now + timedelta(seconds=round(minutes * 60))

        window, fit = est.rule.window_minutes, self.config.fit_minutes
        counts = {
            window_label(r.window_minutes): sum(_checked(series, est.as_of - r.window_minutes + 1, est.as_of))
            for r in tiers.rules
        }
        leaving = _checked(series, est.as_of - window + 1, est.as_of - window + math.ceil(expected))
        return TierForecast(
            event_time=now,
            group=group,
            tier=est.tier,
            current_tier=current,
            expected_at=at(expected),
            earliest_at=at(earliest),
            latest_at=at(latest),
            confidence=round(est.confidence, 4),
            lead_minutes=self.config.lead_minutes,
            inputs=TierForecastInputs(
                threshold=est.rule.threshold,
                window_minutes=window,
                current=est.current,
                counts=counts,
                fit_start=_minute_start(est.as_of - fit + 1),
                fit_minutes=fit,
                active_minutes=est.active,
                rate=round(est.rate, 3),
                rate_low=round(est.rate_low, 3),
                rate_high=round(est.rate_high, 3),
                trend=round(est.trend, 3),
                outflow=sum(leaving),
            ),
            method=METHOD,
            detected_at=self.clock(),
        )
