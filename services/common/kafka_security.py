"""How every Kafka client of yuqing connects: TLS and SASL settings turned into aiokafka keyword arguments
or faust credentials, and a start-up check that turns a refused login or an untrusted certificate into one
line naming the setting to fix.

Every client is built with `client_kwargs(settings)` (aiokafka producers, consumers, admin clients) or
`faust_credentials(settings)` (a faust App): a new client cannot forget the cluster's security settings.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from services.common.exceptions import ConfigError
from services.common.settings import CommonSettings

__all__ = ["check_connection", "client_kwargs", "faust_credentials", "ssl_context"]

_PROBE_TIMEOUT_SECONDS = 10.0


def ssl_context(settings: CommonSettings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None otherwise): the CA file (or the system's CAs), the client
    certificate for mutual TLS, and the hostname check. ConfigError names the setting whose file is unusable.

    Built for each client from the files as they are now."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    ca = settings.kafka_ssl_ca_file
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"YUQING_KAFKA_SSL_CA_FILE: {ca} holds no usable PEM CA certificate ({_reason(exc)})"
        ) from None
    # Skipping the hostname check still verifies the chain: never CERT_NONE.
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_cert_file is not None:
        _load_client_certificate(context, settings.kafka_ssl_cert_file, settings)
    return context


def _load_client_certificate(context: ssl.SSLContext, cert: Path, settings: CommonSettings) -> None:
    key = settings.kafka_ssl_key_file or cert
    secret = settings.kafka_ssl_key_password
    # A callable, so that an encrypted key without a password fails here instead of prompting on a terminal.
    password: Any = secret.get_secret_value() if secret is not None else (lambda: b"")
    try:
        context.load_cert_chain(
            str(cert), str(settings.kafka_ssl_key_file) if settings.kafka_ssl_key_file else None, password
        )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(_certificate_problem(cert, key, secret is not None, exc)) from None


def _certificate_problem(cert: Path, key: Path, has_password: bool, exc: Exception) -> str:
    """OpenSSL says 'PEM lib' for most of these: look at the files to name the setting that is wrong."""
    if "KEY_VALUES_MISMATCH" in str(exc):
        return f"YUQING_KAFKA_SSL_KEY_FILE: the key in {key} does not belong to the certificate in {cert}"
    cert_text = _read(cert)
    key_text = _read(key)
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        return f"YUQING_KAFKA_SSL_CERT_FILE: {cert} holds no PEM certificate"
    if "PRIVATE KEY-----" not in key_text:
        setting = "YUQING_KAFKA_SSL_KEY_FILE" if key != cert else "YUQING_KAFKA_SSL_KEY_FILE (unset)"
        return f"{setting}: {key} holds no PEM private key for the certificate in {cert}"
    if "ENCRYPTED" in key_text and not has_password:
        return f"YUQING_KAFKA_SSL_KEY_PASSWORD: the key in {key} is encrypted and no password is set"
    if has_password:
        return f"YUQING_KAFKA_SSL_KEY_PASSWORD: does not decrypt the key in {key} ({_reason(exc)})"
    return f"YUQING_KAFKA_SSL_CERT_FILE: {cert} and its key {key} cannot be loaded ({_reason(exc)})"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def client_kwargs(settings: CommonSettings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client (producer, consumer, admin) on the configured listener;
    empty for PLAINTEXT, aiokafka's default."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password is not None else None,
        )
    return kwargs


def faust_credentials(settings: CommonSettings) -> Any:
    """The same settings as faust's `broker_credentials` (None for PLAINTEXT); faust hands them to the
    aiokafka clients it builds (faust/transport/drivers/aiokafka.py, credentials_to_aiokafka_auth)."""
    import faust  # only the faust workers need it

    kwargs = client_kwargs(settings)
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(kwargs["ssl_context"])
    # SASLCredentials takes SASL_SSL from the presence of an ssl_context, SASL_PLAINTEXT from its absence.
    return faust.SASLCredentials(
        username=kwargs["sasl_plain_username"],
        password=kwargs["sasl_plain_password"],
        mechanism=kwargs["sasl_mechanism"],
        ssl_context=kwargs.get("ssl_context"),
    )


async def check_connection(settings: CommonSettings) -> None:
    """Connect to the bootstrap servers once, as every client will, and raise ConfigError naming the setting
    when the cluster refuses us for good: authentication failed, a mechanism it does not offer, a broker
    certificate not trusted or not naming the host, or a listener of another protocol.

    Left to the clients, each of these is a retry loop of ERROR lines ending in 'Unable to bootstrap'; an
    unreachable cluster (refused, timed out) is not decided here: the callers' own retries handle it."""
    kwargs = client_kwargs(settings)
    mismatch: str | None = None
    for attempt in range(2):
        for host, port in _hosts(settings.kafka_bootstrap):
            where = f"{host}:{port}"
            try:
                await asyncio.wait_for(_probe(host, port, kwargs), _PROBE_TIMEOUT_SECONDS)
                return
            except SaslAuthenticationFailed as exc:
                raise ConfigError(
                    f"YUQING_KAFKA_SASL_PASSWORD: Kafka at {where} refused the login of "
                    f"{settings.kafka_sasl_username!r} with {settings.kafka_sasl_mechanism}: a wrong "
                    f"password, or no such user (YUQING_KAFKA_SASL_USERNAME) ({_reason(exc)})"
                ) from None
            except UnsupportedSaslMechanismError:
                raise ConfigError(
                    f"YUQING_KAFKA_SASL_MECHANISM: Kafka at {where} does not offer "
                    f"{settings.kafka_sasl_mechanism} on this listener"
                ) from None
            except ssl.SSLCertVerificationError as exc:
                raise ConfigError(_untrusted(settings, where, exc)) from None
            except (KafkaConnectionError, ConnectionResetError, ssl.SSLError) as exc:
                # Connected, then cut off at the handshake or the first request: a listener of another
                # protocol does that, and so does one that refuses the client certificate.
                mismatch = f"{where} ({_reason(exc)})"
            except (OSError, TimeoutError, KafkaError):
                continue  # not reachable (yet): the clients retry
        if mismatch is None:
            return
        if attempt == 0:
            await asyncio.sleep(1.0)  # a broker in the middle of starting may cut a connection once
    raise ConfigError(_mismatch(settings, mismatch or ""))


