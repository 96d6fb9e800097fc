from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings

__all__ = ["ScoringSettings"]


class ScoringSettings(CommonSettings):
    tick_seconds: float = Field(default=30.0, gt=0, le=60, description="Tier re-evaluation period (≤ 1 min).")
    track_hours: float = Field(
        default=72.0,
        gt=0,
        le=24 * 30,
        description="How long a post's counts are remembered after its last snapshot (~0.7 KB a post). "
        "Must exceed the longest window plus grace. A post first seen later than this after publication "
        "counts from its first snapshot on.",
    )
