"""Topic creation: per-topic errors in the broker's answer are checked, short topics are reported."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.topics import Topics
from services.common.exceptions import KafkaSetupError
from services.common.kafka import creation_errors, ensure_changelogs, ensure_topics, short_topics
from services.common.settings import CommonSettings
from services.escalation.settings import EscalationSettings
from services.escalation.worker import build
from tests.conftest import create_topic


def test_creation_errors_ignore_success_and_existing_topics() -> None:
    answer = [
        ("y.posts.raw", 0, None),
        ("y.alerts", 36, "Topic 'y.alerts' already exists."),
        ("y.incidents", 38, "RF 3 larger than brokers: 1."),
        ("y.deliveries", 44),  # v0 answers carry no message
    ]
    assert creation_errors(answer) == [
        "y.incidents: InvalidReplicationFactorError (code 38, RF 3 larger than brokers: 1.)",
        "y.deliveries: PolicyViolationError (code 44)",
    ]


def test_short_topics_lists_those_under_the_configured_partitions() -> None:
    described = [
        {"topic": "y.posts.raw", "error_code": 0, "partitions": [{}, {}, {}]},
        {"topic": "y.alerts", "error_code": 0, "partitions": [{}]},
        {"topic": "y.gone", "error_code": 3, "partitions": []},
    ]
    assert short_topics(described, 3) == [("y.alerts", 1)]
    assert short_topics(described, 1) == []


@pytest.mark.kafka
async def test_a_refused_topic_raises_a_clear_error(kafka: str, prefix: str) -> None:
    settings = CommonSettings(kafka_bootstrap=kafka, topic_prefix=prefix, replication_factor=3)
    count = len(Topics.with_prefix(prefix).all())
    with pytest.raises(
        KafkaSetupError, match=rf"refused to create {count} topic\(s\).*InvalidReplicationFactor"
    ):
        await ensure_topics(settings, retries=1)


@pytest.mark.kafka
async def test_existing_topics_with_fewer_partitions_are_reported(
    kafka: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    topics = Topics.with_prefix(prefix)
    await create_topic(kafka, topics.alerts, partitions=1)
    settings = CommonSettings(kafka_bootstrap=kafka, topic_prefix=prefix, partitions=2)
    with caplog.at_level(logging.WARNING, logger="services.common.kafka"):
        created = await ensure_topics(settings)
    assert topics.alerts not in created
    assert len(created) == len(topics.all()) - 1
    (warning,) = [r.getMessage() for r in caplog.records if "fewer than" in r.getMessage()]
    assert f"topic {topics.alerts} has 1 partitions, fewer than YUQING_PARTITIONS=2" in warning
    assert await ensure_topics(settings) == []  # idempotent


@pytest.mark.kafka
async def test_faust_changelogs_exist_compacted_with_partitions_before_the_worker_starts(
    kafka: str, prefix: str, tmp_path: Path
) -> None:
    # faust, creating its changelog itself, could snapshot it with 0 partitions and then refuse every table
    # write: the escalation worker sent an incident's events, could not save it, and opened it again.
    settings = EscalationSettings(kafka_bootstrap=kafka, topic_prefix=prefix, partitions=2, data_dir=tmp_path)
    names = build(settings).changelog_topics()
    assert names == [f"{prefix}escalation-incidents-changelog"]
    assert await ensure_changelogs(settings, names) == {names[0]: 2}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        (answer,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, names[0])])
        configs = {entry[0]: entry[1] for entry in answer.resources[0][4]}
    finally:
        await admin.close()
    assert configs["cleanup.policy"] == "compact"
    assert await ensure_changelogs(settings, names) == {names[0]: 2}  # an existing one is left as it is


@pytest.mark.kafka
async def test_a_changelog_that_never_gets_partitions_is_refused(kafka: str, prefix: str) -> None:
    settings = CommonSettings(kafka_bootstrap=kafka, topic_prefix=prefix, partitions=1)
    with pytest.raises(KafkaSetupError, match="without partitions"):
        await ensure_changelogs(settings, [], also=[f"{prefix}never-created"])
