"""Request bodies to posts: one object, a JSON array or NDJSON; per-item errors with index and field.

Every item is read at an observation time (when the crawler read its counts): the item's own
(`event_time` of a normalised post, `observed_at` of a native envelope), else the request's
`?observed_at=`, else the time the request arrived. Each is held to the same bounds as publish times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.events import Post
from services.common import json
from services.ingest.adapters import AdapterError, adapt
from services.ingest.timeparse import TimeBounds, parse_time

__all__ = ["Batch", "Body", "Convert", "native", "normalised", "observed_time", "parse_body", "to_posts"]

# (item, now, observed_at, warnings) -> Post: `now` bounds every time, `observed_at` is the default event
# time; notes about dropped optional fields and derived values go into warnings.
Convert = Callable[[dict[str, Any], datetime, datetime, list[str]], Post]


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

    Raises json.JSONDecodeError for a JSON body that does not parse or that repeats a key in an object
    (last-wins would let `{"likes": 5, "likes": 500000}` through as either, unseen).
    """
    if content_type.split(";")[0].strip().lower() in ("application/x-ndjson", "application/ndjson"):
        items: list[Any] = []
        lines: list[int] = []
        for number, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            lines.append(number)
            try:
                items.append(json.loads_unique(line))
            except json.JSONDecodeError as exc:
                items.append(_BadLine(f"invalid JSON: {exc}"))
        return Body(items, single=False, lines=lines)
    data = json.loads_unique(body)
    return Body(data, single=False) if isinstance(data, list) else Body([data], single=True)


def _check_times(post: Post, now: datetime, bounds: TimeBounds) -> None:
    # A snapshot dated 2099 would shadow every later real snapshot downstream; one from 1970 is a misread.
    for name in ("event_time", "published_at"):
        when = getattr(post, name)
        problem = None if when is None else bounds.problem(when, now)
        if problem is not None:
            raise AdapterError(name, problem)
    if post.published_at is not None and post.published_at > post.event_time + bounds.max_skew:
        raise AdapterError(
            "published_at",
            f"{post.published_at.isoformat()} is after event_time {post.event_time.isoformat()}, "
            "when the post was observed",
        )


def observed_time(value: object, now: datetime, bounds: TimeBounds, field: str) -> datetime:
    """A crawl time sent with the request or an item, checked as publish times are: not before
    `bounds.earliest`, not after `now` plus the allowed clock skew. Raises AdapterError naming `field`."""
    if isinstance(value, datetime):
        parsed = value
    else:
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise AdapterError(field, "expected a time such as '2026-11-21T10:00:00+08:00' or epoch seconds")
        try:
            # No relative forms: "5分钟前" is relative to the time asked about.
            parsed = parse_time(value)
        except ValueError as exc:
            raise AdapterError(field, str(exc)) from None
    problem = bounds.problem(parsed, now)
    if problem is not None:
        raise AdapterError(field, problem)
    return parsed


def normalised(max_text_chars: int, bounds: TimeBounds | None = None) -> Convert:
    limits = bounds or TimeBounds()

    def convert(item: dict[str, Any], now: datetime, observed: datetime, warnings: list[str]) -> Post:
        text = item.get("text")
        if isinstance(text, str) and len(text) > max_text_chars:
            raise AdapterError("text", f"{len(text)} characters; the limit is {max_text_chars}")
        if "event_time" not in item:
            item = {**item, "event_time": observed.isoformat()}
        post = Post.model_validate(item)
        _check_times(post, now, limits)
        return post

    return convert


# A native item may come in an envelope that carries its own crawl time: {"observed_at": …, "payload": {…}}.
_ENVELOPE_KEYS = frozenset({"payload", "observed_at"})


def native(platform: str, max_text_chars: int | None = None, bounds: TimeBounds | None = None) -> Convert:
    limits = bounds or TimeBounds()

    def convert(item: dict[str, Any], now: datetime, observed: datetime, warnings: list[str]) -> Post:
        if isinstance(item.get("payload"), dict) and set(item) <= _ENVELOPE_KEYS:
            if item.get("observed_at") is not None:
                observed = observed_time(item["observed_at"], now, limits, "observed_at")
            try:
                return adapt(
                    platform,
                    item["payload"],
                    observed,
                    bounds=limits,
                    warnings=warnings,
                    max_text_chars=max_text_chars,
                )
            except AdapterError as exc:
                raise AdapterError(f"payload.{exc.field}", exc.reason) from None
        return adapt(
            platform, item, observed, bounds=limits, warnings=warnings, max_text_chars=max_text_chars
        )

    return convert


def to_posts(body: Body, convert: Convert, now: datetime, observed: datetime | None = None) -> Batch:
    """Every item of `body` converted, read at `observed` (the request's crawl time) or else at `now`."""
    batch = Batch()
    default = observed or now
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
                batch.posts.append((i, convert(item, now, default, warnings)))
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
