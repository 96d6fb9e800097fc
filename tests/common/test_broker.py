"""The embedded broker: a SASL_SSL listener started from the CLI, a three-node cluster, and the topic
settings that replication needs. The brokers are the session's (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.topics import Topics
from services.common.broker import BrokerError, BrokerSecurity, EmbeddedBroker
from services.common.kafka import ensure_changelogs, ensure_topics
from services.common.settings import CommonSettings
from tests.conftest import YUQING

pytestmark = pytest.mark.kafka


def properties(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_a_client_certificate_needs_tls() -> None:
    with pytest.raises(BrokerError, match="needs a TLS listener"):
        BrokerSecurity(sasl="scram", client_auth="required")


def test_acls_and_users_need_scram_and_plain_names() -> None:
    with pytest.raises(BrokerError, match="--sasl scram"):
        BrokerSecurity(tls=True, acls=True)
    with pytest.raises(BrokerError, match="user names"):
        BrokerSecurity(sasl="scram", users=("yuqing-scoring", "x]password=y"))
    with pytest.raises(BrokerError, match="user names"):
        BrokerSecurity(sasl="scram", users=("yuqing",))  # the admin's own name
    # As broker.json gives them back (a list): the same layout, so the home starts again.
    assert BrokerSecurity(sasl="scram", acls=True, users=["a"]) == BrokerSecurity(  # type: ignore[arg-type]
        sasl="scram", acls=True, users=("a",)
    )


def test_start_prints_the_client_settings_and_keeps_the_password_in_a_private_file(
    secure_kafka_started: tuple[EmbeddedBroker, str],
) -> None:
    broker, printed = secure_kafka_started
    env = broker.client_env()
    password = env["YUQING_KAFKA_SASL_PASSWORD"]
    assert len(password) >= 20
    assert password not in printed
    for key in ("YUQING_KAFKA_SECURITY_PROTOCOL", "YUQING_KAFKA_SASL_MECHANISM", "YUQING_KAFKA_SSL_CA_FILE"):
        assert f"{key}={env[key]}" in printed
    assert f"YUQING_KAFKA_SASL_PASSWORD=(in {broker.client_env_file})" in printed
    assert Path(env["YUQING_KAFKA_SSL_CA_FILE"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    for private in (broker.client_env_file, broker.tls_files.keystore, broker.tls_files.client_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert f"YUQING_KAFKA_SASL_PASSWORD={password}\n" in broker.client_env_file.read_text()
    status = subprocess.run(
        [*YUQING, "broker", "status", "--port", str(broker.port), "--dir", str(broker.home)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (status.returncode, status.stdout.split(" (")[0]) == (0, f"running on {broker.bootstrap}")


def test_the_secure_listener_is_the_only_one_clients_are_told_about(secure_kafka: EmbeddedBroker) -> None:
    props = properties(secure_kafka.node(1).properties)
    assert (
        props["listener.security.protocol.map"] == "CLIENT:SASL_SSL,CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT"
    )
    assert props["advertised.listeners"].startswith(f"CLIENT://127.0.0.1:{secure_kafka.port},INTERNAL://")
    assert props["inter.broker.listener.name"] == "INTERNAL"
    assert props["listener.name.client.ssl.keystore.type"] == "PEM"
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    assert (
        secure_kafka.client_env()["YUQING_KAFKA_SASL_PASSWORD"]
        not in secure_kafka.node(1).properties.read_text()
    )


def test_a_home_is_never_started_as_another_layout(secure_kafka: EmbeddedBroker) -> None:
    for other in (
        EmbeddedBroker(port=secure_kafka.port, home=secure_kafka.home, nodes=3),
        EmbeddedBroker(port=secure_kafka.port, home=secure_kafka.home, security=BrokerSecurity()),
    ):
        with pytest.raises(BrokerError, match="was formatted with 1 node"):
            other.start()
    # Without options, the recorded layout is used: stop and status need none.
    assert EmbeddedBroker(port=secure_kafka.port, home=secure_kafka.home).security == secure_kafka.security


async def _described(bootstrap: str, topics: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics[0], {"min.insync.replicas": None})]
        )
    finally:
        await admin.close()
    (resource,) = response.resources
    configs = {entry[0]: entry[1] for entry in resource[4]}
    return described, configs


def test_a_three_node_cluster_gives_yuqing_topics_three_replicas_and_a_majority_in_sync(
    kafka_cluster: EmbeddedBroker, prefix: str
) -> None:
    env = kafka_cluster.client_env()
    assert env["YUQING_REPLICATION_FACTOR"] == "3"
    assert len(env["YUQING_KAFKA_BOOTSTRAP"].split(",")) == 3
    for node in kafka_cluster.node_list:
        props = properties(node.properties)
        assert props["process.roles"] == "broker,controller"
        assert len(props["controller.quorum.voters"].split(",")) == 3
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
    settings = CommonSettings(
        kafka_bootstrap=kafka_cluster.bootstrap, topic_prefix=prefix, partitions=2, replication_factor=3
    )
    topics = Topics.with_prefix(prefix)
    asyncio.run(ensure_topics(settings))
    changelog = f"{prefix}escalation-incidents-changelog"
    asyncio.run(ensure_changelogs(settings, [changelog]))
    for topic in (topics.posts_raw, changelog):
        described, configs = asyncio.run(_described(kafka_cluster.bootstrap, [topic]))
        partitions = described[0]["partitions"]
        assert [len(p["replicas"]) for p in partitions] == [3, 3], topic
        assert configs["min.insync.replicas"] == "2", topic
    # Leaders spread over the nodes: losing one moves some of them, not all.
    described, _ = asyncio.run(_described(kafka_cluster.bootstrap, topics.all()))
    leaders = {p["leader"] for t in described for p in t["partitions"]}
    assert leaders == {1, 2, 3}


def test_a_sasl_plaintext_broker_with_plain_users(tmp_path: Path, prefix: str) -> None:
    """The other SASL path: no TLS, the PLAIN mechanism (users in the listener's JAAS config)."""
    from services.common.broker import free_port
    from services.common.exceptions import ConfigError
    from services.common.kafka_security import check_connection, client_kwargs
    from tests.conftest import collect, produce

    broker = EmbeddedBroker(port=free_port(), home=tmp_path / "plain", security=BrokerSecurity(sasl="plain"))
    broker.start()
    try:
        env = broker.client_env()
        assert (env["YUQING_KAFKA_SECURITY_PROTOCOL"], env["YUQING_KAFKA_SASL_MECHANISM"]) == (
            "SASL_PLAINTEXT",
            "PLAIN",
        )
        fields: dict[str, Any] = {k.removeprefix("YUQING_").lower(): v for k, v in env.items()}
        settings = CommonSettings(**fields, topic_prefix=prefix, partitions=1)
        asyncio.run(check_connection(settings))
        asyncio.run(ensure_topics(settings))
        client = client_kwargs(settings)
        asyncio.run(produce(broker.bootstrap, f"{prefix}posts.raw", [(b"k", b"plain")], **client))
        got = asyncio.run(collect(broker.bootstrap, f"{prefix}posts.raw", lambda v: bool(v), 30, **client))
        assert got == [b"plain"]
        wrong = CommonSettings(**fields | {"kafka_sasl_password": "wrong"})
        with pytest.raises(ConfigError, match=r"^YUQING_KAFKA_SASL_PASSWORD: Kafka at .* refused the login"):
            asyncio.run(check_connection(wrong))
    finally:
        broker.stop()
