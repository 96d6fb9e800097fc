from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings

__all__ = ["NotifierSettings"]


class NotifierSettings(CommonSettings):
    tick_seconds: float = Field(
        default=2.0, gt=0, le=30, description="How often grouped batches are flushed."
    )
    briefings: bool = Field(
        default=True,
        description="Publish the 简报 at the configured times (safe on every replica: a slot is sent once).",
    )
