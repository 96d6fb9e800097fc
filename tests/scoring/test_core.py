from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from operator import itemgetter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Engagement, KeywordHit, Platform, Post, Tier, TierChange
from services.common import json
from services.common.clock import FakeClock
from services.common.exceptions import ConfigError
from services.scoring.core import HitStage, ScoringState, TierStage
from services.scoring.exceptions import FutureEvent
from services.scoring.matcher import RuleMatcher
from services.scoring.rows import TrackedPost, micros
from services.scoring.windows import LateEvent
from tests.factories import crisis_burst
from tests.scoring.factories import STILL_CLOCK, T0, XINGHE_CONFIG, make_post

ROOT_TEXT = "星河电器空调起火了，要求退款"


@pytest.fixture(scope="module")
def matcher() -> RuleMatcher:
    return RuleMatcher(XINGHE_CONFIG.rules)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + timedelta(seconds=5))


@pytest.fixture
def hits(matcher: RuleMatcher, clock: FakeClock) -> HitStage:
    return HitStage(XINGHE_CONFIG, matcher, clock=clock, max_skew=STILL_CLOCK)


@pytest.fixture
def tiers(clock: FakeClock) -> TierStage:
    return TierStage(XINGHE_CONFIG, rule_version="v-test", clock=clock, max_skew=STILL_CLOCK)


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
    assert state.snapshots["weibo:p1"].groups == ("xinghe",)  # what a repost of it counts for


def test_non_matching_post_yields_nothing(hits: HitStage, state: ScoringState) -> None:
    assert hits.process(make_post(text="今天天气真好", reposts=1000), state) == []
    assert hits.process(make_post(post_id="p2", text="星河电器发布新品", reposts=1000), state) == []
    assert len(state.snapshots) == 0


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
    assert state.tiers["xinghe"].tier == Tier.level1


def test_tier_change_ids_are_deterministic(matcher: RuleMatcher) -> None:
    def run(detected: timedelta) -> list[TierChange]:
        clock = FakeClock(T0 + detected)
        return _escalate(
            HitStage(XINGHE_CONFIG, matcher, clock=clock, max_skew=STILL_CLOCK),
            TierStage(XINGHE_CONFIG, clock=clock, max_skew=STILL_CLOCK),
            ScoringState.in_memory(),
        )

    first, second = run(timedelta(0)), run(timedelta(hours=3))
    assert len(first) == 3
    assert [c.event_id for c in first] == [c.event_id for c in second]
    assert [c.detected_at for c in first] != [c.detected_at for c in second]


def test_hit_below_threshold_emits_nothing(tiers: TierStage, state: ScoringState, hits: HitStage) -> None:
    (hit,) = hits.process(make_post(reposts=10_000), state)
    assert tiers.process(hit, state) == []
    assert state.tiers["xinghe"].tier == Tier.none


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
    assert state.tiers["xinghe"].tier == Tier.none
    assert down[-1].counts == {"8h": 0, "4h": 0, "2h": 0}
    # Quiet and already at none: nothing more to report.
    clock.advance(hours=1)
    assert tiers.tick(state) == []


def test_tick_within_hold_keeps_tier(
    hits: HitStage, tiers: TierStage, state: ScoringState, clock: FakeClock
) -> None:
    """The 2 h window falls to 50,000 (under 80 % of 100,000) at minute 125; the hold runs out at 140."""
    _escalate(hits, tiers, state)
    clock.set(T0 + timedelta(hours=2))
    assert tiers.tick(state) == []
    clock.set(T0 + timedelta(minutes=139))
    assert tiers.tick(state) == []
    assert state.tiers["xinghe"].tier == Tier.level1
    assert state.tiers["xinghe"].below_since == T0 + timedelta(minutes=125)
    clock.set(T0 + timedelta(minutes=140, seconds=59))
    assert tiers.tick(state) == []  # minute 140 is not over: its hits may still come
    clock.set(T0 + timedelta(minutes=141))
    (down,) = tiers.tick(state)
    assert (down.previous, down.tier, down.reason) == (Tier.level1, Tier.level2, "cooldown")
    assert down.window_end == T0 + timedelta(minutes=141)
    assert down.counts == {"8h": 100_001, "4h": 100_001, "2h": 0}


