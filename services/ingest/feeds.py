"""RSS and Atom feeds polled into Posts: conditional GETs, and a bounded memory of the entries seen."""

from __future__ import annotations

import asyncio
import io
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import feedparser  # type: ignore[import-untyped]
import httpx
from pydantic import ValidationError

from schemas.events import SPREAD_COUNTS, AuthorType, Engagement, Platform, Post
from services.common.clock import Clock, system_clock
from services.common.config import FeedConfig
from services.ingest.adapters._fields import (
    TEXT_MAX,
    checked_url,
    clean_text,
    hashed_id,
    join_title,
    short_text,
)
from services.ingest.timeparse import TimeBounds, parse_time

__all__ = ["Deliver", "FeedConfig", "FeedPoller"]

# Hands a feed's new posts to Kafka and returns once they are acknowledged; raises if they are not.
Deliver = Callable[[list[Post]], Awaitable[None]]

log = logging.getLogger(__name__)


@dataclass
class _Validators:
    etag: str | None = None
    last_modified: str | None = None


class _Seen:
    """Entry keys seen lately, least recently seen dropped first.

    An entry still in its feed is seen again on every full fetch and so stays; only entries that left
    every feed age out. The limit must exceed the entries of all feeds together.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_seen must be at least 1, got {limit}")
        self._limit = limit
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str) -> bool:
        """Remember `key`; True if it was new."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self._limit:
            self._keys.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._keys)


