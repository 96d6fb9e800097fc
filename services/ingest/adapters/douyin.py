"""抖音 aweme objects as the web API (aweme/v1/web/aweme/detail, search, feeds) returns them."""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    count,
    extras,
    followed_widely,
    ident,
    require_text,
    short_text,
    string,
    when,
    within,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

_EXTRAS = {"views": "statistics.play_count", "favorites": "statistics.collect_count"}


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    # The detail API answers {"aweme_detail": {…}}, search results wrap each video in {"aweme_info": {…}}.
    for envelope in ("aweme_detail", "aweme_info"):
        inner = payload.get(envelope)
        if isinstance(inner, dict):
            return _map(inner, reading, f"{envelope}.")
    return _map(payload, reading, "")


def _map(payload: Payload, reading: Reading, where: str) -> dict[str, Any]:
    try:
        return _fields(payload, reading)
    except AdapterError as exc:
        if not where:
            raise
        raise within(where.rstrip("."), exc) from None


def _fields(payload: Payload, reading: Reading) -> dict[str, Any]:
    aweme_id = ident(payload, "aweme_id")
    if aweme_id is None:
        raise AdapterError("aweme_id", "missing; the video id is required")
    # Newer clients put the words of 图文 posts in caption/preview_title and may leave desc empty.
    text = clean_text(
        string(payload, "desc") or string(payload, "caption") or string(payload, "preview_title")
    )
    return {
        "platform": Platform.douyin,
        "post_id": aweme_id,
        "text": require_text(text, "desc"),
        "author": short_text(string(payload, "author.nickname")),
        "author_type": _author_type(payload, reading),
        "url": f"https://www.douyin.com/video/{aweme_id}",
        "published_at": when(payload, reading, "create_time"),
        "root_post_id": None,
        "engagement": {
            "reposts": count(payload, "statistics.share_count"),
            "comments": count(payload, "statistics.comment_count"),
            "likes": count(payload, "statistics.digg_count"),
            "extras": extras(payload, reading, _EXTRAS),
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
