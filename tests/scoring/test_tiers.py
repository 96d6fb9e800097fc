from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.events import Tier
from services.common import json
from services.common.config import TiersConfig
from services.scoring.rows import TABLES
from services.scoring.tiers import TierState, decide, set_override
from tests.scoring.factories import T0

CFG = TiersConfig()


def totals(h8: int = 0, h4: int = 0, h2: int = 0) -> dict[int, int]:
    return {480: h8, 240: h4, 120: h2}


def flat(n: int) -> dict[int, int]:
    return totals(n, n, n)


@pytest.mark.parametrize(
    ("spread", "expected"),
    [
        (0, Tier.none),
        (10_000, Tier.none),
        (10_001, Tier.level3),
        (50_000, Tier.level3),
        (50_001, Tier.level2),
        (100_000, Tier.level2),
        (100_001, Tier.level1),
    ],
)
def test_thresholds_are_strictly_more_than(spread: int, expected: Tier) -> None:
    d = decide(TierState(), flat(spread), CFG, T0)
    assert d.state.tier == expected
    assert d.reason == ("threshold" if expected != Tier.none else None)
    assert d.changed == (expected != Tier.none)


def test_each_tier_uses_its_own_window() -> None:
    # 10,001 only in the 8h window is level 3; 2h and 4h spreads alone decide levels 1 and 2.
    assert decide(TierState(), totals(h8=10_001), CFG, T0).state.tier == Tier.level3
    assert decide(TierState(), totals(h4=50_001), CFG, T0).state.tier == Tier.level2
    assert decide(TierState(), totals(h8=50_001), CFG, T0).state.tier == Tier.level3
    assert decide(TierState(), totals(h8=100_001, h4=100_001), CFG, T0).state.tier == Tier.level2


def test_highest_tier_wins_directly() -> None:
    d = decide(TierState(), flat(100_001), CFG, T0)
    assert d.previous == Tier.none
    assert d.state.tier == Tier.level1
    assert d.reason == "threshold"
    assert d.changed


def test_step_up_from_current_tier() -> None:
    d = decide(TierState(tier=Tier.level3), flat(50_001), CFG, T0)
    assert (d.previous, d.state.tier, d.reason) == (Tier.level3, Tier.level2, "threshold")


def test_drop_inside_hysteresis_band_keeps_tier() -> None:
    state = TierState(tier=Tier.level3)
    d = decide(state, flat(8_001), CFG, T0)
    assert d.state.tier == Tier.level3
    assert d.state.below_since is None
    assert d.reason is None
    assert not d.changed
    d = decide(state, flat(10_000), CFG, T0 + timedelta(hours=5))
    assert d.state == state


def test_below_band_must_hold_before_downgrade() -> None:
    state = TierState(tier=Tier.level3)
    d = decide(state, flat(8_000), CFG, T0)  # 80% of 10,000 is not "more than", so below the band
    assert d.state.tier == Tier.level3
    assert d.state.below_since == T0
    assert d.reason is None
    d = decide(d.state, flat(0), CFG, T0 + timedelta(minutes=14, seconds=59))
    assert d.state.tier == Tier.level3
    assert d.state.below_since == T0
    assert d.reason is None
    d = decide(d.state, flat(0), CFG, T0 + timedelta(minutes=15))
    assert d.state.tier == Tier.none
    assert d.reason == "cooldown"
    assert d.previous == Tier.level3
    assert d.changed
    assert d.state.below_since is None


def test_recovery_resets_the_hold() -> None:
    d = decide(TierState(tier=Tier.level3), flat(1_000), CFG, T0)
    assert d.state.below_since == T0
    d = decide(d.state, flat(9_000), CFG, T0 + timedelta(minutes=10))
    assert d.state.tier == Tier.level3
    assert d.state.below_since is None
    assert d.reason is None
    d = decide(d.state, flat(1_000), CFG, T0 + timedelta(minutes=20))
    assert d.state.below_since == T0 + timedelta(minutes=20)
    d = decide(d.state, flat(1_000), CFG, T0 + timedelta(minutes=30))
    assert d.state.tier == Tier.level3  # 30 min after the first drop, but only 10 after the second
    assert d.reason is None
    d = decide(d.state, flat(1_000), CFG, T0 + timedelta(minutes=35))
    assert (d.state.tier, d.reason) == (Tier.none, "cooldown")


