"""The tier state machine: highest tier that holds wins at once; coming down needs hysteresis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from msgspec import Struct

from schemas.events import Tier
from services.common.config import TiersConfig

__all__ = ["TierDecision", "TierState", "decide", "held", "highest"]


class TierState(Struct, frozen=True, array_like=True, gc=False, tag="2"):
    """A rule group's tier and what its next decisions need; also its row in the "tiers" table
    (services/scoring/rows.py)."""

    tier: Tier = Tier.none
    below_since: datetime | None = None  # when spread first fell under the hysteresis band
    override: Tier | None = None
    override_by: str | None = None
    # The minute (event time) this tier was decided: the tier timeline before it is emitted and final, so a
    # late observation re-decides only from here on. None: never changed, or a row written before it existed.
    since: datetime | None = None


@dataclass(frozen=True)
class TierDecision:
    state: TierState
    previous: Tier
    reason: Literal["threshold", "cooldown", "override"] | None  # None: no change

    @property
    def changed(self) -> bool:
        return self.reason is not None and self.state.tier != self.previous


def highest(totals: dict[int, int], cfg: TiersConfig, ratio: float = 1.0) -> Tier:
    """The highest tier whose threshold x ratio the spread exceeds in its window."""
    best = Tier.none
    for rule in cfg.rules:
        if totals.get(rule.window_minutes, 0) > rule.threshold * ratio:
            tier = Tier(rule.tier)
            if tier.severity > best.severity:
                best = tier
    return best


def held(totals: dict[int, int], cfg: TiersConfig) -> Tier:
    """The highest tier that still holds under the relaxed (hysteresis) thresholds."""
    return highest(totals, cfg, cfg.downgrade_ratio)


def decide(state: TierState, totals: dict[int, int], cfg: TiersConfig, at: datetime) -> TierDecision:
    """`totals` maps window length in minutes to spread in that window ending at `at`.

    Up: at once, to the highest tier whose threshold is exceeded (10,000 is not more than 10,000).
    Down: only after spread has stayed below downgrade_ratio x threshold for downgrade_hold_minutes,
    and then to the highest tier that still holds under the relaxed thresholds.
    An operator override pins the tier until it is cleared. A change records `at` as the state's `since`.
    """
    at = at.astimezone(UTC)
    if state.override is not None:
        return TierDecision(state, state.tier, None)
    target = highest(totals, cfg)
    if target.severity > state.tier.severity:
        return TierDecision(TierState(tier=target, since=at), state.tier, "threshold")
    still = held(totals, cfg)
    if still.severity >= state.tier.severity:
        if state.below_since is not None:
            return TierDecision(TierState(tier=state.tier, since=state.since), state.tier, None)
        return TierDecision(state, state.tier, None)
    below_since = state.below_since or at
    if at - below_since >= timedelta(minutes=cfg.downgrade_hold_minutes):
        return TierDecision(TierState(tier=still, since=at), state.tier, "cooldown")
    return TierDecision(
        TierState(tier=state.tier, below_since=below_since, since=state.since), state.tier, None
    )


def set_override(
    state: TierState, tier: Tier | None, operator: str, at: datetime | None = None
) -> TierDecision:
    """Pin (tier) or release (None) the tier by hand; the change is reported with reason 'override'."""
    since = None if at is None else at.astimezone(UTC)
    if tier is None:
        return TierDecision(TierState(tier=state.tier, since=since), state.tier, "override")
    return TierDecision(
        TierState(tier=tier, override=tier, override_by=operator, since=since), state.tier, "override"
    )