def _cooldowns(matcher: RuleMatcher, ticks: list[timedelta]) -> list[TierChange]:
    clock = FakeClock(T0)
    hit_stage = HitStage(XINGHE_CONFIG, matcher, clock=clock, max_skew=STILL_CLOCK)
    tier_stage, state = TierStage(XINGHE_CONFIG, clock=clock, max_skew=STILL_CLOCK), ScoringState.in_memory()
    _escalate(hit_stage, tier_stage, state)
    down: list[TierChange] = []
    for at in ticks:
        clock.set(T0 + at)
        down.extend(tier_stage.tick(state))
    return down


def test_cooldown_ids_come_from_event_time_not_from_when_ticks_ran(matcher: RuleMatcher) -> None:
    """Issue 20: a tick-driven change took the wall-clock minute as window_end, so two runs differed."""
    every_30s = [timedelta(seconds=30 * n) for n in range(20, 2 * 60 * 11)]
    late_and_rare = [timedelta(hours=3), timedelta(hours=30)]
    first, second = _cooldowns(matcher, every_30s), _cooldowns(matcher, late_and_rare)
    assert [(int(c.previous), int(c.tier)) for c in first] == [(1, 2), (2, 3), (3, 0)]
    # Each step comes at the minute its hold ran out: the 2 h window fell under 80,000 at minute 125, the
    # 4 h one under 40,000 at 250, the 8 h one under 8,000 at 490; each then held for 15 minutes.
    assert [c.window_end for c in first] == [T0 + timedelta(minutes=m) for m in (141, 266, 506)]
    assert [c.event_id for c in second] == [c.event_id for c in first]
    assert [c.counts for c in second] == [c.counts for c in first]
    assert [c.detected_at for c in second] != [c.detected_at for c in first]


def test_late_hit_beyond_the_longest_window_plus_grace_raises(
    hits: HitStage, tiers: TierStage, state: ScoringState
) -> None:
    for hit in hits.process(make_post(post_id="a", event_time=T0 + timedelta(hours=9), reposts=5), state):
        tiers.process(hit, state)
    (late,) = hits.process(make_post(post_id="b", event_time=T0, reposts=5), state)
    with pytest.raises(LateEvent, match="9 h 0 min behind"):
        tiers.process(late, state)
    assert f"xinghe|{int(T0.timestamp() // 60)}" not in state.buckets


def test_override_pins_tier_in_stage(hits: HitStage, tiers: TierStage, state: ScoringState) -> None:
    (change,) = tiers.override("xinghe", Tier.level1, "alice", state)
    assert (change.previous, change.tier, change.reason, change.operator) == (
        Tier.none,
        Tier.level1,
        "override",
        "alice",
    )
    (hit,) = hits.process(make_post(reposts=5), state)
    assert tiers.process(hit, state) == []
    assert state.tiers["xinghe"].override == Tier.level1


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
    sums = tiers.windows(state, "xinghe").sums("xinghe")
    assert sums[480] == 10_001


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 500)), min_size=20, max_size=120))
def test_the_top_posts_kept_are_those_a_full_sort_keeps(spreads: list[tuple[int, int]]) -> None:
    """Each post's spread adds up, the list is ordered by spread (earlier first among equals) and cut at 20,
    also when a hit that cannot make the list is left out without sorting."""
    state, expected = ScoringState.in_memory(), list[tuple[str, int]]()
    for n, (post, spread) in enumerate(spreads):
        at = T0 + timedelta(minutes=n)
        hit = KeywordHit(
            group="g",
            platform=Platform.weibo,
            post_id=f"p{post}",
            thread_key=f"weibo:p{post}",
            snapshot_id=f"s{n}",
            first_seen=False,
            event_time=at,
            delta=Engagement(likes=spread),
            cumulative=Engagement(likes=spread),
            detected_at=at,
        )
        TierStage._remember_top(hit, state)
        key = f"weibo:p{post}"
        known = [i for i, (k, _) in enumerate(expected) if k == key]
        if known:
            expected[known[0]] = (key, expected[known[0]][1] + spread)
        else:
            expected.append((key, spread))
        expected.sort(key=itemgetter(1), reverse=True)
        del expected[20:]
    kept = state.top.get("g")
    assert [(e.post, e.spread) for e in (kept.posts if kept else ())] == expected


