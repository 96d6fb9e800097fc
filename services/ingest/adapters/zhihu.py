"""知乎 answers and articles as the v4 API returns them."""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
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
    when,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]


def map_payload(payload: Payload) -> dict[str, Any]:
    post_id = ident(payload, "id")
    if post_id is None:
        raise AdapterError("id", "missing; the answer or article id is required")
    kind = string(payload, "type") or "answer"
    question_id = ident(payload, "question.id")
    title = string(payload, "question.title") or string(payload, "title")
    text = clean_text(*join_title(title, string(payload, "content") or string(payload, "excerpt")))
    thanks = optional_count(payload, "thanks_count")
    return {
        "platform": Platform.zhihu,
        "post_id": post_id,
        "text": require_text(text, "question.title", "content", "excerpt"),
        "author": short_text(string(payload, "author.name")),
        "author_type": _author_type(payload),
        "url": _url(kind, post_id, question_id),
        "published_at": when(payload, "created_time", "created"),
        # An answer is not a repost of its question: it has its own audience and counts.
        "root_post_id": None,
        "engagement": {
            "reposts": 0,
            "comments": count(payload, "comment_count"),
            "likes": count(payload, "voteup_count"),
            "extras": {} if thanks is None else {"thanks": thanks},
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
    if string(payload, "author.user_type") == "organization":
        return AuthorType.media
    # badge lists identity verifications and 优秀答主 titles.
    badge = get(payload, "author.badge")
    return AuthorType.kol if isinstance(badge, list) and badge else AuthorType.user
