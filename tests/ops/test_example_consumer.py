"""docs/examples/consumer.py works against a real broker: it reads tier changes once each, by event_id."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from schemas.events import Tier
from services.common import json
from tests.conftest import create_topic, produce
from tests.factories import tier_change

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "consumer.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("yuqing_example_consumer", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seen_ids_forget_the_oldest_beyond_their_size() -> None:
    seen = _example().SeenIds(size=2)
    # a is forgotten when c comes in, so its next repeat is not recognised; c still is.
    assert [seen.first_time(i) for i in ("a", "b", "a", "c", "a", "c")] == [
        True,
        True,
        False,
        True,
        True,
        False,
    ]


@pytest.mark.kafka
async def test_the_example_consumer_prints_each_tier_change_once(kafka: str, prefix: str) -> None:
    topic = f"{prefix}tier-changes"
    await create_topic(kafka, topic, partitions=1)
    first = tier_change(Tier.level3, Tier.none, {"8h": 12_000})
    second = tier_change(Tier.level2, Tier.level3, {"8h": 24_000})
    third = tier_change(Tier.level1, Tier.level2, {"8h": 36_000})
    unknown = json.dumps({**json.loads(json.dumps(first)), "schema_version": 2})
    records = [first, second, second, third]  # `second` twice: a producer retry after a lost ack
    items: list[tuple[bytes | None, bytes]] = [(b"xinghe", json.dumps(r)) for r in records]
    await produce(kafka, topic, [*items, (b"xinghe", unknown)])
    lines: list[str] = []
    await asyncio.wait_for(
        _example().consume(kafka, prefix, group_id=f"{prefix}example", out=lines.append, limit=5), 60
    )
    assert lines == [
        "xinghe: tier 0 -> 3 (up, threshold) counts {'8h': 12000}",
        "xinghe: tier 3 -> 2 (up, threshold) counts {'8h': 24000}",
        "xinghe: tier 2 -> 1 (up, threshold) counts {'8h': 36000}",
        "skipping unknown schema version 2 at offset 4",
    ]


@pytest.mark.kafka
async def test_the_example_consumer_reads_over_sasl_ssl(secure_kafka, prefix: str) -> None:
    """Over TLS with a SCRAM user, as the ops team's cluster runs, with the arguments its flags give."""
    env = secure_kafka.client_env()
    example = _example()
    client = example.security(
        env["YUQING_KAFKA_SECURITY_PROTOCOL"],
        env["YUQING_KAFKA_SASL_MECHANISM"],
        env["YUQING_KAFKA_SASL_USERNAME"],
        env["YUQING_KAFKA_SASL_PASSWORD"],
        env["YUQING_KAFKA_SSL_CA_FILE"],
    )
    assert client["security_protocol"] == "SASL_SSL"
    topic = f"{prefix}tier-changes"
    ours = secure_kafka.client_kwargs()
    await create_topic(secure_kafka.bootstrap, topic, **ours)
    change = tier_change(Tier.level3, Tier.none, {"8h": 12_000})
    await produce(secure_kafka.bootstrap, topic, [(b"xinghe", json.dumps(change))], **ours)
    lines: list[str] = []
    await asyncio.wait_for(
        example.consume(
            secure_kafka.bootstrap, prefix, group_id=f"{prefix}example", out=lines.append, limit=1, **client
        ),
        60,
    )
    assert lines == ["xinghe: tier 0 -> 3 (up, threshold) counts {'8h': 12000}"]


def test_the_example_consumer_refuses_sasl_without_its_credentials() -> None:
    with pytest.raises(SystemExit, match="KAFKA_SASL_PASSWORD"):
        _example().security("SASL_SSL", "SCRAM-SHA-512", "downstream", None)