class FeedPoller:
    """Polls feeds with an injected httpx client; poll_once delivers the entries not delivered before.

    An entry counts as delivered, and a feed's ETag/Last-Modified are kept, only once `deliver` returned:
    a Kafka outage must not leave entries marked seen that never reached the topic, nor validators that
    make the feed answer 304 until the entries are gone from it.

    A feed that cannot be fetched, is not a feed, is malformed XML, or whose posts could not be delivered
    counts an error in `errors` (keyed by feed URL); so does any other failure, which never stops the
    other feeds. Entries that feedparser recovers from malformed XML are still returned: sites with an
    unescaped "&" should not go unwatched.
    """

    def __init__(
        self,
        feeds: Sequence[FeedConfig],
        client: httpx.AsyncClient,
        *,
        clock: Clock = system_clock,
        max_seen: int = 10_000,
        max_bytes: int = 10 * 1024 * 1024,
        bounds: TimeBounds | None = None,
    ) -> None:
        self._feeds = tuple(feeds)
        self._client = client
        self._clock = clock
        self._seen = _Seen(max_seen)
        self._max_bytes = max_bytes
        self._bounds = bounds or TimeBounds()
        self._validators = {f.url: _Validators() for f in self._feeds}
        self.errors: Counter[str] = Counter()
        self.last_error: dict[str, str] = {}

    async def poll_once(self, deliver: Deliver | None = None) -> list[Post]:
        """Fetch every feed once and deliver each feed's new entries; returns the posts delivered.

        Without `deliver`, returning them is the delivery, for callers that cannot fail to take them.
        """
        now = self._clock()
        batches = await asyncio.gather(*(self._guarded(feed, now, deliver) for feed in self._feeds))
        return [post for batch in batches for post in batch]

    async def _guarded(self, feed: FeedConfig, now: datetime, deliver: Deliver | None) -> list[Post]:
        try:
            fetched = await self._poll(feed, now)
            if fetched is None:
                return []
            posts, keys, validators = fetched
            if posts and deliver is not None:
                try:
                    await deliver(posts)
                except Exception as exc:
                    self._error(feed, f"{len(posts)} posts not delivered, retried on the next poll: {exc!r}")
                    return []
        except Exception as exc:
            # A malformed URL (httpx.InvalidURL is no HTTPError), a bad port or a parser bug in one feed
            # must not end the polling of every feed.
            self._error(feed, f"poll failed: {type(exc).__name__}: {exc}")
            return []
        for key in keys:
            self._seen.add(key)
        self._validators[feed.url] = validators
        return posts

    async def _poll(
        self, feed: FeedConfig, now: datetime
    ) -> tuple[list[Post], list[str], _Validators] | None:
        """The feed's new posts, their seen-keys and the validators to keep once they are delivered."""
        validators = self._validators[feed.url]
        headers = {}
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        try:
            async with self._client.stream("GET", feed.url, headers=headers, follow_redirects=True) as resp:
                if resp.status_code == httpx.codes.NOT_MODIFIED:
                    return None
                if resp.status_code != httpx.codes.OK:
                    self._error(feed, f"HTTP {resp.status_code}")
                    return None
                content = await self._read_capped(resp)
        except httpx.HTTPError as exc:
            self._error(feed, f"fetch failed: {type(exc).__name__}: {exc}")
            return None
        if content is None:
            self._error(feed, f"feed is larger than {self._max_bytes} bytes; not read")
            return None
        response_headers = {
            "content-location": str(resp.url),
            "content-type": resp.headers.get("content-type", ""),
        }
        parsed = await asyncio.to_thread(
            feedparser.parse, io.BytesIO(_trimmed(content)), response_headers=response_headers
        )
        if not parsed.get("version"):
            self._error(feed, "not an RSS or Atom feed")
            return None
        if parsed.get("bozo") and not isinstance(parsed.get("bozo_exception"), _BENIGN):
            self._error(feed, f"malformed feed: {parsed.get('bozo_exception')}")
        # Only a document we could read earns validators; otherwise the next poll fetches it whole.
        fresh = _Validators(resp.headers.get("etag"), resp.headers.get("last-modified"))
        feed_title = parsed.get("feed", {}).get("title")
        posts: list[Post] = []
        keys: list[str] = []
        for entry in parsed.get("entries", []):
            found = self._post(feed, entry, feed_title, now)
            if found is not None and found[1] not in keys:
                posts.append(found[0])
                keys.append(found[1])
        return posts, keys, fresh

    async def _read_capped(self, resp: httpx.Response) -> bytes | None:
        """The body, or None once it passes max_bytes: a hostile feed must not fill the memory."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _post(
        self, feed: FeedConfig, entry: Mapping[str, Any], feed_title: object, now: datetime
    ) -> tuple[Post, str] | None:
        key = _entry_key(feed.url, entry)
        if key is None:
            return None  # nothing identifies it, so nothing could tell it apart on the next poll
        post_id = hashed_id(key)
        seen_key = f"{feed.platform}:{post_id}"
        if seen_key in self._seen:
            self._seen.add(seen_key)  # still in its feed: keep it from ageing out
            return None
        # A feed has no sender to tell, so an over-long entry is cut rather than refused.
        text = clean_text(*join_title(_str(entry.get("title")), _summary(entry)))[:TEXT_MAX].strip()
        if not text:
            return None
        author = _str(entry.get("author")) or feed.name or _str(feed_title)
        link = _str(entry.get("link"))
        try:
            post = Post(
                platform=Platform(feed.platform),
                post_id=post_id,
                text=text,
                author=short_text(author),
                author_type=AuthorType.media if feed.platform == "news" else AuthorType.user,
                url=checked_url(link) if link else None,
                published_at=_published(entry, now, self._bounds),
                engagement=_NO_COUNTS,
                event_time=now,
            )
        except ValidationError as exc:
            self._error(feed, f"entry {key!r}: {exc.errors(include_url=False)[0]['msg']}")
            return None
        return post, seen_key

    def _error(self, feed: FeedConfig, reason: str) -> None:
        self.errors[feed.url] += 1
        self.last_error[feed.url] = reason
        log.warning("feed %s: %s", feed.url, reason)


# A feed entry carries no counts: they are unknown (null), not 0.
_NO_COUNTS = Engagement.model_validate(dict.fromkeys(SPREAD_COUNTS))
_BOM = b"\xef\xbb\xbf"


def _trimmed(content: bytes) -> bytes:
    """`content` without the blank lines some servers put before `<?xml`: an XML declaration must come
    first, and feedparser flags the document as malformed although it reads every entry."""
    bom = content.startswith(_BOM)
    body = content[len(_BOM) :] if bom else content
    stripped = body.lstrip(b" \t\r\n")
    if stripped is body or not stripped.startswith(b"<"):
        return content
    return (_BOM if bom else b"") + stripped


# A declared encoding that differs from the real one is common on Chinese sites and harmless.
_BENIGN = (feedparser.CharacterEncodingOverride,)


def _str(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _summary(entry: Mapping[str, Any]) -> str | None:
    summary = _str(entry.get("summary"))
    if summary:
        return summary
    content = entry.get("content")
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return _str(content[0].get("value"))
    return None


def _entry_key(feed_url: str, entry: Mapping[str, Any]) -> str | None:
    """What identifies an entry across polls and feeds: a global id, its link, or a local id in its feed."""
    ident = _str(entry.get("id"))
    link = _str(entry.get("link"))
    if ident and ("://" in ident or ident.startswith(("urn:", "tag:"))):
        return ident
    if link:
        return link
    if ident:
        return f"{feed_url}|{ident}"  # RSS guids like "12345" are unique only within their feed
    title = _str(entry.get("title"))
    return f"{feed_url}|{title}|{_str(entry.get('published')) or ''}" if title else None


def _published(entry: Mapping[str, Any], now: datetime, bounds: TimeBounds) -> datetime | None:
    for raw_key, parsed_key in (("published", "published_parsed"), ("updated", "updated_parsed")):
        candidates: list[datetime] = []
        raw = entry.get(raw_key)
        if isinstance(raw, str) and raw.strip():
            # Our parser first: feedparser reads a time without offset as UTC, Chinese feeds mean Beijing.
            try:
                candidates.append(parse_time(raw, now))
            except ValueError:
                pass
        parsed = entry.get(parsed_key)
        if parsed and not candidates:
            try:
                year, month, day, hour, minute, second = parsed[:6]
                candidates.append(datetime(year, month, day, hour, minute, second, tzinfo=UTC))
            except (TypeError, ValueError):
                pass
        # A date of 1970 or next year is a broken feed, not news: treat the entry as undated.
        if candidates and bounds.problem(candidates[0], now) is None:
            return candidates[0]
    return None  # undated: the poll time would be a made-up publication time
