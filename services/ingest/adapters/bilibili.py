"""B站 videos as /x/web-interface/view returns them (the `data` object)."""

from __future__ import annotations

from typing import Any

from schemas.events import Platform
from services.ingest.adapters._fields import (
    Payload,
    clean_text,
    count,
    ident,
    join_title,
    optional_count,
    require_text,
    short_text,
    string,
    when,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

_EXTRAS = {
    "views": "stat.view",
    "coins": "stat.coin",
    "favorites": "stat.favorite",
    "danmaku": "stat.danmaku",
}


def map_payload(payload: Payload) -> dict[str, Any]:
    bvid = ident(payload, "bvid")
    aid = ident(payload, "aid")
    if bvid is None and aid is None:
        raise AdapterError("bvid or aid", "missing; the video id is required")
    video = bvid or f"av{aid}"
    desc = string(payload, "desc")
    if desc is not None and desc.strip() == "-":
        desc = None  # B站 shows "-" for an empty description
    text = clean_text(*join_title(string(payload, "title"), desc))
    extras = {name: optional_count(payload, path) for name, path in _EXTRAS.items()}
    return {
        "platform": Platform.bilibili,
        "post_id": video,
        "text": require_text(text, "title", "desc"),
        "author": short_text(string(payload, "owner.name")),
        "url": f"https://www.bilibili.com/video/{video}",
        "published_at": when(payload, "pubdate", "ctime"),
        "root_post_id": None,
        "engagement": {
            "reposts": count(payload, "stat.share"),
            "comments": count(payload, "stat.reply"),
            "likes": count(payload, "stat.like"),
            "extras": {k: v for k, v in extras.items() if v is not None},
        },
    }
