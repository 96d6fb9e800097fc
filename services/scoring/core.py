"""The scoring core: posts to keyword hits, hits to windows, windows to tier changes. No Kafka here.

State lives in tables handed in by the caller (services/scoring/rows.py): changelog-backed in the worker,
in memory only in tests and the backtest.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from msgspec.structs import replace

from schemas.events import Engagement, KeywordHit, Post, Tier, TierChange
from schemas.labels import window_label
from services.common.clock import Clock, system_clock
from services.common.config import TiersConfig, YuqingConfig
from services.common.exceptions import ConfigError
from services.common.partitioned import Table
from services.scoring.engagement import Snapshot, apply_snapshot, cumulative_of
from services.scoring.exceptions import FutureEvent
from services.scoring.forecast import ForecastTrack
from services.scoring.matcher import RuleMatcher
from services.scoring.rows import (
    TABLES,
    Bucket,
    TopPost,
    TopPosts,
    TrackedPost,
    WindowMeta,
    from_micros,
    micros,
)
from services.scoring.sentiment import analyse
from services.scoring.tiers import TierDecision, TierState, decide, held, highest, set_override
from services.scoring.windows import Move, WindowCounter, minute_of

__all__ = ["DEFAULT_MAX_SKEW", "DEFAULT_TRACK", "HitStage", "ScoringState", "TierStage"]

_TOP_N = 10
_SPREAD = attrgetter("spread")
_NO_TIER = TierState()

# How long a post is remembered after its last snapshot (its high-water counts and hit markers).
DEFAULT_TRACK = timedelta(hours=72)
# How far ahead of the worker's clock an observation may be dated (clock skew between crawler and worker);
# ingest refuses the same at its API by default.
DEFAULT_MAX_SKEW = timedelta(minutes=10)


def _not_future(at: datetime, clock: Clock, allowed: timedelta) -> None:
    now = clock()
    if at > now + allowed:
        raise FutureEvent(at, now, allowed)


def _checked_track(track: timedelta, config: YuqingConfig) -> timedelta:
    graces = [config.tiers.grace_minutes, *(g.tiers.grace_minutes for g in config.rules.groups if g.tiers)]
    longest = config.window() + timedelta(minutes=max(graces))
    if track <= longest:
        raise ConfigError(
            f"posts must be tracked longer than the longest window plus grace ({longest}); got {track}"
        )
    return track


def _lengths(tiers: TiersConfig) -> tuple[int, ...]:
    return tuple(sorted({r.window_minutes for r in tiers.rules}))


@dataclass
class ScoringState:
    """Every piece of scoring state: one partition's tables, their rows in services/scoring/rows.py."""

    snapshots: Table[TrackedPost]  # platform:post_id -> its high-water counts and the groups it was hit for
    buckets: Table[Bucket]  # "group|minute" -> spread per platform
    windows_meta: Table[WindowMeta]  # group -> running window sums
    tiers: Table[TierState]  # group -> its tier
    top: Table[TopPosts]  # group -> the posts that spread most
    counted: Table[float]  # "group|platform:post_id" -> epoch µs (rows.py) of its newest hit counted
    forecasts: Table[ForecastTrack]  # "group|tier" -> the forecast's dedup state while a warning stands

    @classmethod
    def of(cls, tables: Mapping[str, Table[Any]]) -> ScoringState:
        """The core's view of a partition's tables, by their names in rows.TABLES."""
        return cls(
            snapshots=tables["snapshots"],
            buckets=tables["buckets"],
            windows_meta=tables["windows-meta"],
            tiers=tables["tiers"],
            top=tables["top-posts"],
            counted=tables["counted"],
            forecasts=tables["forecasts"],
        )

    @classmethod
    def in_memory(cls) -> ScoringState:
        """State without changelogs: for tests, benchmarks and the backtest."""
        return cls.of({name: make(changelog=False) for name, make in TABLES.items()})


