"""Scheduled briefings (简报) at the manual-patrol times: the notifier owns scheduled messages.

Every notifier process follows keyword-hits, tier-changes and incidents from their beginning (every
partition: a briefing covers all rule groups, whichever worker owns them) into a `BriefingBook`, and at each
configured time publishes that slot's briefing (briefing.py) on the alerts topic, keyed `*`; the notifier's
agent then routes and delivers it like any alert. The dedup key is the slot, so a briefing that several
replicas publish, or one published again after a restart, is delivered once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from schemas.events import Alert, IncidentEvent, KeywordHit, TierChange
from schemas.topics import Topics
from services.common.clock import Clock, system_clock
from services.common.config import NotifierConfig
from services.common.follow import follow_topics
from services.common.settings import CommonSettings
from services.notifier.briefing import build_briefing, due_slots, previous_slot

__all__ = ["BriefingBook", "publish_briefings", "run_briefings"]

log = logging.getLogger(__name__)

_CLOSED = ("closed", "postmortem_filed")
_EXCERPT = 60  # characters of a post a briefing quotes


class BriefingBook:
    """What a briefing needs, kept from the events: each rule group's tier, the posts first seen within
    `keep` (their spread as their latest snapshot reports it), and each incident's latest event. `keep` must
    cover the longest gap between two briefing times (a day, with one time a day); at most `max_posts` posts
    are kept, the oldest going first."""

    def __init__(self, keep: timedelta = timedelta(days=2), max_posts: int = 100_000) -> None:
        self.keep = keep
        self.max_posts = max_posts
        self._tiers: dict[str, int] = {}
        self._posts: dict[str, dict[str, Any]] = {}
        self._incidents: dict[str, IncidentEvent] = {}
        self._opened: dict[str, tuple[int, datetime]] = {}  # incident -> (sequence, time) of its first event

    def apply(self, event: KeywordHit | TierChange | IncidentEvent) -> None:
        if isinstance(event, KeywordHit):
            self._hit(event)
        elif isinstance(event, TierChange):
            self._tiers[event.group] = int(event.tier)
        else:
            iid = event.incident_id
            seen = self._incidents.get(iid)
            if seen is None or event.sequence >= seen.sequence:
                self._incidents[iid] = event
            if iid not in self._opened or event.sequence < self._opened[iid][0]:
                self._opened[iid] = (event.sequence, event.event_time)

    def _hit(self, hit: KeywordHit) -> None:
        key = f"{hit.platform.value}:{hit.post_id}|{hit.group}"
        row = self._posts.get(key)
        if row is None:
            self._posts[key] = {
                "first_seen": hit.event_time,
                "last_seen": hit.event_time,
                "group": hit.group,
                "platform": hit.platform.value,
                "excerpt": hit.excerpt[:_EXCERPT],
                # What is known of the spread: a count the platform did not report adds nothing.
                "spread": hit.cumulative.total,
            }
            while len(self._posts) > self.max_posts:
                del self._posts[next(iter(self._posts))]
        elif hit.event_time >= row["last_seen"]:
            row["last_seen"], row["spread"] = hit.event_time, hit.cumulative.total

    def briefing(self, slot: datetime, since: datetime) -> Alert:
        """The briefing for the period (since, slot]; forgets what no later briefing will need."""
        self._forget(slot - self.keep)
        tiers = [{"group": g, "tier": t} for g, t in sorted(self._tiers.items())]
        posts = list(reversed(self._posts.values()))  # newest first, as the ledger lists them
        incidents = [
            {
                "incident_id": e.incident_id,
                "group": e.group,
                "state": e.state.value,
                "tier": int(e.tier),
                "deadlines": [d.model_dump(mode="json") | {"status": d.status} for d in e.deadlines],
            }
            # Newest first, as the incident list shows them.
            for e in sorted(
                self._incidents.values(), key=lambda e: self._opened[e.incident_id][1], reverse=True
            )
        ]
        return build_briefing(slot, since, tiers, posts, incidents)

    def _forget(self, before: datetime) -> None:
        self._posts = {k: row for k, row in self._posts.items() if row["first_seen"] >= before}
        self._incidents = {
            iid: e
            for iid, e in self._incidents.items()
            if e.state.value not in _CLOSED or e.event_time >= before
        }
        self._opened = {iid: opened for iid, opened in self._opened.items() if iid in self._incidents}


Publish = Callable[[Alert], Awaitable[None]]


async def publish_briefings(
    config: NotifierConfig,
    book: BriefingBook,
    publish: Publish,
    ready: asyncio.Event,
    *,
    clock: Clock = system_clock,
    poll_seconds: float = 20.0,
) -> None:
    """Publish the briefing of every slot that comes due, once `ready` says the book has caught up with the
    topics. Slots from 5 minutes before the start count too: a restart right at a slot still sends it."""
    last = clock() - timedelta(minutes=5)
    await ready.wait()
    while True:
        now = clock()
        for slot in due_slots(config.briefing_times, config.briefing_tz, last, now):
            since = previous_slot(config.briefing_times, config.briefing_tz, slot)
            try:
                await publish(book.briefing(slot, since))
            except Exception as exc:  # whatever the producer raised: try this slot again at the next poll
                log.warning("briefing for %s not published yet: %s", slot.isoformat(), exc)
                break
            last = slot
        else:
            last = now
        await asyncio.sleep(poll_seconds)


async def run_briefings(
    settings: CommonSettings,
    config: NotifierConfig,
    publish: Publish,
    *,
    clock: Clock = system_clock,
    poll_seconds: float = 20.0,
) -> None:
    """Follow the topics into a book and publish its briefings, until cancelled."""
    topics = Topics.with_prefix(settings.topic_prefix)
    kinds: dict[str, type[BaseModel]] = {
        topics.keyword_hits: KeywordHit,
        topics.tier_changes: TierChange,
        topics.incidents: IncidentEvent,
    }
    book, ready = BriefingBook(), asyncio.Event()
    following = asyncio.create_task(follow_topics(settings, kinds, book.apply, ready))
    try:
        await publish_briefings(config, book, publish, ready, clock=clock, poll_seconds=poll_seconds)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
