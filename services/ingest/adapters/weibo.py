"""Weibo statuses as the web and mobile APIs return them (a bare status, or m.weibo.cn's {"mblog": …})."""

from __future__ import annotations

import re
from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    count,
    followed_widely,
    get,
    ident,
    require_text,
    short_text,
    string,
    when,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

# user.verified_type: 0 is a personal (orange/gold V) verification; 1-7 are institutions with a blue V:
# 1 government, 2 company, 3 media, 4 campus, 5 website, 6 app, 7 organisation; 200/220 are 微博达人.
# Only government, media and websites speak as media. A company's blue V is often the brand's own
# account, and calling it media would make the brand's statement look like press coverage.
_MEDIA = {1, 3, 5}
_ORGANISATION = {2, 4, 6, 7}
_PERSONAL = {0, 200, 220}
_INTEGER = re.compile(r"-?[0-9]+")


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    base = "mblog." if isinstance(payload.get("mblog"), dict) else ""
    post_id = ident(payload, f"{base}idstr", f"{base}id", f"{base}mid")
    if post_id is None:
        raise AdapterError(f"{base}id", "missing; the status id is required")
    text = clean_text(
        string(payload, f"{base}longText.longTextContent")
        or string(payload, f"{base}text")
        or string(payload, f"{base}text_raw")
    )
    user_id = ident(payload, f"{base}user.idstr", f"{base}user.id")
    bid = ident(payload, f"{base}mblogid", f"{base}bid")
    link = f"https://weibo.com/{user_id}/{bid}" if user_id and bid else f"https://m.weibo.cn/detail/{post_id}"
    return {
        "platform": Platform.weibo,
        "post_id": post_id,
        "text": require_text(text, f"{base}text"),
        "author": short_text(string(payload, f"{base}user.screen_name")),
        "author_type": _author_type(payload, reading, f"{base}user"),
        "url": link,
        "published_at": when(payload, reading, f"{base}created_at"),
        # Weibo always points retweeted_status at the original, never at an intermediate repost.
        "root_post_id": ident(
            payload,
            f"{base}retweeted_status.idstr",
            f"{base}retweeted_status.id",
            f"{base}retweeted_status.mid",
        ),
        "engagement": {
            "reposts": count(payload, f"{base}reposts_count"),
            "comments": count(payload, f"{base}comments_count"),
            "likes": count(payload, f"{base}attitudes_count"),
        },
    }


def _author_type(payload: Payload, reading: Reading, user: str) -> AuthorType:
    kind = get(payload, f"{user}.verified_type")
    if isinstance(kind, str) and len(kind) < 8 and _INTEGER.fullmatch(kind):
        kind = int(kind)
    if isinstance(kind, int) and not isinstance(kind, bool):
        if kind in _MEDIA:
            return AuthorType.media
        if kind in _ORGANISATION:
            return AuthorType.user
        if kind in _PERSONAL:
            return AuthorType.kol
    if get(payload, f"{user}.verified") is True:
        return AuthorType.kol
    return AuthorType.kol if followed_widely(payload, reading, f"{user}.followers_count") else AuthorType.user
