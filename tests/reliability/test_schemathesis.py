"""Schemathesis against the OpenAPI documents of ingest and the desk, running: no request gets a 5xx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from services.cli.runner import Stack
from services.common.kafka import ensure_topics
from services.common.settings import CommonSettings
from tests.conftest import free_port

pytestmark = pytest.mark.kafka

TOKEN = "fuzz-operator-and-ingest"  # the same token for both scopes: the fuzz reaches every handler


@pytest.fixture(scope="module")
def running(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Ingest and the desk, over the real broker: their base URLs."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    prefix = f"fuzz{int(time.time())}."
    asyncio.run(ensure_topics(CommonSettings(kafka_bootstrap=kafka, topic_prefix=prefix, partitions=1)))
    stack = Stack(
        env={
            "YUQING_KAFKA_BOOTSTRAP": kafka,
            "YUQING_TOPIC_PREFIX": prefix,
            "YUQING_PARTITIONS": "1",
            "YUQING_INGEST_TOKENS": TOKEN,
            "YUQING_OPERATOR_TOKENS": TOKEN,
            "YUQING_LINK_SECRET": "fuzz-link-secret-0a1b",
            "YUQING_DATA_DIR": str(tmp),
            "YUQING_LOG_LEVEL": "warn",
        },
        log_dir=Path(tmp) / "logs",
        api_port=free_port(),
        desk_port=free_port(),
    )
    stack.start(("ingest", "desk"))
    urls = {"ingest": f"http://127.0.0.1:{stack.api_port}", "desk": f"http://127.0.0.1:{stack.desk_port}"}
    try:
        for url in urls.values():
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        yield urls
    finally:
        stack.stop()


@pytest.mark.parametrize(("service", "least"), [("ingest", 5), ("desk", 10)])
def test_no_generated_request_gets_a_server_error(running, service, least):
    """Every operation in the service's OpenAPI document, with generated parameters and bodies, authenticated.

    schemathesis's pytest plugin does not run under pytest 9, so its Hypothesis strategies are driven here.
    """
    api_schema: Any = schemathesis.openapi.from_url(f"{running[service]}/openapi.json")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= least
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error]
            )
            statuses.append(response.status_code)

        call()
    assert len(statuses) > 10 * least, "the fuzz barely ran"
    assert max(statuses) < 500
    assert {200, 422} <= set(statuses), sorted(set(statuses))
