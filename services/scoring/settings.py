from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings

__all__ = ["ScoringSettings"]


class ScoringSettings(CommonSettings):
    tick_seconds: float = Field(default=30.0, gt=0, le=60, description="Tier re-evaluation period (≤ 1 min).")
