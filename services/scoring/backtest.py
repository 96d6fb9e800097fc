"""A backtest: the scoring core over recorded posts, in process, with event time as the only clock.

It runs the stages as the worker does on one partition with YUQING_WINDOW_CLOCK=event: each post through
HitStage, each hit through TierStage, and a tick whenever event time reaches a new minute, so that a quiet
group comes down when it would have. Decision times (`detected_at`) are the newest event time fed so far,
so the same file and rules give the same output, ids included, on every run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schemas.events import Post, TierChange
from services.common.config import YuqingConfig
from services.scoring.core import DEFAULT_TRACK, HitStage, ScoringState, TierStage
from services.scoring.matcher import RuleMatcher
from services.scoring.windows import LateEvent, minute_of

__all__ = ["Backtest", "GroupHits", "timeline_row"]

_EXPIRE_EVERY = timedelta(hours=1)  # of event time: forgetting old posts walks every row
_TOP_TERMS = 8


@dataclass
class GroupHits:
    """What one rule group's rules matched."""

    hits: int = 0
    posts: set[str] = field(default_factory=set)
    spread: int = 0  # counted in its windows
    late: int = 0  # hits older than every window they could count in (dead letters on a live stack)
    terms: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "posts": len(self.posts),
            "spread": self.spread,
            "late_dropped": self.late,
            "top_terms": dict(self.terms.most_common(_TOP_TERMS)),
        }


class Backtest:
    def __init__(self, config: YuqingConfig, track: timedelta = DEFAULT_TRACK) -> None:
        matcher = RuleMatcher(config.rules)
        self.rule_version = matcher.version
        self._now: datetime | None = None
        self.hit_stage = HitStage(config, matcher, clock=self._clock, track=track)
        self.tier_stage = TierStage(
            config, rule_version=matcher.version, clock=self._clock, track=track, event_clock=True
        )
        self.state = ScoringState.in_memory()
        self.changes: list[TierChange] = []
        self.groups: dict[str, GroupHits] = {g.name: GroupHits() for g in config.rules.groups}
        self.posts = 0
        self._ticked: int | None = None
        self._expired: datetime | None = None

    def _clock(self) -> datetime:
        if self._now is None:  # nothing fed yet: no stage asks before the first post
            raise RuntimeError("the backtest has no time before its first post")
        return self._now

    def feed(self, post: Post) -> list[TierChange]:
        """Score one post snapshot; the tier changes it (and the minute it starts) caused."""
        self.posts += 1
        if self._now is None or post.event_time > self._now:
            self._now = post.event_time
        out: list[TierChange] = []
        for hit in self.hit_stage.process(post, self.state):
            stats = self.groups.setdefault(hit.group, GroupHits())
            stats.hits += 1
            stats.posts.add(f"{hit.platform.value}:{hit.post_id}")
            stats.terms.update(m.term for m in hit.matches)
            try:
                out.extend(self.tier_stage.process(hit, self.state))
            except LateEvent:
                stats.late += 1
                continue
            stats.spread += hit.delta.total
        minute = minute_of(self._now)
        if minute != self._ticked:
            self._ticked = minute
            out.extend(self.tier_stage.tick(self.state))
        if self._expired is None or self._now - self._expired >= _EXPIRE_EVERY:
            self._expired = self._now
            self.hit_stage.expire(self.state)
            self.tier_stage.expire(self.state)
        self.changes.extend(out)
        return out

    def tiers(self) -> dict[str, int]:
        """The tier of every group that has one, as the backtest ends."""
        return {group: int(row.tier) for group, row in sorted(self.state.tiers.items())}


def timeline_row(change: TierChange, top: int = 3) -> dict[str, Any]:
    """One tier change as a flat row (JSON and CSV): when, what, the counts and the top posts."""
    row: dict[str, Any] = {
        "window_end": change.window_end.isoformat(),
        "detected_at": change.detected_at.isoformat(),
        "group": change.group,
        "previous": int(change.previous),
        "tier": int(change.tier),
        "direction": change.direction,
        "reason": change.reason,
    }
    row.update({f"spread_{label}": n for label, n in change.counts.items()})
    row["top_posts"] = " | ".join(
        f"{p.get('post')} {p.get('spread')} {p.get('excerpt', '')}" for p in change.top_posts[:top]
    )
    row["event_id"] = change.event_id
    return row
