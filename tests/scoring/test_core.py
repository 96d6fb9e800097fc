from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.events import Engagement, KeywordHit, Platform, Tier, TierChange
from services.common.clock import FakeClock
from services.common.exceptions import ConfigError
from services.scoring.core import HitStage, ScoringState, TierStage
from services.scoring.matcher import RuleMatcher
from services.scoring.windows import LateEvent
from tests.scoring.factories import T0, XINGHE_CONFIG, make_post

ROOT_TEXT = "星河电器空调起火了，要求退款"


@pytest.fixture(scope="module")
def matcher() -> RuleMatcher:
    return RuleMatcher(XINGHE_CONFIG.rules)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + timedelta(seconds=5))


@pytest.fixture
def hits(matcher: RuleMatcher, clock: FakeClock) -> HitStage:
    return HitStage(XINGHE_CONFIG, matcher, clock=clock)


@pytest.fixture
def tiers(clock: FakeClock) -> TierStage:
    return TierStage(XINGHE_CONFIG, rule_version="v-test", clock=clock)


@pytest.fixture
def state() -> ScoringState:
    return ScoringState.in_memory()


# ---- HitStage ---------------------------------------------------------------------------------------


def test_matching_post_yields_one_first_seen_hit(
    hits: HitStage, state: ScoringState, clock: FakeClock
) -> None:
    post = make_post(reposts=100, comments=20, likes=30)
    (hit,) = hits.process(post, state)
    assert hit.group == "xinghe"
    assert hit.first_seen is True
    assert hit.delta == Engagement(reposts=100, comments=20, likes=30)
    assert hit.delta.total == 150
    assert hit.cumulative.total == 150
    assert hit.platform == Platform.weibo
    assert hit.post_id == "p1"
    assert hit.thread_key == "weibo:p1"
    assert hit.snapshot_id == post.event_id
    assert hit.event_time == T0
    assert hit.detected_at == clock()
    assert hit.sentiment < 0
    assert hit.demand in {"refund", "safety"}
    assert {m.term for m in hit.matches} >= {"星河电器", "起火"}
    assert state.thread_groups == {"weibo:p1": ["xinghe"]}


def test_non_matching_post_yields_nothing(hits: HitStage, state: ScoringState) -> None:
    assert hits.process(make_post(text="今天天气真好", reposts=1000), state) == []
    assert hits.process(make_post(post_id="p2", text="星河电器发布新品", reposts=1000), state) == []
    assert state.snapshots == {}
    assert state.seen == {}


def test_same_snapshot_again_yields_no_hit(hits: HitStage, state: ScoringState) -> None:
    post = make_post(reposts=100)
    assert len(hits.process(post, state)) == 1
    assert hits.process(post, state) == []
    assert hits.process(make_post(reposts=100), state) == []


def test_newer_snapshot_yields_delta_only(hits: HitStage, state: ScoringState) -> None:
    hits.process(make_post(reposts=100, comments=10), state)
    later = make_post(event_time=T0 + timedelta(minutes=10), reposts=130, comments=15, likes=5)
    (hit,) = hits.process(later, state)
    assert hit.first_seen is False
    assert hit.delta == Engagement(reposts=30, comments=5, likes=5)
    assert hit.cumulative.total == 150
    assert hit.snapshot_id == later.event_id


def test_older_snapshot_yields_no_hit(hits: HitStage, state: ScoringState) -> None:
    hits.process(make_post(event_time=T0 + timedelta(minutes=10), reposts=100), state)
    assert hits.process(make_post(event_time=T0, reposts=50), state) == []


def test_newer_snapshot_without_growth_yields_no_hit(hits: HitStage, state: ScoringState) -> None:
    hits.process(make_post(reposts=100), state)
    assert hits.process(make_post(event_time=T0 + timedelta(minutes=1), reposts=90), state) == []
    (hit,) = hits.process(make_post(event_time=T0 + timedelta(minutes=2), reposts=110), state)
    assert hit.delta.total == 10


