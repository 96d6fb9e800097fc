"""News articles as news crawlers record them: id or url, title, content, counts, published.

Field names of the common extractors are read too: GNE's `publish_time`/`author`, newspaper's
`publish_date`/`text`/`authors`, and the portals' `read_count`/`comment_count`.
"""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    extras,
    hashed_id,
    ident,
    join_title,
    require_text,
    short_text,
    spread,
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
    body = string(payload, "content") or string(payload, "text")
    text = clean_text(*join_title(string(payload, "title"), body))
    authors = payload.get("authors")
    byline = authors[0] if isinstance(authors, list) and authors and isinstance(authors[0], str) else None
    return {
        "platform": Platform.news,
        "post_id": post_id,
        "text": require_text(text, "title", "content"),
        # The outlet is who speaks for a news item; the reporter's byline is second best.
        "author": short_text(string(payload, "source") or string(payload, "author") or byline),
        "author_type": AuthorType.media,
        "url": link,
        "published_at": when(payload, reading, "published", "publish_time", "publish_date", "pubtime"),
        "root_post_id": None,
        "engagement": {
            **spread(
                payload,
                reading,
                {"reposts": ("share_count",), "comments": ("comment_count",), "likes": ("like_count",)},
                extra_paths=("read_count",),
            ),
            "extras": extras(payload, reading, {"views": "read_count"}),
        },
    }
