from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.settings import CommonSettings

__all__ = ["ScoringSettings"]


class ScoringSettings(CommonSettings):
    tick_seconds: float = Field(default=30.0, gt=0, le=60, description="Tier re-evaluation period (≤ 1 min).")
    track_hours: float = Field(
        default=72.0,
        gt=0,
        le=24 * 30,
        description="How long a post's counts are remembered after its last snapshot (~0.3 KB a post). "
        "Must exceed the longest window plus grace. A post first seen later than this after publication "
        "counts from its first snapshot on.",
    )
    spread_snapshot_seconds: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="A rule group's live spread (SpreadSnapshot) goes out at most this often, and only when "
        "it changed. The worker ticks at least this often.",
    )
    spread_series_minutes: int = Field(
        default=120, ge=10, le=24 * 60, description="Minutes of per-minute spread a snapshot carries."
    )
    max_clock_skew_seconds: float = Field(
        default=600,
        ge=0,
        le=86_400,
        description="How far ahead of this worker's clock a post or keyword hit may be dated; later ones are "
        "dead-lettered as future_event (counted, one would make every real observation after it late).",
    )
    window_clock: Literal["wall", "event"] = Field(
        default="wall",
        description="What time ticks move the windows to: 'wall', the wall clock (live), so that tiers come "
        "down when a keyword goes quiet; 'event', the newest event time seen on the partition, for replaying "
        "history (`yuqing replay --event-time`), where the wall clock is far ahead of the data.",
    )
