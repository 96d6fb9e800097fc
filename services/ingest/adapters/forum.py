"""Forum threads and replies as Discuz! (and crawlers of it) name them: tid, pid, subject, message."""

from __future__ import annotations

import re
from typing import Any

from schemas.events import Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    extras,
    get,
    ident,
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

# A quote repeats someone else's words; counting them again would double every match. Quotes nest, so
# the tags are paired with a depth counter in one pass; `\[quote\].*?\[/quote\]` rescanned to the end
# for every unclosed [quote] (140 KB took 10 s).
_QUOTE_TAG = re.compile(r"\[(/?)quote(?:=[^\[\]]*)?\]", re.IGNORECASE)
# "[" cannot appear inside a tag, so each attempt stops at the next bracket: linear.
_BBCODE = re.compile(r"\[/?[a-z]+(?:=[^\[\]]*)?\]", re.IGNORECASE)
# Discuz prepends "本帖最后由 某人 于 2019-6-27 23:11 编辑" to an edited post (as [i=s] BBCode, or as
# <i class="pstatus"> in the mobile API): the forum's words, not the author's. Always a line of its own.
_EDITED_MAX = 120


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    tid = ident(payload, "tid")
    pid = ident(payload, "pid")
    if tid is None:
        raise AdapterError("tid", "missing; the thread id is required")
    # tid and pid are separate number series, so the prefix keeps a reply from colliding with a thread.
    reply = pid is not None and not _is_first(get(payload, "first"))
    message = _BBCODE.sub("", _without_quotes(string(payload, "message") or ""))
    text = clean_text(*join_title(string(payload, "subject"), message))
    text = "\n".join(line for line in text.split("\n") if not _edit_note(line))
    # replies, views and recommend_add describe the thread; a crawler that copies them onto every reply
    # would otherwise multiply the thread's spread by its number of replies.
    views = {} if reply else extras(payload, reading, {"views": "views"})
    if reply:
        # A reply has no counts of its own on Discuz: its spread is its thread's. Unknown, not 0.
        counts: dict[str, int | None] = {"reposts": 0, "comments": None, "likes": None}
    else:
        counts = spread(
            payload,
            reading,
            {"comments": ("replies",), "likes": ("recommend_add",)},
            extra_paths=("views",),
            fixed={"reposts": 0},
        )
    return {
        "platform": Platform.forum,
        "post_id": f"p{pid}" if reply else f"t{tid}",
        "text": require_text(text, "subject", "message"),
        "author": short_text(string(payload, "author")),
        "url": url(payload, "url"),
        # dateline is display text ("3 天前") in Discuz's mobile API; dbdateline is always epoch seconds.
        "published_at": when(payload, reading, "dbdateline", "dateline"),
        "root_post_id": f"t{tid}" if reply else None,
        "engagement": {**counts, "extras": views},
    }


def _edit_note(line: str) -> bool:
    return (
        len(line) <= _EDITED_MAX
        and line.startswith("本帖最后由 ")
        and line.endswith("编辑")
        and " 于 " in line
    )


def _is_first(value: object) -> bool:
    return value in (1, "1", True)


def _without_quotes(text: str) -> str:
    """`text` without its [quote]…[/quote] blocks; an unclosed quote keeps its words (the tag goes later)."""
    kept: list[str] = []
    depth = 0
    start = 0  # where the text to keep (depth 0) or the outermost open quote began
    for m in _QUOTE_TAG.finditer(text):
        if not m.group(1):
            if depth == 0:
                kept.append(text[start : m.start()])
                start = m.start()
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                start = m.end()
    kept.append(text[start:])
    return "".join(kept)
