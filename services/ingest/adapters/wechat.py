"""微信公众号 articles as crawlers record them: the appmsg list item plus its read/like counts; 视频号
videos go to wechat_channels."""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters import wechat_channels
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    count,
    extras,
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
    if wechat_channels.is_channels(payload):
        return wechat_channels.map_payload(payload, reading)
    link = url(payload, "url", "link", "content_url")
    msgid = ident(payload, "msgid")
    idx = ident(payload, "idx")
    # One push (msgid) carries up to eight articles told apart by idx.
    if msgid is not None:
        post_id = f"{msgid}_{idx}" if idx else msgid
    elif link is not None:
        post_id = hashed_id(link)
    else:
        raise AdapterError("msgid or url", "missing; an article needs its msgid or its link")
    text = clean_text(
        *join_title(string(payload, "title"), string(payload, "content") or string(payload, "digest"))
    )
    return {
        "platform": Platform.wechat,
        "post_id": post_id,
        "text": require_text(text, "title", "content", "digest"),
        "author": short_text(string(payload, "account_name")),
        "author_type": AuthorType.media,
        "url": link,
        "published_at": when(payload, reading, "publish_time", "create_time"),
        "root_post_id": None,
        "engagement": {
            "reposts": count(payload, "share_num"),
            "comments": count(payload, "comment_num"),
            "likes": count(payload, "like_num"),
            "extras": extras(payload, reading, {"views": "read_num"}),
        },
    }