class HitStage:
    """Post snapshot -> KeywordHits (one per matched group), with the engagement delta it adds."""

    def __init__(
        self,
        config: YuqingConfig,
        matcher: RuleMatcher,
        clock: Clock = system_clock,
        track: timedelta = DEFAULT_TRACK,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
    ) -> None:
        self.config = config
        self.matcher = matcher
        self.clock = clock
        self.max_skew = max_skew
        self.track = _checked_track(track, config)
        self._track_us = track // timedelta(microseconds=1)

    def expire(self, state: ScoringState) -> int:
        """Forget posts not re-crawled within `track` of the newest snapshot held (event time, so that a
        replay forgets the same posts), with the groups they were hit for. Returns how many posts.

        A forgotten post that comes back was published more than `track` before that new snapshot, and
        `process` takes such a first sighting as a baseline: its counts are not added again. A repost of a
        forgotten root counts for its own groups only.
        """
        posts = state.snapshots
        if not len(posts):
            return 0
        # One pass decoding the rows (the costly part), their times kept in an array of 8 bytes a post.
        keys = posts.keys()
        seen = array("q", (row.observed_at for row in posts.values()))
        cutoff = max(seen) - self._track_us
        gone = [key for key, at in zip(keys, seen, strict=True) if at < cutoff]
        for key in gone:
            posts.delete(key)
        return len(gone)

    def process(self, post: Post, state: ScoringState) -> list[KeywordHit]:
        """Hits for one snapshot. The caller must produce the hits before it saves the state changes (the
        batch loop does): a crash then never keeps a snapshot whose hit was lost, which a replay would see
        as a zero delta. FutureEvent when the snapshot is dated ahead of the clock by more than `max_skew`:
        kept, it would outrank every real snapshot of the post after it."""
        _not_future(post.event_time, self.clock, self.max_skew)
        groups = {m.group: m.matches for m in self.matcher.match(post.text)}
        thread_key = post.thread_key  # a property: built once here
        inherited: tuple[str, ...] = ()
        if post.root_post_id is not None and post.root_post_id != post.post_id:
            # A repost spreads its root: it counts for the groups the root was hit for (the root's row, on
            # this partition too, as posts are keyed by thread), and for its own.
            root = state.snapshots.get(thread_key)
            if root is not None:
                inherited = root.groups
        targets = sorted(set(groups) | set(inherited))
        if not targets:
            return []
        post_key = post.key
        row = state.snapshots.get(post_key)
        prev = None
        marked: tuple[str, ...] = ()
        if row is not None:
            prev = Snapshot(row.reposts, row.comments, row.likes, from_micros(row.observed_at))
            marked = row.groups
        delta, snap = apply_snapshot(prev, post)
        if prev is None and (post.published_at is None or post.event_time - post.published_at > self.track):
            # First seen (or seen again after `expire`) long after publication: what it gathered until now
            # did not happen within any window. Count its growth from here on. With no publication time
            # nobody can say when its first counts were gathered, so they are not placed in a window either.
            delta = Engagement()
        sentiment, demand = analyse(post.text)
        now = self.clock()
        cumulative = cumulative_of(snap, post.engagement)
        hits = []
        firsts = []
        for group in targets:
            first = group not in marked
            if not first and delta.total == 0:
                continue
            if first:
                firsts.append(group)
            hits.append(
                KeywordHit(
                    event_time=post.event_time,
                    group=group,
                    platform=post.platform,
                    post_id=post.post_id,
                    thread_key=thread_key,
                    snapshot_id=post.event_id,
                    first_seen=first,
                    matches=groups.get(group, ()),
                    delta=delta,
                    cumulative=cumulative,
                    excerpt=post.text[:280],
                    url=post.url,
                    sentiment=sentiment,
                    demand=demand,
                    rule_version=self.matcher.version,
                    detected_at=now,
                )
            )
        if firsts or prev is None or snap.observed_at != prev.observed_at:
            state.snapshots.set(
                post_key,
                TrackedPost(
                    snap.reposts,
                    snap.comments,
                    snap.likes,
                    micros(snap.observed_at),
                    tuple(sorted({*marked, *firsts})),
                ),
            )
        return hits


