"""知乎 answers, articles and 想法 in the shapes crawlers store them.

- an answer, article or pin object of the v4 API;
- an activity of a user's timeline `{"verb": "MEMBER_ANSWER_QUESTION", "target": {…}}`;
- a search result `{"type": "search_result", "object": {…}}`;
- MediaCrawler's record (`content_id`, `content_type`, `content_text`, `voteup_count`, `created_time`).
"""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    extras,
    get,
    ident,
    inside,
    join_title,
    require_text,
    short_text,
    spread,
    string,
    url,
    when,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]


# Verbs whose activity time is the target's publish time (the author wrote it then); a vote-up is not.
_CREATED = ("CREATE", "ANSWER_QUESTION")


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    for envelope in ("target", "object"):
        inner = payload.get(envelope)
        if isinstance(inner, dict):
            verb = string(payload, "verb") or ""
            if not any(k in inner for k in ("created_time", "created")) and any(v in verb for v in _CREATED):
                inner = {**inner, "created_time": get(payload, "created_time")}
            target = inner
            return inside(envelope, reading, _object, target, reading)
    if "content_id" in payload:
        return _crawler(payload, reading)
    return _object(payload, reading)


def _crawler(payload: Payload, reading: Reading) -> dict[str, Any]:
    post_id = ident(payload, "content_id")
    if post_id is None:
        raise AdapterError("content_id", "missing; the answer or article id is required")
    kind = string(payload, "content_type") or "answer"
    text = clean_text(
        *join_title(string(payload, "title"), string(payload, "content_text") or string(payload, "desc"))
    )
    return {
        "platform": Platform.zhihu,
        "post_id": post_id,
        "text": require_text(text, "title", "content_text", "desc"),
        "author": short_text(string(payload, "user_nickname")),
        "author_type": AuthorType.user,
        "url": url(payload, "content_url") or _url(kind, post_id, ident(payload, "question_id")),
        "published_at": when(payload, reading, "created_time"),
        "root_post_id": None,
        "engagement": spread(
            payload,
            reading,
            {"comments": ("comment_count",), "likes": ("voteup_count",)},
            fixed={"reposts": 0},
        ),
    }


def _object(payload: Payload, reading: Reading) -> dict[str, Any]:
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
        # An answer or article cannot be reposted on 知乎: its reposts are a true 0.
        "engagement": {
            **spread(
                payload,
                reading,
                {"comments": ("comment_count",), "likes": ("voteup_count",)},
                extra_paths=("thanks_count",),
                fixed={"reposts": 0},
            ),
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
        "engagement": spread(
            payload,
            reading,
            {
                "reposts": ("repin_count",),
                "comments": ("comment_count",),
                "likes": ("reaction_count", "like_count"),
            },
        ),
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