def test_group_grace_overrides_default(clock: FakeClock) -> None:
    """A group's own tiers section sets its grace: 8 h 40 min late counts there (8 h + 60 min), not under
    the default (8 h + 10 min)."""
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
    hits = HitStage(config, RuleMatcher(config.rules), clock=clock, max_skew=STILL_CLOCK)
    tiers, state = TierStage(config, clock=clock, max_skew=STILL_CLOCK), ScoringState.in_memory()
    for text, pid in (("星河电器空调起火了", "a"), ("格力的空调起火了", "b")):
        for hit in hits.process(
            make_post(post_id=pid, text=text, event_time=T0 + timedelta(minutes=520)), state
        ):
            tiers.process(hit, state)
    (late,) = hits.process(make_post(post_id="c", text="星河电器空调起火了", event_time=T0, reposts=7), state)
    tiers.process(late, state)
    assert state.buckets[f"xinghe|{int(T0.timestamp() // 60)}"].spread == (("weibo", 7),)
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
    assert state.snapshots["weibo:kept"].groups == ("xinghe",)
    assert hits.expire(state) == 0  # nothing older left


def test_a_row_the_previous_version_wrote_is_read(hits: HitStage, state: ScoringState) -> None:
    """Rows written before typed rows: [reposts, comments, likes, observed_at ISO, [groups hit for]]."""
    state.snapshots.restore({"weibo:p": json.dumps([0, 0, 10, T0.isoformat(), ["xinghe"]])})
    (again,) = hits.process(make_post(post_id="p", event_time=T0 + timedelta(hours=1), likes=15), state)
    assert (again.first_seen, again.delta.total) == (False, 5)
    assert state.snapshots["weibo:p"] == TrackedPost(0, 0, 15, micros(T0 + timedelta(hours=1)), ("xinghe",))


def test_a_repost_counts_for_the_groups_its_root_was_hit_for_while_the_root_is_tracked(
    hits: HitStage, state: ScoringState
) -> None:
    def repost(post_id: str, at: datetime) -> Post:
        return make_post(
            post_id=post_id, text="转发微博", root_post_id="root", event_time=at, published_at=at, likes=5
        )

    hits.process(make_post(post_id="root", likes=10), state)
    assert [h.group for h in hits.process(repost("r0", T0 + timedelta(hours=1)), state)] == ["xinghe"]
    hits.process(make_post(post_id="other", event_time=T0 + timedelta(hours=74)), state)
    assert hits.expire(state) == 2  # the root and r0: last seen 72 h before the newest snapshot
    assert hits.process(repost("r1", T0 + timedelta(hours=74)), state) == []


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


def test_a_post_with_no_publication_time_counts_its_growth_not_its_first_counts(
    hits: HitStage, state: ScoringState
) -> None:
    """Nobody can say when an undated post gathered its first counts, so they are not put in a window;
    what it gains while watched is."""
    first = hits.process(make_post(post_id="u", published_at=None, likes=900), state)
    later = hits.process(
        make_post(post_id="u", published_at=None, likes=1000, event_time=T0 + timedelta(minutes=5)), state
    )
    assert [h.delta.total for h in first] == [0]
    assert [h.delta.total for h in later] == [100]


