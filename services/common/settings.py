"""Runtime settings from the environment (YUQING_*). Domain rules live in the config file (config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from services.common.exceptions import ConfigError

__all__ = ["CommonSettings", "load_settings"]

S = TypeVar("S", bound="CommonSettings")


class CommonSettings(BaseSettings):
    """Fields every service shares. Each service subclasses it; the env prefix stays YUQING_."""

    model_config = SettingsConfigDict(env_prefix="YUQING_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="host:port[,host:port…]")
    topic_prefix: str = Field(default="yuqing.", pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(default=3, ge=1, le=1024, description="Partitions of every yuqing topic.")
    replication_factor: int = Field(default=1, ge=1, le=7)
    config_file: Path | None = Field(default=None, description="YAML config; the bundled example when unset.")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535, description="Worker /healthz and /metrics port.")
    data_dir: Path = Path(".yuqing-data")
    log_level: str = Field(default="info", pattern=r"^(debug|info|warn|error|crit)$")
    session_timeout_seconds: float = Field(default=10.0, gt=0)
    heartbeat_interval_seconds: float = Field(default=1.0, gt=0)
    stall_seconds: float = Field(
        default=300,
        ge=0,
        description="/healthz answers 503 when input has waited this long with nothing processed (0: never).",
    )

    def masked(self) -> dict[str, Any]:
        """Settings as safe to log: SecretStr values stay masked."""
        return {k: (str(v) if isinstance(v, SecretStr) else v) for k, v in self.model_dump().items()}


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings, turning validation errors into a ConfigError that names each field."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, prefix="YUQING_")) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None


def _describe(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        name = f"{prefix}{loc.upper()}" if prefix else loc
        lines.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
    return "invalid settings:\n  " + "\n  ".join(lines)
