"""Runtime settings from the environment (YUQING_*). Domain rules live in the config file (config.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
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

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# Settings files read at start-up, by the env var that names them.
_FILES = {
    "kafka_ssl_ca_file": "YUQING_KAFKA_SSL_CA_FILE",
    "kafka_ssl_cert_file": "YUQING_KAFKA_SSL_CERT_FILE",
    "kafka_ssl_key_file": "YUQING_KAFKA_SSL_KEY_FILE",
}


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
    # How every Kafka client of every service connects (services/common/kafka_security.py).
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, as the listener has."
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL_*."
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle the brokers' certificates are checked against; system CAs if unset.",
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate (chain) for mutual TLS."
    )
    kafka_ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate, if not in the cert file."
    )
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that a broker's certificate names the host connected to."
    )

    @field_validator(
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_ca_file",
        "kafka_ssl_cert_file",
        "kafka_ssl_key_file",
        "kafka_ssl_key_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose and Helm pass an unset optional variable as an empty string.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kafka_security_protocol", mode="before")
    @classmethod
    def _protocol_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_sasl_mechanism", mode="before")
    @classmethod
    def _mechanism_case(cls, value: object) -> object:
        return value.strip().upper().replace("_", "-") if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kafka_security(self) -> Self:
        """Refuse a combination that cannot connect, or that silently ignores a setting, naming it."""
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol.endswith("SSL")
        if sasl:
            for name, value in (
                ("YUQING_KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                ("YUQING_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                ("YUQING_KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
            ):
                if value is None:
                    raise ValueError(f"{name} is required with YUQING_KAFKA_SECURITY_PROTOCOL={protocol}")
        else:
            given = [
                name
                for name, value in (
                    ("YUQING_KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                    ("YUQING_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                    ("YUQING_KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
                )
                if value is not None
            ]
            if given:
                raise ValueError(
                    f"{given[0]} is set but YUQING_KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL; "
                    "expected SASL_SSL or SASL_PLAINTEXT"
                )
        if not tls:
            given = [env for field, env in _FILES.items() if getattr(self, field) is not None]
            if self.kafka_ssl_key_password is not None:
                given.append("YUQING_KAFKA_SSL_KEY_PASSWORD")
            if given:
                raise ValueError(
                    f"{given[0]} is set but YUQING_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS; "
                    "expected SSL or SASL_SSL"
                )
        if self.kafka_ssl_key_file is not None and self.kafka_ssl_cert_file is None:
            raise ValueError(
                "YUQING_KAFKA_SSL_KEY_FILE is set without YUQING_KAFKA_SSL_CERT_FILE, "
                "the certificate it belongs to"
            )
        for field, env in _FILES.items():
            path = getattr(self, field)
            if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
                raise ValueError(f"{env}: {path} is not a readable file")
        return self

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
    if len(lines) == 1:  # one error, one line: a start-up refusal reads as a single log line
        return f"invalid settings: {lines[0]}"
    return "invalid settings:\n  " + "\n  ".join(lines)


def _secret(loc: str) -> bool:
    return any(word in loc for word in ("password", "token", "secret"))
