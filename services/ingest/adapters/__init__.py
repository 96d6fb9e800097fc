"""Native platform payloads (Weibo, 抖音, 小红书, B站, 知乎, 微信, news, forums) to normalised Posts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.events import Platform, Post
from services.ingest.adapters import bilibili, douyin, forum, news, wechat, weibo, xiaohongshu, zhihu
from services.ingest.adapters._fields import TEXT_MAX as _TEXT_MAX
from services.ingest.adapters._fields import Reading, parse_count
from services.ingest.adapters.exceptions import AdapterError
from services.ingest.timeparse import TimeBounds

__all__ = ["ADAPTERS", "AdapterError", "adapt", "parse_count"]

ADAPTERS: dict[Platform, Callable[[dict[str, Any], Reading], dict[str, Any]]] = {
    Platform.weibo: weibo.map_payload,
    Platform.wechat: wechat.map_payload,
    Platform.douyin: douyin.map_payload,
    Platform.xiaohongshu: xiaohongshu.map_payload,
    Platform.zhihu: zhihu.map_payload,
    Platform.bilibili: bilibili.map_payload,
    Platform.news: news.map_payload,
    Platform.forum: forum.map_payload,
}


def adapt(
    platform: str,
    payload: dict[str, Any],
    observed_at: datetime,
    *,
    bounds: TimeBounds | None = None,
    warnings: list[str] | None = None,
    max_text_chars: int | None = None,
) -> Post:
    """One native payload, read at `observed_at`, as a Post; AdapterError names the field that is wrong.

    The publish time must fall within `bounds` around `observed_at`. Optional extras that cannot be read
    are left out and described in `warnings`, when given. Text longer than `max_text_chars` (after markup
    is removed; by default Post's own limit) is an error, not cut: a cut post would be matched on words
    its author did not end with, and the sender learns nothing.
    """
    key = platform.strip().lower() if isinstance(platform, str) else platform
    try:
        chosen = Platform(key)
    except ValueError:
        allowed = ", ".join(p.value for p in Platform)
        raise AdapterError("platform", f"{platform!r} is not one of: {allowed}") from None
    if not isinstance(payload, dict):
        raise AdapterError("payload", f"expected a JSON object, got {type(payload).__name__}")
    if observed_at.tzinfo is None:
        raise AdapterError("observed_at", "naive datetime; an explicit time zone is required")
    reading = Reading(now=observed_at, bounds=bounds or TimeBounds())
    fields = ADAPTERS[chosen](payload, reading)
    if warnings is not None:
        warnings.extend(reading.warnings)
    text = fields.get("text")
    limit = max_text_chars or _TEXT_MAX
    if isinstance(text, str) and len(text) > limit:
        raise AdapterError("text", f"{len(text)} characters after removing markup; the limit is {limit}")
    try:
        return Post.model_validate({**fields, "event_time": observed_at})
    except ValidationError as exc:
        # The adapters check what they read, so this is a gap between them and the schema: still say where.
        first = exc.errors(include_url=False)[0]
        raise AdapterError(".".join(str(p) for p in first["loc"]), first["msg"]) from None
