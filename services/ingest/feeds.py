"""RSS and Atom feeds polled into Posts: conditional GETs, and a bounded memory of the entries seen."""

from __future__ import annotations

import asyncio
import io
import logging
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import feedparser  # type: ignore[import-untyped]
import httpx
from pydantic import ValidationError

from schemas.events import AuthorType, Platform, Post
from services.common.clock import Clock, system_clock
from services.common.config import FeedConfig
from services.ingest.adapters._fields import checked_url, clean_text, hashed_id, join_title, short_text
from services.ingest.timeparse import parse_time

__all__ = ["FeedConfig", "FeedPoller"]

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
    """Polls feeds with an injected httpx client; poll_once returns the entries not returned before.

    A feed that cannot be fetched, is not a feed, or is malformed XML counts an error in `errors` (keyed by
    feed URL). Entries that feedparser recovers from malformed XML are still returned: sites with an
    unescaped "&" should not go unwatched.
    """

    def __init__(
        self,
        feeds: Sequence[FeedConfig],
        client: httpx.AsyncClient,
        *,
        clock: Clock = system_clock,
        max_seen: int = 10_000,
    ) -> None:
        self._feeds = tuple(feeds)
        self._client = client
        self._clock = clock
        self._seen = _Seen(max_seen)
        self._validators = {f.url: _Validators() for f in self._feeds}
        self.errors: Counter[str] = Counter()
        self.last_error: dict[str, str] = {}

    async def poll_once(self) -> list[Post]:
        now = self._clock()
        batches = await asyncio.gather(*(self._poll(feed, now) for feed in self._feeds))
        return [post for batch in batches for post in batch]

    async def _poll(self, feed: FeedConfig, now: datetime) -> list[Post]:
        validators = self._validators[feed.url]
        headers = {}
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        try:
            resp = await self._client.get(feed.url, headers=headers, follow_redirects=True)
        except httpx.HTTPError as exc:
            self._error(feed, f"fetch failed: {type(exc).__name__}: {exc}")
            return []
        if resp.status_code == httpx.codes.NOT_MODIFIED:
            return []
        if resp.status_code != httpx.codes.OK:
            self._error(feed, f"HTTP {resp.status_code}")
            return []
        response_headers = {
            "content-location": str(resp.url),
            "content-type": resp.headers.get("content-type", ""),
        }
        parsed = await asyncio.to_thread(
            feedparser.parse, io.BytesIO(resp.content), response_headers=response_headers
        )
        if not parsed.get("version"):
            self._error(feed, "not an RSS or Atom feed")
            return []
        if parsed.get("bozo") and not isinstance(parsed.get("bozo_exception"), _BENIGN):
            self._error(feed, f"malformed feed: {parsed.get('bozo_exception')}")
        # Only a document we could read earns validators; otherwise the next poll fetches it whole.
        validators.etag = resp.headers.get("etag")
        validators.last_modified = resp.headers.get("last-modified")
        feed_title = parsed.get("feed", {}).get("title")
        posts = []
        for entry in parsed.get("entries", []):
            post = self._post(feed, entry, feed_title, now)
            if post is not None:
                posts.append(post)
        return posts

    def _post(
        self, feed: FeedConfig, entry: Mapping[str, Any], feed_title: object, now: datetime
    ) -> Post | None:
        key = _entry_key(feed.url, entry)
        if key is None:
            return None  # nothing identifies it, so nothing could tell it apart on the next poll
        post_id = hashed_id(key)
        if not self._seen.add(f"{feed.platform}:{post_id}"):
            return None
        text = clean_text(*join_title(_str(entry.get("title")), _summary(entry)))
        if not text:
            return None
        author = _str(entry.get("author")) or feed.name or _str(feed_title)
        link = _str(entry.get("link"))
        try:
            return Post(
                platform=Platform(feed.platform),
                post_id=post_id,
                text=text,
                author=short_text(author),
                author_type=AuthorType.media if feed.platform == "news" else AuthorType.user,
                url=checked_url(link) if link else None,
                published_at=_published(entry, now),
                event_time=now,
            )
        except ValidationError as exc:
            self._error(feed, f"entry {key!r}: {exc.errors(include_url=False)[0]['msg']}")
            return None

    def _error(self, feed: FeedConfig, reason: str) -> None:
        self.errors[feed.url] += 1
        self.last_error[feed.url] = reason
        log.warning("feed %s: %s", feed.url, reason)


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


def _published(entry: Mapping[str, Any], now: datetime) -> datetime:
    for raw_key, parsed_key in (("published", "published_parsed"), ("updated", "updated_parsed")):
        raw = entry.get(raw_key)
        if isinstance(raw, str) and raw.strip():
            # Our parser first: feedparser reads a time without offset as UTC, Chinese feeds mean Beijing.
            try:
                return parse_time(raw)
            except ValueError:
                pass
        parsed = entry.get(parsed_key)
        if parsed:
            try:
                year, month, day, hour, minute, second = parsed[:6]
                return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
            except (TypeError, ValueError):
                pass
    return now  # an undated entry was published no later than we saw it
