"""The whole pipeline over SASL_SSL with SCRAM: ingest, scoring, escalation and the notifier each log in to
a TLS listener whose certificate comes from the embedded broker's own CA, as against a production cluster."""

from __future__ import annotations

import pytest

from tests.integration.test_pipeline import check_pipeline

pytestmark = pytest.mark.kafka


async def test_posts_flow_through_all_four_services_over_sasl_ssl(
    secure_kafka, topics, stack_factory, tmp_path
):
    env = secure_kafka.client_env()
    assert env["YUQING_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["YUQING_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "YUQING_KAFKA_SSL_CERT_FILE" not in env  # SASL alone, the usual production set-up
    await check_pipeline(
        env["YUQING_KAFKA_BOOTSTRAP"],
        secure_kafka.client_kwargs(),
        topics,
        stack_factory,
        tmp_path,
        extra_env=env,
    )