def test_repost_counts_toward_root_group(hits: HitStage, state: ScoringState) -> None:
    hits.process(make_post(post_id="root", reposts=10), state)
    repost = make_post(
        post_id="r1",
        text="转发微博",
        root_post_id="root",
        event_time=T0 + timedelta(minutes=3),
        reposts=4,
        comments=2,
        likes=1,
    )
    (hit,) = hits.process(repost, state)
    assert hit.group == "xinghe"
    assert hit.post_id == "r1"
    assert hit.thread_key == "weibo:root"
    assert hit.first_seen is True
    assert hit.matches == ()
    assert hit.delta.total == 7


def test_repost_of_unmatched_root_yields_nothing(hits: HitStage, state: ScoringState) -> None:
    assert hits.process(make_post(post_id="root", text="今天天气真好", reposts=10), state) == []
    repost = make_post(post_id="r1", text="转发微博", root_post_id="root", reposts=5)
    assert hits.process(repost, state) == []


def test_repost_on_other_platform_does_not_inherit(hits: HitStage, state: ScoringState) -> None:
    hits.process(make_post(post_id="root", reposts=10), state)
    repost = make_post(
        post_id="r1", text="转发微博", root_post_id="root", platform=Platform.douyin, reposts=5
    )
    assert hits.process(repost, state) == []


# ---- TierStage --------------------------------------------------------------------------------------


def _escalate(hit_stage: HitStage, tier_stage: TierStage, state: ScoringState) -> list[TierChange]:
    """One post growing 10,001 -> 50,001 -> 100,001 within ten minutes, fed through both stages."""
    changes: list[TierChange] = []
    for minutes, spread in ((0, 10_001), (5, 50_001), (10, 100_001)):
        post = make_post(post_id="root", event_time=T0 + timedelta(minutes=minutes), reposts=spread)
        for hit in hit_stage.process(post, state):
            changes.extend(tier_stage.process(hit, state))
    return changes


def test_tier_changes_up_in_order(hits: HitStage, tiers: TierStage, state: ScoringState) -> None:
    changes = _escalate(hits, tiers, state)
    assert [(c.previous, c.tier) for c in changes] == [
        (Tier.none, Tier.level3),
        (Tier.level3, Tier.level2),
        (Tier.level2, Tier.level1),
    ]
    assert all(c.direction == "up" and c.reason == "threshold" for c in changes)
    assert all(c.group == "xinghe" and c.rule_version == "v-test" for c in changes)
    assert [c.counts for c in changes] == [
        {"8h": 10_001, "4h": 10_001, "2h": 10_001},
        {"8h": 50_001, "4h": 50_001, "2h": 50_001},
        {"8h": 100_001, "4h": 100_001, "2h": 100_001},
    ]
    assert [c.window_end for c in changes] == [T0 + timedelta(minutes=m) for m in (1, 6, 11)]
    assert changes[-1].platform_mix == {"weibo": 100_001}
    assert changes[-1].top_posts[0]["post"] == "weibo:root"
    assert changes[-1].top_posts[0]["spread"] == 100_001
    assert len({c.event_id for c in changes}) == 3
    assert state.tiers["xinghe"]["tier"] == int(Tier.level1)


def test_tier_change_ids_are_deterministic(matcher: RuleMatcher) -> None:
    def run(detected: timedelta) -> list[TierChange]:
        clock = FakeClock(T0 + detected)
        return _escalate(
            HitStage(XINGHE_CONFIG, matcher, clock=clock),
            TierStage(XINGHE_CONFIG, clock=clock),
            ScoringState.in_memory(),
        )

    first, second = run(timedelta(0)), run(timedelta(hours=3))
    assert len(first) == 3
    assert [c.event_id for c in first] == [c.event_id for c in second]
    assert [c.detected_at for c in first] != [c.detected_at for c in second]


def test_hit_below_threshold_emits_nothing(tiers: TierStage, state: ScoringState, hits: HitStage) -> None:
    (hit,) = hits.process(make_post(reposts=10_000), state)
    assert tiers.process(hit, state) == []
    assert state.tiers["xinghe"]["tier"] == int(Tier.none)


