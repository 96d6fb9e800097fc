"""Typed reads from native payloads and the text clean-up every adapter shares.

Every read names its dotted path, so a failure is an AdapterError that says which field was wrong.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from schemas.events import Post
from services.ingest.adapters.exceptions import AdapterError
from services.ingest.timeparse import parse_time

__all__ = [
    "Payload",
    "checked_url",
    "clean_text",
    "count",
    "get",
    "hashed_id",
    "ident",
    "join_title",
    "optional_count",
    "parse_count",
    "require_text",
    "short_text",
    "string",
    "url",
    "when",
]

Payload = Mapping[str, Any]


def _max_length(field: str) -> int:
    for meta in Post.model_fields[field].metadata:
        limit = getattr(meta, "max_length", None)
        if isinstance(limit, int):
            return limit
    raise LookupError(f"Post.{field} has no max_length")


# Read from the model so the caps follow the schema if it changes.
_TEXT_MAX = _max_length("text")
_ID_MAX = _max_length("post_id")
_AUTHOR_MAX = _max_length("author")
_URL_MAX = _max_length("url")
_COUNT_MAX = 10**12  # Engagement's Count bound

_UNITS = {"": 1, "k": 1_000, "千": 1_000, "w": 10_000, "万": 10_000, "亿": 100_000_000}
_COUNT = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(k|千|w|万|亿)?\s*\+?", re.IGNORECASE)

_SCRIPT = re.compile(r"<\s*(script|style)\b[^>]*>.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
# Platforms draw emoticons as <img alt="[怒]">: the alt text is the emotion, worth keeping.
_IMG_ALT = re.compile(r"<img\b[^>]*?\balt\s*=\s*([\"'])(.*?)\1[^>]*>", re.IGNORECASE | re.DOTALL)
_BREAK = re.compile(r"<\s*/?\s*(?:br|p|div|li|tr|h[1-6]|blockquote)\b[^>]*>", re.IGNORECASE)
# A tag must start with a letter, so "价格<100元" survives.
_TAG = re.compile(r"<\s*/?\s*[A-Za-z][^>]*>")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u3000]+")


def get(payload: Payload, path: str) -> Any:
    """The value at dotted `path`, or None when it (or an object on the way) is missing or null."""
    node: Any = payload
    walked: list[str] = []
    for key in path.split("."):
        if node is None:
            return None
        if not isinstance(node, Mapping):
            raise AdapterError(".".join(walked) or "payload", f"expected an object, got {_kind(node)}")
        node = node.get(key)
        walked.append(key)
    return node


def string(payload: Payload, path: str) -> str | None:
    value = get(payload, path)
    if value is None or isinstance(value, str):
        return value
    raise AdapterError(path, f"expected a string, got {_kind(value)}")


def ident(payload: Payload, *paths: str) -> str | None:
    """The first id present among `paths`, as a string; ints are ids too, floats have lost digits."""
    for path in paths:
        value = get(payload, path)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise AdapterError(path, f"expected a string or integer id, got {_kind(value)}")
        text = str(value).strip()
        if not text:
            continue
        if len(text) > _ID_MAX:
            raise AdapterError(path, f"id is {len(text)} characters; the limit is {_ID_MAX}")
        return text
    return None


def hashed_id(*parts: str) -> str:
    """A stable post id for sources that only give a URL or a free-form id."""
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:32]


def parse_count(value: object) -> int:
    """A count as platforms print it: 123, "1,234", "1.2万", "3亿", "10w+", "1.5k"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a count, got a boolean {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a count, got {value!r}")
        number = int(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "").replace("，", "")
        if not text:
            return 0  # Xiaohongshu prints an empty count for none
        m = _COUNT.fullmatch(text)
        if m is None:
            raise ValueError(f"expected a count like 123, '1.2万', '3亿' or '10w+', got {value!r}")
        # Decimal: 1.15万 is 11500, where float arithmetic gives 11499.
        number = int(Decimal(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
    else:
        raise ValueError(f"expected a count (number or string like '1.2万'), got {_kind(value)}")
    if number < 0:
        raise ValueError(f"a count cannot be negative, got {value!r}")
    if number > _COUNT_MAX:
        raise ValueError(f"count {value!r} is above the limit of {_COUNT_MAX}")
    return number


def optional_count(payload: Payload, path: str) -> int | None:
    value = get(payload, path)
    if value is None:
        return None
    try:
        return parse_count(value)
    except ValueError as exc:
        raise AdapterError(path, str(exc)) from None


def count(payload: Payload, path: str) -> int:
    """A count that a platform leaves out when it is zero."""
    return optional_count(payload, path) or 0


def when(payload: Payload, *paths: str) -> datetime:
    """The first time present among `paths`, in UTC."""
    for path in paths:
        value = get(payload, path)
        if value is None or value == "":
            continue
        try:
            return parse_time(value)
        except ValueError as exc:
            raise AdapterError(path, str(exc)) from None
    raise AdapterError(" or ".join(paths), "missing; the publish time is required")


def url(payload: Payload, *paths: str) -> str | None:
    for path in paths:
        value = string(payload, path)
        if value and value.strip():
            return checked_url(value.strip())
    return None


def checked_url(value: str) -> str | None:
    # A link longer than the schema allows is dropped rather than cut: a cut link is a wrong link,
    # and the post matters more than its link.
    return value if len(value) <= _URL_MAX else None


def short_text(value: str | None) -> str | None:
    """An author name: NFC, no markup, capped; None when nothing is left."""
    if value is None:
        return None
    text = clean_text(value)[:_AUTHOR_MAX].strip()
    return text or None


def join_title(title: str | None, body: str | None) -> list[str]:
    """Title and body as parts of the text, without the title twice when the body starts with it."""
    title = (title or "").strip()
    body = (body or "").strip()
    if title and body.startswith(title):
        return [body]
    return [p for p in (title, body) if p]


def clean_text(*parts: str | None) -> str:
    """Parts joined by newlines, HTML stripped and unescaped, NFC, blank runs collapsed, capped."""
    joined = "\n".join(p for p in parts if p)
    text = _SCRIPT.sub(" ", joined)
    text = _COMMENT.sub(" ", text)
    text = _IMG_ALT.sub(lambda m: m.group(2), text)
    text = _BREAK.sub("\n", text)
    text = _TAG.sub("", text)
    text = unicodedata.normalize("NFC", html.unescape(text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    text = "\n".join(line for line in lines if line)
    # Over-long posts are cut, not refused: their start is what gets matched and shown.
    return text[:_TEXT_MAX].strip()


def require_text(text: str, *paths: str) -> str:
    if not text:
        raise AdapterError(" + ".join(paths), "no text left after removing markup; a post needs text")
    return text


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
