"""小红书 notes in the shapes crawlers store them.

- the web API's `note_card` (`/api/sns/web/v1/feed`), or its feed or search item
  `{"id": …, "model_type": "note", "note_card": {…}}` (search cards have `display_title`, only
  `liked_count` and no time, which the note id carries);
- the app API's search item `{"model_type": "note", "note": {…, "timestamp": …}}`, its note detail
  (`time`, `comments_count`, `shared_count`) and note list items (`likes`);
- MediaCrawler's record (`note_id`, `time` in ms, `liked_count`, `comment_count`, `share_count`).
"""

from __future__ import annotations

import re
from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    extras,
    followed_widely,
    get,
    ident,
    inside,
    join_title,
    note_id_time,
    published,
    require_text,
    short_text,
    spread,
    string,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

# Hashtags come as "#冰箱[话题]#"; the bracket is markup for the app, not words of the author.
_TOPIC = re.compile(r"\[话题\]#")

_COUNTS = {
    # Search cards and the app say shared_count, note details share_count.
    "reposts": ("interact_info.shared_count", "interact_info.share_count", "shared_count", "share_count"),
    "comments": ("interact_info.comment_count", "comments_count", "comment_count"),
    "likes": ("interact_info.liked_count", "liked_count", "likes"),
}
_FAVORITES = ("interact_info.collected_count", "collected_count")


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    for envelope in ("note_card", "note"):
        inner = payload.get(envelope)
        if isinstance(inner, dict):
            # The item's id is the note's when the card has none (search results).
            outer_id = ident(payload, "id", "note_id")
            return inside(envelope, reading, _fields, inner, reading, outer_id)
    return _fields(payload, reading, None)


def _fields(payload: Payload, reading: Reading, outer_id: str | None) -> dict[str, Any]:
    note_id = ident(payload, "note_id", "id") or outer_id
    if note_id is None:
        raise AdapterError("note_id", "missing; the note id is required")
    desc = _TOPIC.sub("#", string(payload, "desc") or "")
    title = string(payload, "title") or string(payload, "display_title")
    text = clean_text(*join_title(title, desc))
    favorites = next((p for p in _FAVORITES if get(payload, p) is not None), _FAVORITES[0])
    return {
        "platform": Platform.xiaohongshu,
        "post_id": note_id,
        "text": require_text(text, "title", "desc"),
        "author": short_text(
            string(payload, "user.nickname")
            or string(payload, "user.nick_name")
            or string(payload, "user.name")
            or string(payload, "nickname")
        ),
        "author_type": _author_type(payload, reading, "user"),
        "url": f"https://www.xiaohongshu.com/explore/{note_id}",
        "published_at": published(
            payload, reading, ("time", "timestamp"), id_path="note_id", id_time=note_id_time, post_id=note_id
        ),
        "root_post_id": None,
        "engagement": {
            **spread(payload, reading, _COUNTS, extra_paths=_FAVORITES),
            "extras": extras(payload, reading, {"favorites": favorites}),
        },
    }


def _author_type(payload: Payload, reading: Reading, user: str) -> AuthorType:
    # red_official_verify_type: 1 个人认证 (a person: KOL), 2 企业/机构认证 (brands included: not media,
    # 小红书 has no media verification of its own). Otherwise the follower count decides.
    kind = get(payload, f"{user}.red_official_verify_type")
    if kind in (1, "1"):
        return AuthorType.kol
    if kind in (2, "2"):
        return AuthorType.user
    if followed_widely(payload, reading, f"{user}.fans", f"{user}.fans_count"):
        return AuthorType.kol
    return AuthorType.user