def test_observations_dated_ahead_of_the_clock_beyond_the_skew_are_refused(matcher: RuleMatcher) -> None:
    clock = FakeClock(T0)
    hit_stage = HitStage(XINGHE_CONFIG, matcher, clock=clock, max_skew=timedelta(minutes=10))
    tier_stage, state = (
        TierStage(XINGHE_CONFIG, clock=clock, max_skew=timedelta(minutes=10)),
        ScoringState.in_memory(),
    )
    soon = T0 + timedelta(minutes=9)  # a crawler's clock a little ahead: counted
    (hit,) = hit_stage.process(make_post(post_id="a", event_time=soon, published_at=soon, likes=7), state)
    tier_stage.process(hit, state)
    later = T0 + timedelta(minutes=11)
    with pytest.raises(FutureEvent, match="ahead of this worker's clock"):
        hit_stage.process(make_post(post_id="b", event_time=later, published_at=soon, likes=7), state)
    with pytest.raises(FutureEvent):
        tier_stage.process(hit.model_copy(update={"event_time": later, "post_id": "c"}), state)
    assert sum(b.total for _, b in state.buckets.items()) == 7
    assert state.snapshots.keys() == ["weibo:a"]


def test_count_markers_are_forgotten_with_the_same_horizon(tiers: TierStage, state: ScoringState) -> None:
    state.counted.set("g|weibo:old", micros(T0 - timedelta(hours=73)))
    state.counted.set("g|weibo:new", micros(T0))
    assert tiers.expire(state) == 1
    assert state.counted.keys() == ["g|weibo:new"]


def test_the_horizon_must_outlast_the_longest_window(matcher: RuleMatcher) -> None:
    with pytest.raises(ConfigError, match="longer than the longest window"):
        HitStage(XINGHE_CONFIG, matcher, track=timedelta(hours=8))


# -- late and out-of-order observations (issue 15) -----------------------------------------------------------


def _feed(
    posts: list[Post], hit_stage: HitStage, tier_stage: TierStage, state: ScoringState
) -> list[TierChange]:
    changes: list[TierChange] = []
    for post in posts:
        for hit in hit_stage.process(post, state):
            changes.extend(tier_stage.process(hit, state))
    return changes


def _burst() -> list[Post]:
    return [Post.model_validate(p) for p in crisis_burst(T0)]


def test_the_burst_in_order_crosses_each_level_at_its_minute(
    hits: HitStage, tiers: TierStage, state: ScoringState
) -> None:
    changes = _feed(_burst(), hits, tiers, state)
    assert [(int(c.previous), int(c.tier)) for c in changes] == [(0, 3), (3, 2), (2, 1)]
    assert [c.window_end for c in changes] == [T0 + timedelta(minutes=m) for m in (16, 54, 89)]
    assert changes[-1].counts == {"8h": 100_001, "4h": 100_001, "2h": 100_001}


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ticks", [False, True], ids=["hits-only", "with-wall-ticks"])
def test_a_shuffled_burst_ends_at_level_1_with_every_count(
    matcher: RuleMatcher, seed: int, ticks: bool
) -> None:
    """Issue 15: the held-out crisis posted in one burst, in any order, and with wall-clock ticks at the
    stack's "now" in between (which put every hit behind the evaluation point), ends at level 1 with
    100,001 in every window: no post is dropped as late."""
    clock = FakeClock(T0 + timedelta(minutes=95))
    hit_stage, tier_stage = (
        HitStage(XINGHE_CONFIG, matcher, clock=clock, max_skew=STILL_CLOCK),
        TierStage(XINGHE_CONFIG, clock=clock, max_skew=STILL_CLOCK),
    )
    state = ScoringState.in_memory()
    posts = _burst()
    random.Random(seed).shuffle(posts)
    changes: list[TierChange] = []
    for n, post in enumerate(posts):
        changes.extend(_feed([post], hit_stage, tier_stage, state))
        if ticks and n % 3 == 1:
            changes.extend(tier_stage.tick(state))
    if ticks:
        changes.extend(tier_stage.tick(state))
    assert state.tiers["xinghe"].tier == Tier.level1
    assert changes[-1].tier == Tier.level1
    assert changes[-1].counts == {"8h": 100_001, "4h": 100_001, "2h": 100_001}
    assert all(c.direction == "up" for c in changes)
    windows = tier_stage.windows(state, "xinghe")
    assert windows.sums("xinghe") == {120: 100_001, 240: 100_001, 480: 100_001}
    # The buckets (what the windows count) hold exactly what the posts spread: the ledger's figure.
    assert sum(b.total for _, b in state.buckets.items()) == sum(p.engagement.total for p in posts)
    ends = [c.window_end for c in changes]
    assert ends == sorted(ends)  # a group's changes come out in event-time order
    assert len({c.event_id for c in changes}) == len(changes)


