"""Runtime settings from the environment (YUQING_*). Domain rules live in the config file (config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from services.common.exceptions import ConfigError

__all__ = [
    "MIN_SECRET_CHARS",
    "CommonSettings",
    "load_settings",
    "redacted",
    "secret_fields",
    "strong_secret",
    "strong_secrets",
]

S = TypeVar("S", bound="CommonSettings")
# Tokens and HMAC keys shorter than this are refused at start-up: 16 random URL-safe characters are ~96 bits.
MIN_SECRET_CHARS = 16


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
        """Settings as safe to log (see `redacted`)."""
        secret = secret_fields(type(self))
        return {k: redacted(k, v, secret) for k, v in self.model_dump().items()}


# The redaction rule, one for settings errors and logs: a secret field shows nothing of its value; an error
# shows what it got only for a scalar (cut short), never a mapping such as the environment a rule across
# fields was given.
_MASK = "**********"
_SHOWN_CHARS = 80


def secret_fields(cls: type[BaseModel]) -> frozenset[str]:
    """Fields of a settings model whose type holds a SecretStr (alone, optional or in a tuple)."""
    return frozenset(name for name, f in cls.model_fields.items() if "SecretStr" in repr(f.annotation))


def redacted(field: str, value: Any, secret: frozenset[str]) -> Any:
    """`value` as a log line may show it: masked for a secret field (unset stays visibly unset)."""
    if field in secret or isinstance(value, SecretStr):
        return _MASK if value else value
    return value


def _got(field: str, value: Any, secret: frozenset[str]) -> str:
    """What an error says it got: a scalar's repr, cut short; nothing for a secret or anything bigger."""
    if field in secret or not isinstance(value, str | int | float | bool):
        return ""
    text = repr(value)
    return f" (got {text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + '…'})"


def strong_secret(value: SecretStr | None, what: str = "the secret") -> SecretStr | None:
    """`value`, unless it is shorter than MIN_SECRET_CHARS; an empty value means unset. For validators."""
    if value is None or not value.get_secret_value():
        return None
    length = len(value.get_secret_value())
    if length < MIN_SECRET_CHARS:
        raise ValueError(
            f"{what} is {length} characters; at least {MIN_SECRET_CHARS} random characters are needed "
            "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    return value


def strong_secrets(values: tuple[SecretStr, ...], kind: str = "token") -> tuple[SecretStr, ...]:
    for i, value in enumerate(values, 1):
        strong_secret(value, f"{kind} {i} of {len(values)}")
    return values


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings, turning validation errors into a ConfigError that names each field."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, secret_fields(cls), prefix="YUQING_")) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None


def _describe(exc: ValidationError, secret: frozenset[str], prefix: str = "") -> str:
    """One line per error, naming the variable; what it got only as `_got` allows."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        if not loc:  # a rule across fields (a model validator): its input is every setting
            lines.append(f"settings: {err['msg']}")
            continue
        name = f"{prefix}{loc.upper()}" if prefix else loc
        lines.append(f"{name}: {err['msg']}{_got(str(err['loc'][0]), err.get('input'), secret)}")
    return "invalid settings:\n  " + "\n  ".join(lines)
