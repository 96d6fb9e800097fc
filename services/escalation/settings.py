from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from services.common.settings import CommonSettings, strong_secret

__all__ = ["EscalationSettings"]


class EscalationSettings(CommonSettings):
    tick_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Deadline check period: the firing delay bound."
    )
    public_url: str = Field(
        default="http://127.0.0.1:8001", description="Base URL of the desk as people reach it, for ack links."
    )
    link_secret: SecretStr | None = Field(
        default=None, description="HMAC key of ack links; no links when unset."
    )
    link_ttl_hours: float = Field(default=24.0, gt=0, le=24 * 14)

    @field_validator("link_secret")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        return strong_secret(value)
