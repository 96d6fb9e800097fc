"""抖音 awemes in the shapes crawlers store them.

- an aweme object from the web API (detail, search, feeds, a user's post list), bare or in
  `{"aweme_detail": …}` / `{"aweme_info": …}`; list items of the older iesdouyin API have no
  `create_time`, which the aweme_id carries;
- MediaCrawler's record (`aweme_id`, `aweme_type`, `create_time`, `liked_count`, `share_count`).

图文 posts (aweme_type 68, or `images`) live at /note/, videos at /video/.
"""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    aweme_id_time,
    clean_text,
    extras,
    followed_widely,
    get,
    ident,
    inside,
    published,
    require_text,
    short_text,
    spread,
    string,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

_COUNTS = {
    "reposts": ("statistics.share_count", "share_count"),
    "comments": ("statistics.comment_count", "comment_count"),
    "likes": ("statistics.digg_count", "liked_count"),
}
_EXTRAS = {
    "views": "statistics.play_count",
    "favorites": "statistics.collect_count",
    "crawler_favorites": "collected_count",
}
_NOTE_TYPES = {68, "68"}  # aweme_type of a 图文 (image) post; 0 and 4 are videos


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    # The detail API answers {"aweme_detail": {…}}, search results wrap each video in {"aweme_info": {…}}.
    for envelope in ("aweme_detail", "aweme_info"):
        inner = payload.get(envelope)
        if isinstance(inner, dict):
            return inside(envelope, reading, _fields, inner, reading)
    return _fields(payload, reading)


def _fields(payload: Payload, reading: Reading) -> dict[str, Any]:
    aweme_id = ident(payload, "aweme_id")
    if aweme_id is None:
        raise AdapterError("aweme_id", "missing; the video id is required")
    # Newer clients put the words of 图文 posts in caption/preview_title and may leave desc empty.
    text = clean_text(
        string(payload, "desc")
        or string(payload, "caption")
        or string(payload, "preview_title")
        or string(payload, "title")
    )
    images = get(payload, "images")
    kind = get(payload, "aweme_type")
    note = (isinstance(kind, int | str) and kind in _NOTE_TYPES) or (
        isinstance(images, list) and bool(images)
    )
    found = extras(payload, reading, _EXTRAS)
    if "crawler_favorites" in found:
        found["favorites"] = found.pop("crawler_favorites")
    return {
        "platform": Platform.douyin,
        "post_id": aweme_id,
        "text": require_text(text, "desc"),
        "author": short_text(string(payload, "author.nickname") or string(payload, "nickname")),
        "author_type": _author_type(payload, reading),
        "url": f"https://www.douyin.com/{'note' if note else 'video'}/{aweme_id}",
        "published_at": published(
            payload, reading, ("create_time",), id_path="aweme_id", id_time=aweme_id_time, post_id=aweme_id
        ),
        "root_post_id": None,
        "engagement": {
            **spread(payload, reading, _COUNTS, extra_paths=tuple(_EXTRAS.values())),
            "extras": found,
        },
    }


def _author_type(payload: Payload, reading: Reading) -> AuthorType:
    # Blue V (企业认证, enterprise_verify_reason) covers brands and outlets alike and says nothing
    # machine-readable about which: a brand's own account is not media, so it stays a user. Yellow V
    # (个人认证, custom_verify) and big accounts are KOLs.
    if (string(payload, "author.enterprise_verify_reason") or "").strip():
        return AuthorType.user
    if (string(payload, "author.custom_verify") or "").strip():
        return AuthorType.kol
    if followed_widely(payload, reading, "author.follower_count"):
        return AuthorType.kol
    return AuthorType.user