def test_cooldown_lands_on_highest_tier_still_held() -> None:
    # Level 1; the 2h spread fell away but the 4h window still holds level 2 under relaxed thresholds.
    state = TierState(tier=Tier.level1)
    d = decide(state, totals(h8=60_000, h4=45_000, h2=1_000), CFG, T0)
    assert d.state.below_since == T0
    d = decide(d.state, totals(h8=60_000, h4=45_000, h2=1_000), CFG, T0 + timedelta(minutes=15))
    assert (d.previous, d.state.tier, d.reason) == (Tier.level1, Tier.level2, "cooldown")


def test_rise_during_hold_goes_up_and_clears_hold() -> None:
    d = decide(TierState(tier=Tier.level3), flat(0), CFG, T0)
    assert d.state.below_since == T0
    d = decide(d.state, flat(50_001), CFG, T0 + timedelta(minutes=5))
    assert (d.state.tier, d.reason, d.state.below_since) == (Tier.level2, "threshold", None)


def test_override_pins_tier() -> None:
    pinned = set_override(TierState(tier=Tier.level3), Tier.level1, "alice")
    assert pinned.reason == "override"
    assert pinned.previous == Tier.level3
    assert pinned.state.tier == Tier.level1
    assert pinned.state.override == Tier.level1
    assert pinned.state.override_by == "alice"
    state = pinned.state
    for n, later in ((0, timedelta(hours=1)), (0, timedelta(days=2)), (10**6, timedelta(days=3))):
        d = decide(state, flat(n), CFG, T0 + later)
        assert d.reason is None
        assert not d.changed
        assert d.state == state


def test_override_release_keeps_tier_then_cools_down() -> None:
    state = set_override(TierState(), Tier.level2, "alice").state
    released = set_override(state, None, "alice")
    assert released.reason == "override"
    assert released.state == TierState(tier=Tier.level2)
    d = decide(released.state, flat(0), CFG, T0)
    assert d.state.below_since == T0
    d = decide(d.state, flat(0), CFG, T0 + timedelta(minutes=15))
    assert (d.state.tier, d.reason) == (Tier.none, "cooldown")


def test_state_row_round_trip() -> None:
    codec = TABLES["tiers"]().codec
    state = TierState(tier=Tier.level2, below_since=T0, override=Tier.level1, override_by="bob", since=T0)
    assert codec.decode(codec.encode(state)) == state
    # Rows of the previous version were objects; one written before `since` existed reads as "not known".
    old = {
        "tier": 2,
        "below_since": T0.isoformat(),
        "override": 1,
        "override_by": "bob",
        "since": T0.isoformat(),
    }
    assert codec.decode(json.dumps(old)) == state
    assert codec.decode(json.dumps({"tier": 3, "below_since": None, "override": None})) == TierState(
        tier=Tier.level3
    )


def test_a_change_records_the_minute_it_was_decided() -> None:
    up = decide(TierState(), flat(10_001), CFG, T0)
    assert up.state.since == T0
    kept = decide(up.state, flat(1_000), CFG, T0 + timedelta(minutes=5))
    assert (kept.state.since, kept.state.below_since) == (T0, T0 + timedelta(minutes=5))
    back = decide(kept.state, flat(9_000), CFG, T0 + timedelta(minutes=6))
    assert (back.state.since, back.state.below_since) == (T0, None)
    down = decide(kept.state, flat(0), CFG, T0 + timedelta(minutes=20))
    assert (down.reason, down.state.since) == ("cooldown", T0 + timedelta(minutes=20))
    pinned = set_override(down.state, Tier.level1, "alice", T0 + timedelta(hours=1))
    assert pinned.state.since == T0 + timedelta(hours=1)