def test_an_observation_7_hours_late_counts_and_raises_the_tier_it_reached(
    hits: HitStage, tiers: TierStage, state: ScoringState, clock: FakeClock
) -> None:
    _feed([make_post(post_id="new", event_time=T0 + timedelta(hours=7), reposts=100)], hits, tiers, state)
    clock.set(T0 + timedelta(hours=7, minutes=5))
    (late,) = _feed([make_post(post_id="old", event_time=T0, reposts=10_001)], hits, tiers, state)
    assert state.buckets[f"xinghe|{int(T0.timestamp() // 60)}"].spread == (("weibo", 10_001),)
    assert tiers.windows(state, "xinghe").sums("xinghe")[480] == 10_101
    assert (late.previous, late.tier, late.reason) == (Tier.none, Tier.level3, "threshold")
    assert late.window_end == T0 + timedelta(minutes=1)  # the event time it reached level 3
    assert late.detected_at == T0 + timedelta(hours=7, minutes=5)  # when it was decided
    assert late.counts == {"8h": 10_001, "4h": 10_001, "2h": 10_001}
    assert state.tiers["xinghe"].tier == Tier.level3


def test_a_late_observation_reopens_windows_that_ended_before_now(
    hits: HitStage, tiers: TierStage, state: ScoringState, clock: FakeClock
) -> None:
    """60,000 at minute 0, a little at 200, then 40,001 seen late at minute 100: the 2 h windows ending at
    minutes 100-119 held 100,001, although the one ending now (200) holds only 40,001. Level 1 is emitted
    at minute 100, and so is the cooldown its hold ran out at in the meantime."""
    first = _feed(
        [
            make_post(post_id="a", event_time=T0, reposts=60_000),
            make_post(post_id="b", event_time=T0 + timedelta(minutes=200), reposts=10),
        ],
        hits,
        tiers,
        state,
    )
    assert [(int(c.previous), int(c.tier)) for c in first] == [(0, 2)]
    clock.set(T0 + timedelta(minutes=201))
    late = _feed(
        [make_post(post_id="c", event_time=T0 + timedelta(minutes=100), reposts=40_001)], hits, tiers, state
    )
    assert [(int(c.previous), int(c.tier), c.reason) for c in late] == [
        (2, 1, "threshold"),
        (1, 2, "cooldown"),
    ]
    assert [c.window_end for c in late] == [T0 + timedelta(minutes=101), T0 + timedelta(minutes=136)]
    assert late[0].counts == {"8h": 100_001, "4h": 100_001, "2h": 100_001}
    assert late[1].counts == {"8h": 100_001, "4h": 100_001, "2h": 40_001}
    assert all(c.detected_at == T0 + timedelta(minutes=201) for c in late)
    assert state.tiers["xinghe"].tier == Tier.level2


