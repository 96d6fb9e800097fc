"""小红书 notes as the web API returns them: a note_card, or a feed item that wraps one."""

from __future__ import annotations

import re
from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    count,
    extras,
    followed_widely,
    get,
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

# Hashtags come as "#冰箱[话题]#"; the bracket is markup for the app, not words of the author.
_TOPIC = re.compile(r"\[话题\]#")


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    base = "note_card." if isinstance(payload.get("note_card"), dict) else ""
    note_id = ident(payload, f"{base}note_id", "note_id", "id", f"{base}id")
    if note_id is None:
        raise AdapterError(f"{base}note_id", "missing; the note id is required")
    desc = _TOPIC.sub("#", string(payload, f"{base}desc") or "")
    text = clean_text(*join_title(string(payload, f"{base}title"), desc))
    info = f"{base}interact_info"
    # Search cards say shared_count, note details share_count.
    shared = optional_count(payload, f"{info}.shared_count")
    return {
        "platform": Platform.xiaohongshu,
        "post_id": note_id,
        "text": require_text(text, f"{base}title", f"{base}desc"),
        "author": short_text(
            string(payload, f"{base}user.nickname") or string(payload, f"{base}user.nick_name")
        ),
        "author_type": _author_type(payload, reading, f"{base}user"),
        "url": f"https://www.xiaohongshu.com/explore/{note_id}",
        "published_at": when(payload, reading, f"{base}time"),
        "root_post_id": None,
        "engagement": {
            "reposts": shared if shared is not None else count(payload, f"{info}.share_count"),
            "comments": count(payload, f"{info}.comment_count"),
            "likes": count(payload, f"{info}.liked_count"),
            "extras": extras(payload, reading, {"favorites": f"{info}.collected_count"}),
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
