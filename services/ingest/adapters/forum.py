"""Forum threads and replies as Discuz! (and crawlers of it) name them: tid, pid, subject, message."""

from __future__ import annotations

import re
from typing import Any

from schemas.events import Platform
from services.ingest.adapters._fields import (
    Payload,
    clean_text,
    count,
    get,
    ident,
    join_title,
    optional_count,
    require_text,
    short_text,
    string,
    url,
    when,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

# A quote repeats someone else's words; counting them again would double every match.
_QUOTE = re.compile(r"\[quote\].*?\[/quote\]", re.IGNORECASE | re.DOTALL)
_BBCODE = re.compile(r"\[/?[a-z]+(?:=[^\]]*)?\]", re.IGNORECASE)


def map_payload(payload: Payload) -> dict[str, Any]:
    tid = ident(payload, "tid")
    pid = ident(payload, "pid")
    if tid is None:
        raise AdapterError("tid", "missing; the thread id is required")
    # tid and pid are separate number series, so the prefix keeps a reply from colliding with a thread.
    reply = pid is not None and not _is_first(get(payload, "first"))
    message = _BBCODE.sub("", _QUOTE.sub("", string(payload, "message") or ""))
    text = clean_text(*join_title(string(payload, "subject"), message))
    # replies, views and recommend_add describe the thread; a crawler that copies them onto every reply
    # would otherwise multiply the thread's spread by its number of replies.
    views = None if reply else optional_count(payload, "views")
    return {
        "platform": Platform.forum,
        "post_id": f"p{pid}" if reply else f"t{tid}",
        "text": require_text(text, "subject", "message"),
        "author": short_text(string(payload, "author")),
        "url": url(payload, "url"),
        # dateline is display text ("3 天前") in Discuz's mobile API; dbdateline is always epoch seconds.
        "published_at": when(payload, "dbdateline", "dateline"),
        "root_post_id": f"t{tid}" if reply else None,
        "engagement": {
            "reposts": 0,
            "comments": 0 if reply else count(payload, "replies"),
            "likes": 0 if reply else count(payload, "recommend_add"),
            "extras": {} if views is None else {"views": views},
        },
    }


def _is_first(value: object) -> bool:
    return value in (1, "1", True)
