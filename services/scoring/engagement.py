"""Cumulative snapshots to deltas: a re-crawled, replayed or older snapshot adds nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.events import Engagement, Post

__all__ = ["Snapshot", "apply_snapshot", "cumulative_of"]


@dataclass(frozen=True)
class Snapshot:
    """High-water marks of a post's counts and the time of the newest snapshot seen."""

    reposts: int
    comments: int
    likes: int
    observed_at: datetime


def cumulative_of(snap: Snapshot, reported: Engagement) -> Engagement:
    """The high-water counts as a hit reports them. A count this snapshot did not report, and that no
    earlier snapshot showed above 0, stays unknown (null on the wire): the ledger must not show an invented 0.
    """
    unknown = {name: None for name in reported.unknown if getattr(snap, name) == 0}
    return Engagement.model_validate(
        {
            "reposts": snap.reposts,
            "comments": snap.comments,
            "likes": snap.likes,
            "extras": reported.extras,
            **unknown,
        }
    )


def apply_snapshot(previous: Snapshot | None, post: Post) -> tuple[Engagement, Snapshot]:
    """Return (positive delta, new high-water snapshot).

    Counts can drop (deleted comments, hidden likes); we keep the high-water mark so that a later
    rise back does not count the same engagement twice.
    """
    e = post.engagement
    if previous is None:
        return (
            Engagement(reposts=e.reposts, comments=e.comments, likes=e.likes),
            Snapshot(e.reposts, e.comments, e.likes, post.event_time),
        )
    if post.event_time <= previous.observed_at:
        return Engagement(), previous
    delta = Engagement(
        reposts=max(0, e.reposts - previous.reposts),
        comments=max(0, e.comments - previous.comments),
        likes=max(0, e.likes - previous.likes),
    )
    return delta, Snapshot(
        max(e.reposts, previous.reposts),
        max(e.comments, previous.comments),
        max(e.likes, previous.likes),
        post.event_time,
    )
