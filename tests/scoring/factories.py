"""Shared builders for the scoring unit tests: posts and configs with explicit UTC times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import Engagement, Platform, Post
from services.common.config import YuqingConfig

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
# For stages whose injected clock stands still while a test feeds hours of observations after it: the check
# against observations dated ahead of the clock (FutureEvent) is not what those tests are about.
STILL_CLOCK = timedelta(days=30)

XINGHE_CONFIG = YuqingConfig.model_validate(
    {"rules": {"groups": [{"name": "xinghe", "brands": ["星河电器", "星河空调"]}]}}
)


def make_post(
    *,
    post_id: str = "p1",
    text: str = "星河电器空调起火了，要求退款",
    event_time: datetime = T0,
    published_at: datetime | None = T0,
    reposts: int = 0,
    comments: int = 0,
    likes: int = 0,
    root_post_id: str | None = None,
    platform: Platform = Platform.weibo,
) -> Post:
    return Post(
        platform=platform,
        post_id=post_id,
        text=text,
        published_at=published_at,
        event_time=event_time,
        root_post_id=root_post_id,
        engagement=Engagement(reposts=reposts, comments=comments, likes=likes),
    )
