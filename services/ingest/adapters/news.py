"""News articles as news crawlers record them: id or url, title, content, counts, published."""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    count,
    hashed_id,
    ident,
    join_title,
    require_text,
    short_text,
    string,
    url,
    when,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    link = url(payload, "url")
    post_id = ident(payload, "id")
    if post_id is None:
        if link is None:
            raise AdapterError("id or url", "missing; an article needs its id or its link")
        post_id = hashed_id(link)
    text = clean_text(*join_title(string(payload, "title"), string(payload, "content")))
    return {
        "platform": Platform.news,
        "post_id": post_id,
        "text": require_text(text, "title", "content"),
        # The outlet is who speaks for a news item; the reporter's byline is second best.
        "author": short_text(string(payload, "source") or string(payload, "author")),
        "author_type": AuthorType.media,
        "url": link,
        "published_at": when(payload, reading, "published"),
        "root_post_id": None,
        "engagement": {
            "reposts": count(payload, "share_count"),
            "comments": count(payload, "comment_count"),
            "likes": count(payload, "like_count"),
        },
    }