def test_tick_brings_tier_down_by_cooldown(
    hits: HitStage, tiers: TierStage, state: ScoringState, clock: FakeClock
) -> None:
    assert len(_escalate(hits, tiers, state)) == 3
    clock.set(T0 + timedelta(hours=9))
    down: list[TierChange] = []
    down.extend(tiers.tick(state))
    clock.advance(minutes=16)
    down.extend(tiers.tick(state))
    for _ in range(4):  # any further steps down
        clock.advance(minutes=16)
        down.extend(tiers.tick(state))
    assert down
    assert all(c.reason == "cooldown" and c.direction == "down" for c in down)
    assert down[0].previous == Tier.level1
    assert down[-1].tier == Tier.none
    assert state.tiers["xinghe"]["tier"] == int(Tier.none)
    assert down[-1].counts == {"8h": 0, "4h": 0, "2h": 0}
    # Quiet and already at none: nothing more to report.
    clock.advance(hours=1)
    assert tiers.tick(state) == []


def test_tick_within_hold_keeps_tier(
    hits: HitStage, tiers: TierStage, state: ScoringState, clock: FakeClock
) -> None:
    _escalate(hits, tiers, state)
    clock.set(T0 + timedelta(hours=9))
    assert tiers.tick(state) == []
    clock.advance(minutes=14)
    assert tiers.tick(state) == []
    assert state.tiers["xinghe"]["tier"] == int(Tier.level1)


def test_late_hit_beyond_grace_raises(hits: HitStage, tiers: TierStage, state: ScoringState) -> None:
    for hit in hits.process(make_post(post_id="a", event_time=T0 + timedelta(minutes=30), reposts=5), state):
        tiers.process(hit, state)
    (late,) = hits.process(make_post(post_id="b", event_time=T0, reposts=5), state)
    with pytest.raises(LateEvent):
        tiers.process(late, state)


def test_override_pins_tier_in_stage(hits: HitStage, tiers: TierStage, state: ScoringState) -> None:
    change = tiers.override("xinghe", Tier.level1, "alice", state)
    assert change is not None
    assert (change.previous, change.tier, change.reason, change.operator) == (
        Tier.none,
        Tier.level1,
        "override",
        "alice",
    )
    (hit,) = hits.process(make_post(reposts=5), state)
    assert tiers.process(hit, state) == []
    assert state.tiers["xinghe"]["override"] == int(Tier.level1)


def test_keyword_hit_id_depends_on_group_and_snapshot(hits: HitStage, state: ScoringState) -> None:
    post = make_post(reposts=1)
    (hit,) = hits.process(post, state)
    again = KeywordHit.model_validate(hit.model_dump(exclude={"event_id"}))
    assert again.event_id == hit.event_id


def test_replayed_hit_is_counted_once(hits: HitStage, tiers: TierStage, state: ScoringState) -> None:
    """A crash can replay a hit whose snapshot write was lost: the windows count it once."""
    post = make_post(post_id="p1", reposts=3000, comments=3000, likes=4001)
    [hit] = hits.process(post, state)
    assert [int(c.tier) for c in tiers.process(hit, state)] == [3]
    assert tiers.process(hit, state) == []
    sums = tiers._windows(state, "xinghe").sums("xinghe")
    assert sums[480] == 10_001


def test_group_grace_overrides_default(clock: FakeClock) -> None:
    """A group's own tiers section sets its grace: 40 minutes late counts there, not under the default 10."""
    config = XINGHE_CONFIG.model_validate(
        {
            "rules": {
                "groups": [
                    {"name": "xinghe", "brands": ["星河电器"], "tiers": {"grace_minutes": 60}},
                    {"name": "strict", "brands": ["格力"]},
                ]
            }
        }
    )
    hits = HitStage(config, RuleMatcher(config.rules), clock=clock)
    tiers, state = TierStage(config, clock=clock), ScoringState.in_memory()
    for text, pid in (("星河电器空调起火了", "a"), ("格力的空调起火了", "b")):
        for hit in hits.process(
            make_post(post_id=pid, text=text, event_time=T0 + timedelta(minutes=40)), state
        ):
            tiers.process(hit, state)
    (late,) = hits.process(make_post(post_id="c", text="星河电器空调起火了", event_time=T0, reposts=7), state)
    tiers.process(late, state)
    assert state.buckets[f"xinghe|{int(T0.timestamp() // 60)}"] == {"weibo": 7}
    (late,) = hits.process(make_post(post_id="d", text="格力的空调起火了", event_time=T0, reposts=7), state)
    with pytest.raises(LateEvent):
        tiers.process(late, state)


