from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings

__all__ = ["EscalationSettings"]


class EscalationSettings(CommonSettings):
    tick_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Deadline check period: the firing delay bound."
    )