async def _probe(host: str, port: int, kwargs: dict[str, Any]) -> None:
    conn = await create_conn(host, port, request_timeout_ms=int(_PROBE_TIMEOUT_SECONDS * 1000), **kwargs)
    try:
        # Proves the listener speaks our protocol: a TLS handshake alone succeeds on a SASL_SSL listener.
        await conn.send(MetadataRequest([]))
    finally:
        conn.close()


def _untrusted(settings: CommonSettings, where: str, exc: ssl.SSLCertVerificationError) -> str:
    reason = exc.verify_message or _reason(exc)
    if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
        return (
            f"YUQING_KAFKA_SSL_CHECK_HOSTNAME: the certificate of Kafka at {where} does not name that host "
            f"({reason}); connect by a name the certificate carries, "
            "or set YUQING_KAFKA_SSL_CHECK_HOSTNAME=false"
        )
    trusted = settings.kafka_ssl_ca_file or "the system's CA certificates (the setting is unset)"
    return (
        f"YUQING_KAFKA_SSL_CA_FILE: the certificate of Kafka at {where} is not trusted by {trusted} "
        f"({reason})"
    )


def _mismatch(settings: CommonSettings, detail: str) -> str:
    protocol = settings.kafka_security_protocol
    text = (
        f"YUQING_KAFKA_SECURITY_PROTOCOL: Kafka at {detail} cut the connection at the first request; its "
        f"listener expects another protocol than {protocol}"
    )
    if protocol.endswith("SSL"):
        if settings.kafka_ssl_cert_file is not None:
            cert = settings.kafka_ssl_cert_file
            text += f", or refused the client certificate of YUQING_KAFKA_SSL_CERT_FILE ({cert})"
        else:
            text += ", or requires a client certificate (YUQING_KAFKA_SSL_CERT_FILE)"
    return text


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    hosts = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        try:
            hosts.append((host.strip("[]") or item.strip(), int(port)))
        except ValueError:
            raise ConfigError(
                f"YUQING_KAFKA_BOOTSTRAP: expected host:port[,host:port…], got {bootstrap!r}"
            ) from None
    return hosts


def _reason(exc: BaseException) -> str:
    """An exception's class and message on one line."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if not text:
        return name
    return (text if name in text else f"{name}: {text}")[:300]
