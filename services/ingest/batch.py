"""Request bodies to posts: one object, a JSON array or NDJSON; per-item errors with index and field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.events import Post
from services.common import json
from services.ingest.adapters import AdapterError, adapt

__all__ = ["Batch", "Convert", "native", "normalised", "parse_body", "to_posts"]

Convert = Callable[[dict[str, Any], datetime], Post]


@dataclass
class Batch:
    posts: list[tuple[int, Post]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


class _BadLine:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _error(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def parse_body(body: bytes, content_type: str) -> tuple[list[Any], bool]:
    """(items, single). NDJSON lines that are not JSON become per-line errors, not a failed request.

    Raises json.JSONDecodeError for a JSON body that does not parse.
    """
    if content_type.split(";")[0].strip().lower() in ("application/x-ndjson", "application/ndjson"):
        items: list[Any] = []
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                items.append(_BadLine(f"invalid JSON: {exc}"))
        return items, False
    data = json.loads(body)
    return (data, False) if isinstance(data, list) else ([data], True)


def normalised(max_text_chars: int) -> Convert:
    def convert(item: dict[str, Any], now: datetime) -> Post:
        text = item.get("text")
        if isinstance(text, str) and len(text) > max_text_chars:
            raise AdapterError("text", f"{len(text)} characters; the limit is {max_text_chars}")
        if "event_time" not in item:
            item = {**item, "event_time": now.isoformat()}
        return Post.model_validate(item)

    return convert


def native(platform: str) -> Convert:
    def convert(item: dict[str, Any], now: datetime) -> Post:
        return adapt(platform, item, now)

    return convert


def to_posts(items: list[Any], single: bool, convert: Convert, now: datetime) -> Batch:
    batch = Batch()
    for i, item in enumerate(items):
        loc: list[Any] = ["body"] if single else ["body", i]
        if isinstance(item, _BadLine):
            batch.errors.append(_error(loc, item.reason, "json_invalid"))
        elif not isinstance(item, dict):
            batch.errors.append(_error(loc, "expected a JSON object (a post)", "model_type"))
        else:
            try:
                batch.posts.append((i, convert(item, now)))
            except ValidationError as exc:
                batch.errors.extend(
                    _error([*loc, *e["loc"]], e["msg"], e["type"]) for e in exc.errors(include_url=False)
                )
            except AdapterError as exc:
                batch.errors.append(_error([*loc, *exc.field.split(".")], exc.reason, "value_error"))
    return batch
