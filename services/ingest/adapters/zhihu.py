"""知乎 answers and articles as the v4 API returns them."""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    count,
    extras,
    get,
    ident,
    join_title,
    require_text,
    short_text,
    string,
    when,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    post_id = ident(payload, "id")
    if post_id is None:
        raise AdapterError("id", "missing; the answer or article id is required")
    kind = string(payload, "type") or "answer"
    if kind == "pin":
        return _pin(payload, reading, post_id)
    question_id = ident(payload, "question.id")
    title = string(payload, "question.title") or string(payload, "title")
    text = clean_text(*join_title(title, string(payload, "content") or string(payload, "excerpt")))
    return {
        "platform": Platform.zhihu,
        "post_id": post_id,
        "text": require_text(text, "question.title", "content", "excerpt"),
        "author": short_text(string(payload, "author.name")),
        "author_type": _author_type(payload),
        "url": _url(kind, post_id, question_id),
        "published_at": when(payload, reading, "created_time", "created"),
        # An answer is not a repost of its question: it has its own audience and counts.
        "root_post_id": None,
        "engagement": {
            "reposts": 0,
            "comments": count(payload, "comment_count"),
            "likes": count(payload, "voteup_count"),
            "extras": extras(payload, reading, {"thanks": "thanks_count"}),
        },
    }


def _pin(payload: Payload, reading: Reading, post_id: str) -> dict[str, Any]:
    """A 想法 (pin): its content is a list of blocks, of which the text blocks are the words."""
    blocks = get(payload, "content")
    if isinstance(blocks, str):
        parts = [blocks]
    elif isinstance(blocks, list):
        parts = [
            b["content"]
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("content"), str)
        ]
    elif blocks is None:
        parts = []
    else:
        raise AdapterError("content", "expected a string or a list of content blocks")
    text = clean_text(*parts) or clean_text(string(payload, "excerpt_title"))
    return {
        "platform": Platform.zhihu,
        "post_id": post_id,
        "text": require_text(text, "content", "excerpt_title"),
        "author": short_text(string(payload, "author.name")),
        "author_type": _author_type(payload),
        "url": f"https://www.zhihu.com/pin/{post_id}",
        "published_at": when(payload, reading, "created", "created_time"),
        "root_post_id": ident(payload, "origin_pin.id"),
        "engagement": {
            "reposts": count(payload, "repin_count"),
            "comments": count(payload, "comment_count"),
            "likes": count(payload, "reaction_count") or count(payload, "like_count"),
        },
    }


def _url(kind: str, post_id: str, question_id: str | None) -> str | None:
    # The payload's own `url` points at api.zhihu.com, which people cannot open.
    if kind == "answer" and question_id:
        return f"https://www.zhihu.com/question/{question_id}/answer/{post_id}"
    if kind == "article":
        return f"https://zhuanlan.zhihu.com/p/{post_id}"
    return None


def _author_type(payload: Payload) -> AuthorType:
    # 机构号 (user_type organization) are media outlets and companies alike, the brand's own among them,
    # and the payload does not say which: not media.
    if string(payload, "author.user_type") == "organization":
        return AuthorType.user
    # badge lists identity verifications and 优秀答主 titles.
    badge = get(payload, "author.badge")
    return AuthorType.kol if isinstance(badge, list) and badge else AuthorType.user