def test_a_late_observation_that_restores_the_band_restarts_the_hold(
    hits: HitStage, tiers: TierStage, state: ScoringState, clock: FakeClock
) -> None:
    _feed([make_post(post_id="a", event_time=T0, reposts=10_001)], hits, tiers, state)
    clock.set(T0 + timedelta(minutes=490))
    assert tiers.tick(state) == []  # the 8 h window emptied at minute 480: the hold runs
    assert state.tiers["xinghe"].below_since == T0 + timedelta(minutes=480)
    # 8,001 seen late at minute 470 keeps the 8 h window over 8,000 until minute 949.
    assert (
        _feed(
            [make_post(post_id="b", event_time=T0 + timedelta(minutes=470), reposts=8_001)],
            hits,
            tiers,
            state,
        )
        == []
    )
    assert state.tiers["xinghe"].below_since is None
    clock.set(T0 + timedelta(minutes=965))
    assert tiers.tick(state) == []
    clock.set(T0 + timedelta(minutes=966))
    (down,) = tiers.tick(state)
    assert (down.tier, down.reason, down.window_end) == (Tier.none, "cooldown", T0 + timedelta(minutes=966))


def test_a_late_observation_does_not_rewrite_changes_already_emitted(
    hits: HitStage, tiers: TierStage, state: ScoringState, clock: FakeClock
) -> None:
    """Level 3 came down at minute 495. A late 5,000 at minute 10 would have kept it up then, but that is
    history: what it can still do is raise the tier from the last change on, and 5,000 + 10,001 reach
    level 3 in no window ending after minute 495."""
    _feed([make_post(post_id="a", event_time=T0, reposts=10_001)], hits, tiers, state)
    clock.set(T0 + timedelta(minutes=497))
    (down,) = tiers.tick(state)
    assert down.window_end == T0 + timedelta(minutes=496)
    assert (
        _feed(
            [make_post(post_id="b", event_time=T0 + timedelta(minutes=10), reposts=5_000)], hits, tiers, state
        )
        == []
    )
    assert state.tiers["xinghe"].tier == Tier.none


def test_the_event_clock_lets_history_replay_with_ticks(matcher: RuleMatcher) -> None:
    """A 2025 crisis replayed in 2030: wall-clock ticks move every window to 2030, so the rest of the
    crisis is years late; with the event clock, ticks follow the newest event and change nothing."""
    history = [Post.model_validate(p) for p in crisis_burst(datetime(2025, 3, 1, 9, 0, tzinfo=UTC))]
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))

    def run(event_clock: bool, ticks: bool) -> list[TierChange]:
        hit_stage = HitStage(XINGHE_CONFIG, matcher, clock=clock, max_skew=STILL_CLOCK)
        tier_stage = TierStage(XINGHE_CONFIG, clock=clock, event_clock=event_clock, max_skew=STILL_CLOCK)
        state, out = ScoringState.in_memory(), []
        for post in history:
            out.extend(_feed([post], hit_stage, tier_stage, state))
            if ticks:
                out.extend(tier_stage.tick(state))
        return out

    quiet = run(event_clock=True, ticks=False)
    assert [int(c.tier) for c in quiet] == [3, 2, 1]
    assert [c.event_id for c in run(event_clock=True, ticks=True)] == [c.event_id for c in quiet]
    with pytest.raises(LateEvent):
        run(event_clock=False, ticks=True)


def test_the_event_clock_brings_a_quiet_group_down_as_other_groups_move_event_time(
    matcher: RuleMatcher,
) -> None:
    config = XINGHE_CONFIG.model_validate(
        {
            "rules": {
                "groups": [{"name": "xinghe", "brands": ["星河电器"]}, {"name": "gree", "brands": ["格力"]}]
            }
        }
    )
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    hit_stage = HitStage(config, RuleMatcher(config.rules), clock=clock)
    tier_stage, state = TierStage(config, clock=clock, event_clock=True), ScoringState.in_memory()
    assert tier_stage.now(state) == clock()  # no events yet: the wall clock
    t = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    (up,) = _feed(
        [make_post(post_id="a", event_time=t, published_at=t, reposts=10_001)], hit_stage, tier_stage, state
    )
    assert (up.tier, up.window_end) == (Tier.level3, t + timedelta(minutes=1))
    assert tier_stage.tick(state) == []
    _feed(
        [make_post(post_id="b", text="格力的空调起火了", event_time=t + timedelta(hours=9))],
        hit_stage,
        tier_stage,
        state,
    )
    assert tier_stage.now(state) == t + timedelta(hours=9)
    (down,) = tier_stage.tick(state)
    assert (down.group, down.tier, down.window_end) == ("xinghe", Tier.none, t + timedelta(minutes=496))
    (change,) = tier_stage.override("xinghe", Tier.level2, "alice", state)
    assert change.window_end == t + timedelta(hours=9, minutes=1)  # event time, not 2030


