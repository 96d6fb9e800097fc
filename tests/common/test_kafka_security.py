"""Kafka security settings: validated at start-up naming the setting, turned into the same client arguments
for aiokafka and faust, and, against a real SASL_SSL broker, a refused login, an untrusted CA, an unknown
or unoffered mechanism and a listener of another protocol each stop a worker with one line naming the
setting to fix."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import faust
import pytest
import trustme
from faust.types.auth import AuthProtocol

from services.common.broker import EmbeddedBroker
from services.common.broker_tls import TlsFiles, make_tls_files
from services.common.exceptions import ConfigError
from services.common.kafka import ensure_topics
from services.common.kafka_security import (
    _untrusted,
    check_connection,
    client_kwargs,
    faust_credentials,
    ssl_context,
)
from services.common.settings import CommonSettings, load_settings
from services.desk.settings import DeskSettings
from tests.conftest import YUQING, collect, produce

KEY_PASSWORD = "key-pass-5e1d"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"), KEY_PASSWORD)


def settings(**fields: Any) -> CommonSettings:
    return load_settings(CommonSettings, **fields)


SASL_SSL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "yuqing",
    "kafka_sasl_password": "pw-7c1a",
}


# ---- settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kafka_security_protocol": "TLS"}, "YUQING_KAFKA_SECURITY_PROTOCOL: Input should be"),
        ({**SASL_SSL, "kafka_sasl_mechanism": "SCRAM-SHA-1"}, "YUQING_KAFKA_SASL_MECHANISM: Input should be"),
        ({**SASL_SSL, "kafka_sasl_mechanism": None}, "YUQING_KAFKA_SASL_MECHANISM is required with"),
        ({**SASL_SSL, "kafka_sasl_username": ""}, "YUQING_KAFKA_SASL_USERNAME is required with"),
        ({**SASL_SSL, "kafka_sasl_password": " "}, "YUQING_KAFKA_SASL_PASSWORD is required with"),
        (
            {"kafka_sasl_username": "u"},
            "YUQING_KAFKA_SASL_USERNAME is set but .*=PLAINTEXT does not use SASL",
        ),
        (
            {**SASL_SSL, "kafka_security_protocol": "SASL_PLAINTEXT", "kafka_ssl_ca_file": "/etc/hostname"},
            "YUQING_KAFKA_SSL_CA_FILE is set but .*=SASL_PLAINTEXT does not use TLS",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "/nonexistent/ca.pem"},
            "YUQING_KAFKA_SSL_CA_FILE: /nonexistent/ca.pem is not a readable file",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_key_file": "/etc/hostname"},
            "YUQING_KAFKA_SSL_KEY_FILE is set without YUQING_KAFKA_SSL_CERT_FILE",
        ),
    ],
)
def test_a_bad_security_setting_fails_at_start_up_in_one_line_naming_it(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        settings(**fields)
    assert "\n" not in str(raised.value)


def test_settings_errors_never_echo_secrets() -> None:
    """A check across settings used to print every setting it was given, tokens and passwords included."""
    with pytest.raises(ConfigError) as raised:
        load_settings(DeskSettings, desk_host="0.0.0.0", link_secret="link-93aa-5e1d0c7b9f2a", **SASL_SSL)  # noqa: S104
    assert "desk_host '0.0.0.0' is reachable" in str(raised.value)
    assert "link-93aa-5e1d0c7b9f2a" not in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        settings(kafka_sasl_password="pw-7c1a")
    assert "pw-7c1a" not in str(raised.value)


def test_names_are_normalised_and_empty_values_mean_unset(tls: TlsFiles) -> None:
    s = settings(
        kafka_security_protocol="sasl_ssl",
        kafka_sasl_mechanism="scram_sha_256",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
        kafka_ssl_cert_file="",
        kafka_ssl_key_password="",
    )
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert s.kafka_ssl_cert_file is None
    assert s.kafka_ssl_key_password is None
    assert s.masked()["kafka_sasl_password"] == "**********"


# ---- client arguments ------------------------------------------------------------------------------------


def test_plaintext_adds_nothing_to_a_client() -> None:
    assert client_kwargs(settings()) == {}
    assert faust_credentials(settings()) is None
    assert ssl_context(settings()) is None


def test_sasl_ssl_gives_aiokafka_and_faust_the_same_login_and_a_verifying_context(tls: TlsFiles) -> None:
    s = settings(**SASL_SSL, kafka_ssl_ca_file=tls.ca)
    kwargs = client_kwargs(s)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("yuqing", "pw-7c1a")
    context = kwargs["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    credentials = faust_credentials(s)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol == AuthProtocol.SASL_SSL
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("yuqing", "pw-7c1a")
    assert "pw-7c1a" not in repr(credentials)


def test_sasl_plaintext_and_ssl_credentials_for_faust(tls: TlsFiles) -> None:
    plain = faust_credentials(settings(**SASL_SSL | {"kafka_security_protocol": "SASL_PLAINTEXT"}))
    assert plain.protocol == AuthProtocol.SASL_PLAINTEXT
    assert plain.ssl_context is None
    only_tls = faust_credentials(settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=tls.ca))
    assert isinstance(only_tls, faust.SSLCredentials)
    assert only_tls.protocol == AuthProtocol.SSL


def test_skipping_the_hostname_check_still_verifies_the_chain(tls: TlsFiles) -> None:
    context = ssl_context(
        settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=tls.ca, kafka_ssl_check_hostname=False)
    )
    assert context is not None
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_a_client_certificate_with_an_encrypted_key_loads_with_its_password(tls: TlsFiles) -> None:
    mtls = {
        "kafka_security_protocol": "SSL",
        "kafka_ssl_ca_file": tls.ca,
        "kafka_ssl_cert_file": tls.client_cert,
        "kafka_ssl_key_file": tls.client_key,
    }
    assert ssl_context(settings(**mtls, kafka_ssl_key_password=KEY_PASSWORD)) is not None
    with pytest.raises(ConfigError, match=r"^YUQING_KAFKA_SSL_KEY_PASSWORD: does not decrypt the key"):
        ssl_context(settings(**mtls, kafka_ssl_key_password="wrong"))
    with pytest.raises(ConfigError, match=r"^YUQING_KAFKA_SSL_KEY_PASSWORD: the key in .* is encrypted"):
        ssl_context(settings(**mtls))


def test_unusable_certificate_files_name_their_setting(tls: TlsFiles, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    other = trustme.CA().issue_cert("other")
    other_key = tmp_path / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    base = {"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": tls.ca}
    cases = [
        ({"kafka_ssl_ca_file": garbage}, "^YUQING_KAFKA_SSL_CA_FILE: .* holds no usable PEM CA certificate"),
        ({"kafka_ssl_cert_file": garbage}, "^YUQING_KAFKA_SSL_CERT_FILE: .* holds no PEM certificate"),
        (
            {"kafka_ssl_cert_file": tls.client_cert, "kafka_ssl_key_file": garbage},
            "^YUQING_KAFKA_SSL_KEY_FILE: .* holds no PEM private key",
        ),
        (
            {"kafka_ssl_cert_file": tls.client_cert, "kafka_ssl_key_file": other_key},
            "^YUQING_KAFKA_SSL_KEY_FILE: the key in .* does not belong to the certificate",
        ),
    ]
    for fields, message in cases:
        with pytest.raises(ConfigError, match=message):
            ssl_context(settings(**base | fields))


def test_a_certificate_naming_another_host_points_at_the_hostname_setting(tls: TlsFiles) -> None:
    s = settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=tls.ca)
    mismatch = ssl.SSLCertVerificationError(1, "certificate verify failed")
    mismatch.verify_message = "Hostname mismatch, certificate is not valid for 'kafka-0'."
    assert _untrusted(s, "kafka-0:9093", mismatch).startswith("YUQING_KAFKA_SSL_CHECK_HOSTNAME: ")
    unknown = ssl.SSLCertVerificationError(1, "certificate verify failed")
    unknown.verify_message = "unable to get local issuer certificate"
    assert _untrusted(s, "kafka-0:9093", unknown).startswith(
        f"YUQING_KAFKA_SSL_CA_FILE: the certificate of Kafka at kafka-0:9093 is not trusted by {tls.ca}"
    )


# ---- against the session's SASL_SSL broker ---------------------------------------------------------------


def _env_settings(env: dict[str, str], **overrides: Any) -> CommonSettings:
    fields: dict[str, Any] = {k.removeprefix("YUQING_").lower(): v for k, v in env.items()}
    return settings(**fields | overrides)


@pytest.mark.kafka
async def test_the_right_settings_connect_with_either_scram_mechanism(secure_kafka: EmbeddedBroker) -> None:
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
        await check_connection(_env_settings(secure_kafka.client_env(), kafka_sasl_mechanism=mechanism))


@pytest.mark.kafka
async def test_messages_round_trip_with_a_client_certificate_from_the_brokers_ca(
    secure_kafka: EmbeddedBroker, prefix: str
) -> None:
    s = _env_settings(secure_kafka.client_env(mtls=True), topic_prefix=prefix, partitions=1)
    assert s.kafka_ssl_key_password is not None
    await check_connection(s)
    await ensure_topics(s)
    client = client_kwargs(s)
    await produce(s.kafka_bootstrap, f"{prefix}posts.raw", [(b"k", b"over mutual TLS")], **client)
    got = await collect(s.kafka_bootstrap, f"{prefix}posts.raw", lambda v: len(v) >= 1, within=30, **client)
    assert got == [b"over mutual TLS"]


@pytest.mark.kafka
async def test_a_client_certificate_from_another_ca_is_refused_naming_the_setting(
    secure_kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    stranger = trustme.CA().issue_cert("stranger")
    pem = tmp_path / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(pem))
    s = _env_settings(secure_kafka.client_env(), kafka_ssl_cert_file=pem)
    with pytest.raises(ConfigError, match="refused the client certificate of YUQING_KAFKA_SSL_CERT_FILE"):
        await check_connection(s)


def _worker(
    env: dict[str, str], tmp_path: Path, service: str = "scoring"
) -> subprocess.CompletedProcess[str]:
    """`yuqing worker SERVICE` as a container runs it: only these YUQING_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
    return subprocess.run(
        [*YUQING, "worker", service],
        env={**clean, "YUQING_DATA_DIR": str(tmp_path), "YUQING_TOPIC_PREFIX": "refused.", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("change", "setting", "words"),
    [
        (
            {"YUQING_KAFKA_SASL_PASSWORD": "not-the-password"},
            "YUQING_KAFKA_SASL_PASSWORD",
            "refused the login",
        ),
        ({"YUQING_KAFKA_SSL_CA_FILE": "OTHER_CA"}, "YUQING_KAFKA_SSL_CA_FILE", "is not trusted by"),
        ({"YUQING_KAFKA_SASL_MECHANISM": "SCRAM-SHA-1"}, "YUQING_KAFKA_SASL_MECHANISM", "Input should be"),
        ({"YUQING_KAFKA_SASL_MECHANISM": "PLAIN"}, "YUQING_KAFKA_SASL_MECHANISM", "does not offer PLAIN"),
        (
            {
                "YUQING_KAFKA_SECURITY_PROTOCOL": "SSL",
                "YUQING_KAFKA_SASL_MECHANISM": "",
                "YUQING_KAFKA_SASL_USERNAME": "",
                "YUQING_KAFKA_SASL_PASSWORD": "",
            },
            "YUQING_KAFKA_SECURITY_PROTOCOL",
            "expects another protocol than SSL",
        ),
    ],
    ids=["wrong password", "untrusted CA", "unknown mechanism", "mechanism not offered", "wrong protocol"],
)
def test_a_worker_refused_by_the_cluster_exits_with_one_line_naming_the_setting(
    secure_kafka: EmbeddedBroker, tmp_path: Path, change: dict[str, str], setting: str, words: str
) -> None:
    if change.get("YUQING_KAFKA_SSL_CA_FILE") == "OTHER_CA":
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        change = {"YUQING_KAFKA_SSL_CA_FILE": str(other)}
    started = time.monotonic()
    done = _worker({**secure_kafka.client_env(), **change}, tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # no stack trace, no retry log
    assert lines[0].startswith(f"yuqing: error: {setting}") or (
        lines[0].startswith("yuqing: error: invalid settings: ") and setting in lines[0]
    ), lines[0]
    assert words in lines[0]
    assert "not-the-password" not in done.stderr
    assert time.monotonic() - started < 30, "refused at once, not after rounds of retries"


@pytest.mark.kafka
def test_the_ingest_api_too_stops_at_once_on_a_wrong_password(
    secure_kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    """Ingest serves 503 while Kafka is unreachable; a refused login is not that, and would never end."""
    env = {**secure_kafka.client_env(), "YUQING_KAFKA_SASL_PASSWORD": "nope", "YUQING_API_PORT": "1"}
    done = _worker(env, tmp_path, service="ingest")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("yuqing: error: YUQING_KAFKA_SASL_PASSWORD: ")


def test_an_unreachable_cluster_is_left_to_the_clients_retries() -> None:
    """Refused or silent: Kafka may be starting; the callers retry (ingest serves 503 meanwhile)."""
    from services.common.broker import free_port

    asyncio.run(check_connection(settings(kafka_bootstrap=f"127.0.0.1:{free_port()}")))
