from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from services.common.auth import is_loopback
from services.common.settings import CommonSettings, strong_secret, strong_secrets

__all__ = ["DeskSettings"]


class DeskSettings(CommonSettings):
    desk_host: str = "127.0.0.1"
    desk_port: int = Field(
        default=8001, ge=1, le=65535, description="The console, operator API and ack links."
    )
    operator_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Bearer tokens for operator routes and console logins (comma separated); empty = no auth "
        "(dev only).",
    )
    link_secret: SecretStr | None = Field(
        default=None, description="HMAC key of ack links (the same as escalation's); no links when unset."
    )
    console_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of console sessions, shared with nothing else; unset = a random key per "
        "process (sessions end at a restart).",
    )
    read_model: bool = Field(
        default=True,
        description="Run the sink: write the event topics into the store (one replica at a time writes).",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="The store: postgresql+psycopg://user:password@host:5432/yuqing (a secret: it holds the "
        "password); unset = SQLite at <data_dir>/desk.sqlite3.",
    )
    database_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        Field(default=None, description="PostgreSQL TLS: libpq's sslmode (verify-full in production).")
    )
    database_sslrootcert: Path | None = Field(
        default=None, description="PostgreSQL TLS: the CA file that signed the server's certificate."
    )
    database_connect_timeout_seconds: int = Field(
        default=10, ge=1, le=300, description="How long a connection to the store may take."
    )
    ledger_retention_days: int = Field(
        default=400, ge=0, description="Ledger entries last seen longer ago are purged nightly (0: kept)."
    )
    tier_change_retention_days: int = Field(
        default=400, ge=0, description="Tier changes older than this are purged nightly (0: kept)."
    )
    incident_retention_days: int = Field(
        default=0, ge=0, description="Closed incidents older than this are purged nightly (0: kept)."
    )
    purge_hour: int = Field(
        default=3, ge=0, le=23, description="The hour (briefing time zone) of the nightly purge."
    )
    produce_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long an action or override may wait for Kafka's ack."
    )
    max_operator_body_bytes: int = Field(
        default=64 * 1024, gt=0, description="Largest request body (actions, overrides, console forms)."
    )
    allow_no_auth: bool = Field(
        default=False,
        description="Allow starting without operator tokens on a non-loopback desk_host (not prod).",
    )

    @model_validator(mode="after")
    def _auth_on_beyond_loopback(self) -> Self:
        """Refuse a desk reachable from other hosts with its routes open to anyone, unless told to."""
        if self.allow_no_auth or is_loopback(self.desk_host) or self.operator_tokens:
            return self
        raise ValueError(
            f"desk_host {self.desk_host!r} is reachable from other hosts but operator_tokens is empty, which "
            "leaves the console and the operator API open to anyone; set YUQING_OPERATOR_TOKENS, bind to "
            "127.0.0.1, or set YUQING_ALLOW_NO_AUTH=true"
        )

    @field_validator("operator_tokens", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("operator_tokens")
    @classmethod
    def _strong_tokens(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        return strong_secrets(value)

    @field_validator("link_secret", "console_secret")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        return strong_secret(value)

    @model_validator(mode="after")
    def _separate_keys(self) -> Self:
        """One leaked key must not forge both an ack link and a console session."""
        if self.console_secret and self.console_secret == self.link_secret:
            raise ValueError(
                "YUQING_CONSOLE_SECRET is the same as YUQING_LINK_SECRET; give the console its own key"
            )
        return self