@settings(deadline=None, max_examples=60)
@given(
    posts=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 59), st.integers(0, 60_000)), max_size=8),
    ticks=st.lists(st.floats(0, 1), max_size=25),
)
def test_when_ticks_run_does_not_change_what_is_emitted(
    matcher: RuleMatcher, posts: list[tuple[int, int, int]], ticks: list[float]
) -> None:
    """Posts in time order, wall-clock ticks at any moment the data has reached: the same changes, ids
    included, as with no tick until the end. Ticks only notice cooldowns; when they run cannot move them."""
    at, feed = T0, []
    for n, (gap, second, spread) in enumerate(posts):
        at = at.replace(second=0) + timedelta(minutes=gap, seconds=second)
        feed.append(make_post(post_id=f"p{n}", event_time=at, published_at=at, reposts=spread))
    end = at + timedelta(hours=12)
    moments = sorted(T0 + (end - T0) * f for f in ticks)

    def run(tick_at: list[datetime]) -> list[TierChange]:
        clock = FakeClock(T0)
        hit_stage, tier_stage = (
            HitStage(XINGHE_CONFIG, matcher, clock=clock, max_skew=STILL_CLOCK),
            TierStage(XINGHE_CONFIG, clock=clock, max_skew=STILL_CLOCK),
        )
        state, out, pending = ScoringState.in_memory(), [], list(tick_at)
        for post in feed:
            while pending and pending[0] <= post.event_time:
                clock.set(pending.pop(0))
                out.extend(tier_stage.tick(state))
            clock.set(post.event_time)
            out.extend(_feed([post], hit_stage, tier_stage, state))
        clock.set(end)
        return [*out, *tier_stage.tick(state)]

    quiet = run([])
    assert [(c.event_id, c.counts) for c in run(moments)] == [(c.event_id, c.counts) for c in quiet]


def test_a_tick_does_not_decide_a_minute_whose_hits_may_still_come(
    hits: HitStage, tiers: TierStage, state: ScoringState, clock: FakeClock
) -> None:
    """Level 3 from 10,001 at minute 0: the 8 h window empties at 480 and the hold would run out at 495.
    8,001 more at 495:30 keeps it over 8,000. A tick at 495:10 must not bring the tier down first."""
    _feed([make_post(post_id="a", event_time=T0, reposts=10_001)], hits, tiers, state)
    clock.set(T0 + timedelta(minutes=495, seconds=10))
    assert tiers.tick(state) == []
    later = T0 + timedelta(minutes=495, seconds=30)
    assert (
        _feed(
            [make_post(post_id="b", event_time=later, published_at=later, reposts=8_001)], hits, tiers, state
        )
        == []
    )
    assert state.tiers["xinghe"].tier == Tier.level3


def test_an_override_after_a_quiet_spell_first_reports_the_cooldowns_it_missed(
    hits: HitStage, tiers: TierStage, state: ScoringState, clock: FakeClock
) -> None:
    _feed([make_post(post_id="a", event_time=T0, reposts=10_001)], hits, tiers, state)
    clock.set(T0 + timedelta(hours=9))
    down, pinned = tiers.override("xinghe", Tier.level2, "alice", state)
    assert (down.reason, down.tier, down.window_end) == ("cooldown", Tier.none, T0 + timedelta(minutes=496))
    assert (pinned.reason, pinned.previous, pinned.tier) == ("override", Tier.none, Tier.level2)