class TierStage:
    """KeywordHits -> windowed spread per group -> TierChange on every change, up or down.

    Decisions are made minute by minute in event time. When the evaluation point jumps ahead (a tick after
    a quiet spell, a hit after a gap) the minutes in between are decided too, from the buckets, so a
    cooldown happens at the minute the hold ran out whenever it is noticed. A late observation re-decides
    the minutes from max(its minute, the group's last change) to now: a tier it raises is emitted with the
    minute it was reached as window_end and now as detected_at. Ids therefore follow from the input alone.

    `event_clock`: ticks and overrides take the newest event time of the state (a partition) as now,
    instead of the wall clock; for replaying history, where the wall clock is years ahead of the data.
    """

    def __init__(
        self,
        config: YuqingConfig,
        rule_version: str = "",
        clock: Clock = system_clock,
        track: timedelta = DEFAULT_TRACK,
        event_clock: bool = False,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
    ) -> None:
        self.config = config
        self.rule_version = rule_version
        self.clock = clock
        self.max_skew = max_skew
        self.track = _checked_track(track, config)
        self._track_us = track // timedelta(microseconds=1)
        self.event_clock = event_clock
        # Looked up on every hit: resolve per-group overrides once, not by scanning the groups each time.
        self._retention = config.window()
        self._tiers = {g.name: config.tiers_for(g.name) for g in config.rules.groups}
        # A group's own tiers section may allow more (or less) lateness than the default one.
        self._graces = {name: timedelta(minutes=t.grace_minutes) for name, t in self._tiers.items()}
        self._grace = timedelta(minutes=config.tiers.grace_minutes)
        # The window lengths each group's tiers need (the config is frozen, so they cannot change).
        self._lengths = {name: _lengths(t) for name, t in self._tiers.items()}
        self._default_lengths = _lengths(config.tiers)

    def tiers_for(self, group: str) -> TiersConfig:
        return self._tiers.get(group, self.config.tiers)

    def windows(self, state: ScoringState, group: str) -> WindowCounter:
        """The group's window counter over `state` (also read by the live spread and the forecast)."""
        lengths = self._lengths.get(group, self._default_lengths)
        grace = self._graces.get(group, self._grace)
        return WindowCounter(state.buckets, state.windows_meta, self._retention, grace, lengths)

    def now(self, state: ScoringState) -> datetime:
        """What ticks and overrides take as the current time: the wall clock, or with `event_clock` the
        newest event time in `state` (the wall clock while it holds none)."""
        if self.event_clock:
            newest = WindowCounter(state.buckets, state.windows_meta, self._retention, self._grace).newest()
            if newest is not None:
                return newest
        return self.clock()

    def process(self, hit: KeywordHit, state: ScoringState, offset: int | None = None) -> list[TierChange]:
        """Count the hit (raises windows.LateEvent when too late, FutureEvent when dated ahead of the wall
        clock by more than `max_skew`) and re-evaluate its group.

        Replays are harmless two ways: `offset` (the hit's position in its partition) makes each window row
        skip an input it already applied; the per-post marker skips the same hit produced twice upstream.
        The marker is written last, so a crash between the writes can repeat work, never lose it.
        """
        _not_future(hit.event_time, self.clock, self.max_skew)
        windows = self.windows(state, hit.group)
        platform = hit.platform.value
        key = f"{hit.group}|{platform}:{hit.post_id}"
        total = hit.delta.total  # a property summing three counts: read once
        if total > 0:
            at = micros(hit.event_time)
            last = state.counted.get(key)
            if last is not None and at <= last:
                return []
        windows.add(hit.group, hit.event_time, platform, total, offset)
        if total > 0:
            state.counted.set(key, float(at))  # exact: rows._CountedCodec
            self._remember_top(hit, state)
        # Hit-driven evaluation happens at event time, so a replay gives the same decisions and ids.
        late = minute_of(hit.event_time) if total > 0 else None
        return self._evaluate(hit.group, windows, state, hit.event_time, late)

    def tick(self, state: ScoringState, groups: list[str] | None = None) -> list[TierChange]:
        """Re-evaluate groups up to the last minute that is over (see `now`), so that tiers come down when
        a keyword goes quiet. Each minute since a group's last evaluation is decided in event time, and a
        tick never decides a minute whose hits may still come, so when ticks happen does not change what is
        emitted."""
        now = self.now(state) - timedelta(minutes=1)
        out: list[TierChange] = []
        for group in groups if groups is not None else state.windows_meta.keys():
            out.extend(self._evaluate(group, self.windows(state, group), state, now))
        return out

    def expire(self, state: ScoringState) -> int:
        """Forget per-post count markers older than `track` before the newest one (event time)."""
        counted = state.counted
        if not len(counted):
            return 0
        cutoff = max(counted.values()) - self._track_us
        gone = [key for key, at in counted.items() if at < cutoff]
        for key in gone:
            counted.delete(key)
        return len(gone)

    def drop_stale_buckets(self, state: ScoringState) -> int:
        """Delete buckets behind their group's oldest minute (WindowCounter.drop_stale)."""
        return WindowCounter(state.buckets, state.windows_meta, self._retention, self._grace).drop_stale()

    def override(self, group: str, tier: Tier | None, operator: str, state: ScoringState) -> list[TierChange]:
        """Pin (tier) or release (None) the group's tier now (see `now`): the cooldowns the minutes since
        its last evaluation brought, if any, then the override itself."""
        windows = self.windows(state, group)
        current = state.tiers.get(group) or _NO_TIER
        move = windows.move(group, self.now(state))
        out: list[TierChange] = []
        if current.override is None and move.before is not None and current.tier is not Tier.none:
            current = self._gap(group, windows, state, current, move, out)
        decision = set_override(current, tier, operator, _minute_time(move.until))
        change = self._change(group, decision, windows, state, move.until, move.sums, operator=operator)
        if change is not None:
            out.append(change)
        self._save(group, decision.state, state)
        windows.expire(group)
        return out

    def _evaluate(
        self, group: str, windows: WindowCounter, state: ScoringState, at: datetime, late: int | None = None
    ) -> list[TierChange]:
        move = windows.move(group, at)
        stored = current = state.tiers.get(group) or _NO_TIER
        out: list[TierChange] = []
        if current.override is None:
            if move.before is not None and current.tier is not Tier.none:
                current = self._gap(group, windows, state, current, move, out)
            elif late is not None and late < move.until:
                current = self._late(group, windows, state, current, late, move.until, out)
        cfg = self.tiers_for(group)
        decision = decide(current, move.sums, cfg, _minute_time(move.until))
        change = self._change(group, decision, windows, state, move.until, move.sums)
        if change is not None:
            out.append(change)
        if decision.state is not stored or group not in state.tiers:  # decide hands back what it kept
            self._save(group, decision.state, state)
        windows.expire(group)
        return out

    def _gap(
        self,
        group: str,
        windows: WindowCounter,
        state: ScoringState,
        current: TierState,
        move: Move,
        out: list[TierChange],
    ) -> TierState:
        """Decide each minute strictly between the previous evaluation point and the new one."""
        cfg = self.tiers_for(group)
        last = move.previous
        for minute, sums in windows.walk(group, move.previous, move.before or {}, move.until - 1):
            current = self._step(group, windows, state, current, minute, sums, out)
            last = minute
            if current.tier is Tier.none:
                return current
        # The walk ended early: every window is empty from here on, until the new point.
        zeros = dict.fromkeys(move.sums, 0)
        for minute in range(last + 1, min(move.until, last + cfg.downgrade_hold_minutes + 2)):
            current = self._step(group, windows, state, current, minute, zeros, out)
            if current.tier is Tier.none:
                break
        return current

    def _late(
        self,
        group: str,
        windows: WindowCounter,
        state: ScoringState,
        current: TierState,
        minute: int,
        until: int,
        out: list[TierChange],
    ) -> TierState:
        """Re-decide the minutes from max(minute, last change) to until - 1 after a late observation at
        `minute` (the evaluation at `until` itself follows in the caller).

        The windows before the group's last change led to tier changes already emitted; they stay. After
        it the tier stayed the same, so the observation can raise it (at the first minute its windows cross
        a threshold) or restart the hysteresis hold; nothing it adds can bring a tier down.
        """
        cfg = self.tiers_for(group)
        since = None if current.since is None else minute_of(current.since)
        if since is not None:
            lo = max(minute, since)
        elif current.tier is Tier.none:
            lo = minute  # never changed: every minute may be decided again
        else:
            return current  # a row from before `since` was recorded: only the current point is decided
        if lo >= until:
            return current
        series = windows.back(group, lo)  # series[i]: the windows ending at minute lo + i, up to until
        span = series[:-1]
        peak = {w: max(s[w] for s in span) for w in span[0]}
        if highest(peak, cfg).severity <= current.tier.severity:
            # Nothing rises: only a hold under way may restart, where the band now holds again.
            if current.below_since is None:
                return current
            first = max(lo, minute_of(current.below_since))
            for end in range(until - 1, first - 1, -1):
                if held(series[end - lo], cfg).severity >= current.tier.severity:
                    return replace(current, below_since=_minute_time(end + 1))
            return current
        # Something rises (rare): decide minute by minute from lo, from the state as it stood at lo - 1.
        start = lo
        if current.below_since is not None and minute_of(current.below_since) < lo:
            current_at = current  # the run below the band went on through lo - 1
        elif since is not None and lo > since:
            # A run of minutes below the band that ended at lo - 1 started within `hold` minutes of it (or the
            # tier would have come down since): find its start.
            start = max(lo - cfg.downgrade_hold_minutes - 1, since + 1)
            series = windows.back(group, start)
            first = lo
            while first > start and held(series[first - 1 - start], cfg).severity < current.tier.severity:
                first -= 1
            current_at = replace(current, below_since=_minute_time(first) if first < lo else None)
        else:
            current_at = replace(current, below_since=None)
        current = current_at
        for end in range(lo, until):
            current = self._step(group, windows, state, current, end, series[end - start], out)
        return current

    def _step(
        self,
        group: str,
        windows: WindowCounter,
        state: ScoringState,
        current: TierState,
        minute: int,
        sums: dict[int, int],
        out: list[TierChange],
    ) -> TierState:
        decision = decide(current, sums, self.tiers_for(group), _minute_time(minute))
        change = self._change(group, decision, windows, state, minute, sums)
        if change is not None:
            out.append(change)
        return decision.state

    @staticmethod
    def _save(group: str, tier: TierState, state: ScoringState) -> None:
        if state.tiers.get(group) != tier:
            state.tiers.set(group, tier)

    def _change(
        self,
        group: str,
        decision: TierDecision,
        windows: WindowCounter,
        state: ScoringState,
        minute: int,
        sums: dict[int, int],
        operator: str | None = None,
    ) -> TierChange | None:
        """The TierChange a decision at `minute` (windows ending with it hold `sums`) makes, if any."""
        if decision.reason is None or (not decision.changed and decision.reason != "override"):
            return None
        cfg = self.tiers_for(group)
        longest = max(r.window_minutes for r in cfg.rules)
        counts = {window_label(r.window_minutes): sums.get(r.window_minutes, 0) for r in cfg.rules}
        window_end = _minute_time(minute + 1)
        new, old = decision.state.tier, decision.previous
        return TierChange(
            event_time=window_end,
            group=group,
            previous=old,
            tier=new,
            direction="up" if new.severity >= old.severity else "down",
            reason=decision.reason,
            window_end=window_end,
            counts=counts,
            top_posts=tuple(self.top_posts(group, state, minute - longest, minute)),
            platform_mix=windows.totals(group, minute, longest),
            rule_version=self.rule_version,
            operator=operator,
            detected_at=self.clock(),
        )

    # -- read only, for the live spread and the forecast (services/scoring/live.py) ------------------

    @staticmethod
    def tier_of(group: str, state: ScoringState) -> Tier:
        return (state.tiers.get(group) or _NO_TIER).tier

    @staticmethod
    def _remember_top(hit: KeywordHit, state: ScoringState) -> None:
        row = state.top.get(hit.group)
        entries = list(row.posts) if row is not None else []
        minute = minute_of(hit.event_time)
        key = f"{hit.platform.value}:{hit.post_id}"
        spread = hit.delta.total
        for i, e in enumerate(entries):
            if e.post == key:
                entries[i] = replace(e, minute=max(e.minute, minute), spread=e.spread + spread)
                break
        else:
            if len(entries) >= _TOP_N * 2 and spread <= entries[-1].spread:
                return  # it would sort after every entry kept (equal spreads keep their order): no change
            entries.append(TopPost(minute, key, hit.platform.value, spread, hit.excerpt[:80], hit.url))
        entries.sort(key=_SPREAD, reverse=True)  # stable: equal spreads keep their order
        state.top.set(hit.group, TopPosts(tuple(entries[: _TOP_N * 2])))

    @staticmethod
    def top_posts(
        group: str, state: ScoringState, since_minute: int, until_minute: int
    ) -> list[dict[str, Any]]:
        """The posts that spread most with a hit in minutes (since, until], most first (also read by the
        live spread, services/scoring/live.py)."""
        row = state.top.get(group)
        entries = [e for e in row.posts if since_minute < e.minute <= until_minute] if row is not None else []
        return [
            {"post": e.post, "platform": e.platform, "spread": e.spread, "excerpt": e.excerpt, "url": e.url}
            for e in entries[:_TOP_N]
        ]


def _minute_time(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)
