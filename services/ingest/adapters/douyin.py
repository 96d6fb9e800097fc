"""抖音 aweme objects as the web API (aweme/v1/web/aweme/detail, search, feeds) returns them."""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    clean_text,
    count,
    ident,
    optional_count,
    require_text,
    short_text,
    string,
    when,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

_EXTRAS = {"views": "statistics.play_count", "favorites": "statistics.collect_count"}


def map_payload(payload: Payload) -> dict[str, Any]:
    aweme_id = ident(payload, "aweme_id")
    if aweme_id is None:
        raise AdapterError("aweme_id", "missing; the video id is required")
    # Newer clients put the words of 图文 posts in caption/preview_title and may leave desc empty.
    text = clean_text(
        string(payload, "desc") or string(payload, "caption") or string(payload, "preview_title")
    )
    extras = {name: optional_count(payload, path) for name, path in _EXTRAS.items()}
    return {
        "platform": Platform.douyin,
        "post_id": aweme_id,
        "text": require_text(text, "desc"),
        "author": short_text(string(payload, "author.nickname")),
        "author_type": _author_type(payload),
        "url": f"https://www.douyin.com/video/{aweme_id}",
        "published_at": when(payload, "create_time"),
        "root_post_id": None,
        "engagement": {
            "reposts": count(payload, "statistics.share_count"),
            "comments": count(payload, "statistics.comment_count"),
            "likes": count(payload, "statistics.digg_count"),
            "extras": {k: v for k, v in extras.items() if v is not None},
        },
    }


def _author_type(payload: Payload) -> AuthorType:
    # Blue V (企业认证) accounts carry enterprise_verify_reason, yellow V (个人认证) custom_verify.
    if (string(payload, "author.enterprise_verify_reason") or "").strip():
        return AuthorType.media
    if (string(payload, "author.custom_verify") or "").strip():
        return AuthorType.kol
    return AuthorType.user
