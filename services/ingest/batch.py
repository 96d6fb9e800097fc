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
from services.ingest.timeparse import TimeBounds

__all__ = ["Batch", "Body", "Convert", "native", "normalised", "parse_body", "to_posts"]

# (item, now, warnings) -> Post; notes about dropped optional fields go into warnings.
Convert = Callable[[dict[str, Any], datetime, list[str]], Post]


@dataclass
class Batch:
    posts: list[tuple[int, Post]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: dict[int, list[str]] = field(default_factory=dict)
    rejected: set[int] = field(default_factory=set)  # indexes of refused items; one may have many errors


@dataclass(frozen=True)
class Body:
    """A parsed request body: its items, whether it was one bare object, and for NDJSON each item's line."""

    items: list[Any]
    single: bool
    lines: list[int] | None = None


class _BadLine:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _error(loc: list[Any], msg: str, kind: str, line: int | None) -> dict[str, Any]:
    error: dict[str, Any] = {"loc": loc, "msg": msg, "type": kind}
    if line is not None:
        error["line"] = line
    return error


def parse_body(body: bytes, content_type: str) -> Body:
    """NDJSON lines that are not JSON become per-line errors, not a failed request.

    Raises json.JSONDecodeError for a JSON body that does not parse.
    """
    if content_type.split(";")[0].strip().lower() in ("application/x-ndjson", "application/ndjson"):
        items: list[Any] = []
        lines: list[int] = []
        for number, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            lines.append(number)
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                items.append(_BadLine(f"invalid JSON: {exc}"))
        return Body(items, single=False, lines=lines)
    data = json.loads(body)
    return Body(data, single=False) if isinstance(data, list) else Body([data], single=True)


def _check_times(post: Post, now: datetime, bounds: TimeBounds) -> None:
    # A snapshot dated 2099 would shadow every later real snapshot downstream; one from 1970 is a misread.
    for name in ("event_time", "published_at"):
        problem = bounds.problem(getattr(post, name), now)
        if problem is not None:
            raise AdapterError(name, problem)
    if post.published_at > post.event_time + bounds.max_skew:
        raise AdapterError(
            "published_at",
            f"{post.published_at.isoformat()} is after event_time {post.event_time.isoformat()}, "
            "when the post was observed",
        )


def normalised(max_text_chars: int, bounds: TimeBounds | None = None) -> Convert:
    limits = bounds or TimeBounds()

    def convert(item: dict[str, Any], now: datetime, warnings: list[str]) -> Post:
        text = item.get("text")
        if isinstance(text, str) and len(text) > max_text_chars:
            raise AdapterError("text", f"{len(text)} characters; the limit is {max_text_chars}")
        if "event_time" not in item:
            item = {**item, "event_time": now.isoformat()}
        post = Post.model_validate(item)
        _check_times(post, now, limits)
        return post

    return convert


def native(platform: str, max_text_chars: int | None = None, bounds: TimeBounds | None = None) -> Convert:
    def convert(item: dict[str, Any], now: datetime, warnings: list[str]) -> Post:
        return adapt(platform, item, now, bounds=bounds, warnings=warnings, max_text_chars=max_text_chars)

    return convert


def to_posts(body: Body, convert: Convert, now: datetime) -> Batch:
    batch = Batch()
    for i, item in enumerate(body.items):
        loc: list[Any] = ["body"] if body.single else ["body", i]
        line = body.lines[i] if body.lines is not None else None
        errors_before = len(batch.errors)
        if isinstance(item, _BadLine):
            batch.errors.append(_error(loc, item.reason, "json_invalid", line))
        elif not isinstance(item, dict):
            batch.errors.append(_error(loc, "expected a JSON object (a post)", "model_type", line))
        else:
            warnings: list[str] = []
            try:
                batch.posts.append((i, convert(item, now, warnings)))
            except ValidationError as exc:
                batch.errors.extend(
                    _error([*loc, *e["loc"]], e["msg"], e["type"], line)
                    for e in exc.errors(include_url=False)
                )
            except AdapterError as exc:
                batch.errors.append(_error([*loc, *exc.field.split(".")], exc.reason, "value_error", line))
            else:
                if warnings:
                    batch.warnings[i] = warnings
        if len(batch.errors) > errors_before:
            batch.rejected.add(i)
    return batch