# -- retention: tracked posts are forgotten, and forgetting never counts a post twice ----------------------


def test_posts_not_recrawled_within_the_horizon_are_forgotten(hits: HitStage, state: ScoringState) -> None:
    hits.process(make_post(post_id="old", likes=10), state)
    hits.process(make_post(post_id="kept", event_time=T0 + timedelta(hours=2), likes=10), state)
    # The newest snapshot held sets "now" (event time): 73 h after "old" was last seen, 71 h after "kept".
    hits.process(make_post(post_id="new", event_time=T0 + timedelta(hours=73), likes=10), state)
    assert hits.expire(state) == 1
    assert set(state.snapshots) == {"weibo:kept", "weibo:new"}
    assert state.snapshots["weibo:kept"][4] == ["xinghe"]  # its hit mark went with it
    assert hits.expire(state) == 0  # nothing older left


def test_an_older_workers_hit_marks_are_honoured_and_forgotten(hits: HitStage, state: ScoringState) -> None:
    # Written before the marks moved into the snapshot row: a four-item row and a marker in `seen`.
    state.snapshots["weibo:p"] = [0, 0, 10, T0.isoformat()]
    state.seen["weibo:p|xinghe"] = True
    (again,) = hits.process(make_post(post_id="p", event_time=T0 + timedelta(hours=1), likes=15), state)
    assert (again.first_seen, again.delta.total) == (False, 5)
    assert state.snapshots["weibo:p"] == [0, 0, 15, (T0 + timedelta(hours=1)).isoformat(), []]
    hits.process(make_post(post_id="q", event_time=T0 + timedelta(hours=74)), state)
    hits.expire(state)
    assert state.seen == {}


def test_a_forgotten_post_coming_back_adds_only_its_growth(hits: HitStage, state: ScoringState) -> None:
    first = hits.process(make_post(post_id="p", reposts=5000, likes=5000), state)
    assert first[0].delta.total == 10_000
    hits.process(make_post(post_id="other", event_time=T0 + timedelta(hours=80)), state)
    hits.expire(state)
    assert "weibo:p" not in state.snapshots
    # Re-crawled after being forgotten: its 10,000 were counted three days ago and must not count again.
    back = hits.process(
        make_post(post_id="p", event_time=T0 + timedelta(hours=81), reposts=5000, likes=5100), state
    )
    assert [h.delta.total for h in back] == [0]
    assert back[0].first_seen  # the ledger sees it again, with nothing added
    later = hits.process(
        make_post(post_id="p", event_time=T0 + timedelta(hours=82), reposts=5000, likes=5300), state
    )
    assert [h.delta.total for h in later] == [200]  # growth from the baseline on


def test_a_post_first_seen_long_after_publication_counts_from_then_on(
    hits: HitStage, state: ScoringState
) -> None:
    fresh = hits.process(make_post(post_id="a", published_at=T0 - timedelta(hours=71), likes=900), state)
    stale = hits.process(make_post(post_id="b", published_at=T0 - timedelta(hours=73), likes=900), state)
    assert [h.delta.total for h in fresh] == [900]
    assert [h.delta.total for h in stale] == [0]


def test_count_markers_are_forgotten_with_the_same_horizon(tiers: TierStage, state: ScoringState) -> None:
    state.counted.update(
        {"g|weibo:old": (T0 - timedelta(hours=73)).isoformat(), "g|weibo:new": T0.isoformat()}
    )
    assert tiers.expire(state) == 1
    assert set(state.counted) == {"g|weibo:new"}


def test_the_horizon_must_outlast_the_longest_window(matcher: RuleMatcher) -> None:
    with pytest.raises(ConfigError, match="longer than the longest window"):
        HitStage(XINGHE_CONFIG, matcher, track=timedelta(hours=8))
