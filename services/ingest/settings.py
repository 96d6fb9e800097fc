from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from services.common.settings import CommonSettings

__all__ = ["IngestSettings"]


class IngestSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0, description="Largest accepted request body.")
    max_items: int = Field(default=5000, gt=0, description="Most posts in one request.")
    max_text_chars: int = Field(default=20_000, gt=0, le=20_000, description="Longest post text accepted.")
    ingest_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="Bearer tokens for POST routes (comma separated); empty = no auth (dev only)."
    )
    produce_timeout_seconds: float = Field(default=10.0, gt=0)
    operator_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Bearer tokens for operator routes (comma separated); empty = no auth (dev only).",
    )
    link_secret: SecretStr | None = Field(
        default=None, description="HMAC key of ack links (same as escalation)."
    )
    read_model: bool = Field(
        default=True, description="Follow the event topics to serve tiers, ledger, incidents."
    )

    briefings: bool = Field(
        default=True, description="Publish 简报 at the configured times (needs read_model)."
    )

    max_inflight_posts: int = Field(
        default=20_000, gt=0, description="Posts awaiting Kafka acks at once; beyond it requests get 429."
    )

    @field_validator("ingest_tokens", "operator_tokens", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value
