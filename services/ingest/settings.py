from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from services.common.auth import is_loopback
from services.common.settings import CommonSettings, strong_secrets
from services.ingest.timeparse import TimeBounds

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
    max_inflight_posts: int = Field(
        default=20_000, gt=0, description="Posts awaiting Kafka acks at once; beyond it requests get 429."
    )
    earliest_published: datetime = Field(
        default=datetime(2000, 1, 1, tzinfo=UTC),
        description="Publish and observation times before this are refused as misread (epoch 0, …).",
    )
    max_clock_skew_seconds: float = Field(
        default=600, ge=0, le=86_400, description="How far in the future a post's times may be."
    )
    allow_no_auth: bool = Field(
        default=False,
        description="Allow starting without ingest tokens on a non-loopback api_host (not prod).",
    )

    @property
    def time_bounds(self) -> TimeBounds:
        return TimeBounds(self.earliest_published, timedelta(seconds=self.max_clock_skew_seconds))

    @field_validator("earliest_published")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone offset, e.g. 2000-01-01T00:00:00Z")
        return value

    @model_validator(mode="after")
    def _auth_on_beyond_loopback(self) -> Self:
        """Refuse an API reachable from other hosts with its post routes open to anyone, unless told to."""
        if self.allow_no_auth or is_loopback(self.api_host) or self.ingest_tokens:
            return self
        raise ValueError(
            f"api_host {self.api_host!r} is reachable from other hosts but ingest_tokens is empty, which "
            "leaves POST /v1/posts open to anyone; set YUQING_INGEST_TOKENS, bind to 127.0.0.1, or set "
            "YUQING_ALLOW_NO_AUTH=true"
        )

    @field_validator("ingest_tokens", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("ingest_tokens")
    @classmethod
    def _strong_tokens(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        return strong_secrets(value)
