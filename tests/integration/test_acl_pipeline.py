"""The whole pipeline on a broker that enforces ACLs (Kafka's StandardAuthorizer), each service logged in as
its own SCRAM user with exactly the ACLs deploy/k8s/strimzi/users.yaml gives it, and the topics created as
yuqing-topics. tests/deploy reads those ACLs against the code; here Kafka itself decides."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import TopicAuthorizationFailedError

from services.cli.runner import SERVICES
from services.common.broker import Acl, BrokerSecurity, EmbeddedBroker, free_port
from tests.integration.test_pipeline import check_pipeline

pytestmark = pytest.mark.kafka

USERS = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "strimzi" / "users.yaml"


def strimzi_acls(prefix: str) -> dict[str, list[Acl]]:
    """Every KafkaUser's ACLs, with the deployed topic prefix (yuqing.) replaced by `prefix`."""
    out: dict[str, list[Acl]] = {}
    for doc in yaml.safe_load_all(USERS.read_text(encoding="utf-8")):
        if not doc or doc.get("kind") != "KafkaUser":
            continue
        acls = []
        for rule in doc["spec"]["authorization"]["acls"]:
            resource = rule["resource"]
            name = resource.get("name", "")
            if name.startswith("yuqing."):
                name = prefix + name.removeprefix("yuqing.")
            prefixed = resource.get("patternType") == "prefix"
            acls.append(
                Acl(resource["type"], name, tuple(rule["operations"]), "prefix" if prefixed else "literal")
            )
        out[doc["metadata"]["name"]] = acls
    return out


@pytest.fixture(scope="module")
def acl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    users = tuple(strimzi_acls("yuqing."))
    broker = EmbeddedBroker(
        port=free_port(),
        home=tmp_path_factory.mktemp("acl-kafka"),
        security=BrokerSecurity(tls=True, sasl="scram", acls=True, users=users),
    )
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


async def test_every_service_runs_with_only_its_strimzi_users_acls(
    acl_kafka, prefix, topics, stack_factory, tmp_path
):
    for user, acls in strimzi_acls(prefix).items():
        await asyncio.to_thread(acl_kafka.grant, user, acls)
    assert set(SERVICES) <= {u.removeprefix("yuqing-") for u in acl_kafka.security.users}

    await check_pipeline(
        acl_kafka.bootstrap,
        acl_kafka.client_kwargs(),  # the test's own clients: the admin user
        topics,
        stack_factory,
        tmp_path,
        extra_env=acl_kafka.client_env(user="yuqing-topics"),  # the stack creates the topics as this user
        service_env={s: acl_kafka.client_env(user=f"yuqing-{s}") for s in SERVICES},
    )

    # And the authorizer was on: ingest's user may not read what scoring wrote.
    consumer = AIOKafkaConsumer(
        topics.keyword_hits,
        bootstrap_servers=acl_kafka.bootstrap,
        **acl_kafka.client_kwargs(user="yuqing-ingest"),
    )
    await consumer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(consumer.getmany(timeout_ms=5000), 30)
    finally:
        await consumer.stop()
