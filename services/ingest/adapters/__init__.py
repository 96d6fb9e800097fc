"""Native platform payloads (Weibo, 抖音, 小红书, B站, 知乎, 微信, news, forums) to normalised Posts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.events import Platform, Post
from services.ingest.adapters import bilibili, douyin, forum, news, wechat, weibo, xiaohongshu, zhihu
from services.ingest.adapters._fields import parse_count
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["ADAPTERS", "AdapterError", "adapt", "parse_count"]

ADAPTERS: dict[Platform, Callable[[dict[str, Any]], dict[str, Any]]] = {
    Platform.weibo: weibo.map_payload,
    Platform.wechat: wechat.map_payload,
    Platform.douyin: douyin.map_payload,
    Platform.xiaohongshu: xiaohongshu.map_payload,
    Platform.zhihu: zhihu.map_payload,
    Platform.bilibili: bilibili.map_payload,
    Platform.news: news.map_payload,
    Platform.forum: forum.map_payload,
}


def adapt(platform: str, payload: dict[str, Any], observed_at: datetime) -> Post:
    """One native payload, read at `observed_at`, as a Post; AdapterError names the field that is wrong."""
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
    fields = ADAPTERS[chosen](payload)
    try:
        return Post.model_validate({**fields, "event_time": observed_at})
    except ValidationError as exc:
        # The adapters check what they read, so this is a gap between them and the schema: still say where.
        first = exc.errors(include_url=False)[0]
        raise AdapterError(".".join(str(p) for p in first["loc"]), first["msg"]) from None
