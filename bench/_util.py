"""Shared helpers for the benchmarks: a broker, synthetic posts and rule sets."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.broker import BrokerSecurity, EmbeddedBroker, free_port
from services.common.kafka_security import client_kwargs
from services.common.settings import CommonSettings, load_settings

__all__ = ["Kafka", "broker", "create_topic", "free_port", "rules", "synthetic_posts"]

_CHARS = "星河电器云栖光年海川鼎盛华晨蓝鲸极客青橙智联天宇恒达中科未来之声金桥银河锦程瑞丰博远卓越凯旋"
_TEMPLATES = [
    "#{brand}质量问题# 用了三个月就坏了，售后推诿，强烈要求退款！",
    "避雷{brand}，客服态度恶劣，投诉无门",
    "{brand}的新品发布会今天举行，现场很热闹",
    "今天去商场看了看{brand}，价格还可以",
    "曝光：{brand}虚假宣传，消费者集体维权",
]


@dataclass(frozen=True)
class Kafka:
    """Where a benchmark runs: the bootstrap servers, the security arguments of the benchmark's own clients,
    and the YUQING_KAFKA_* settings its yuqing processes get."""

    bootstrap: str
    client: dict[str, Any]
    env: dict[str, str]

    def settings(self, **fields: Any) -> CommonSettings:
        known = {k.removeprefix("YUQING_").lower(): v for k, v in self.env.items()}
        return load_settings(CommonSettings, **known | fields)


async def create_topic(kafka: Kafka, name: str, partitions: int = 1) -> None:
    """Benchmarks' own topics; the broker does not auto-create (a typo must not make a topic)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, **kafka.client)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


@contextmanager
def broker(secure: bool = False) -> Iterator[Kafka]:
    """The cluster of YUQING_KAFKA_BOOTSTRAP with the YUQING_KAFKA_* settings of the environment, if set;
    else an embedded broker for the run: plaintext, or with `secure` a SASL_SSL (SCRAM) listener, to
    measure what TLS and SASL cost."""
    if os.environ.get("YUQING_KAFKA_BOOTSTRAP"):
        settings = load_settings(CommonSettings)
        env = {k: v for k, v in os.environ.items() if k.startswith("YUQING_KAFKA_")}
        yield Kafka(settings.kafka_bootstrap, client_kwargs(settings), env)
        return
    with tempfile.TemporaryDirectory(prefix="yuqing-bench-") as tmp:
        security = BrokerSecurity(tls=True, sasl="scram") if secure else BrokerSecurity()
        b = EmbeddedBroker(port=free_port(), home=Path(tmp), security=security)
        b.start()
        try:
            yield Kafka(b.bootstrap, b.client_kwargs(), b.client_env())
        finally:
            b.stop()


def brand_names(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    names: set[str] = {"星河电器"}
    while len(names) < n:
        names.add("".join(rnd.choice(_CHARS) for _ in range(rnd.randint(3, 5))))
    return sorted(names)


def rules(terms: int) -> dict[str, Any]:
    """A rules config with `terms` brand terms in groups of 10 (the shared negative lexicon adds ~60)."""
    names = brand_names(terms)
    groups = [{"name": f"g{i}", "brands": names[i : i + 10]} for i in range(0, len(names), 10)]
    return {"version": f"bench-{terms}", "groups": groups}


def synthetic_posts(n: int, terms: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    """Posts of realistic length; about 60 % mention a brand with a negative tag."""
    rnd = random.Random(seed)
    names = brand_names(terms)
    start = datetime.now(UTC) - timedelta(hours=1)
    for i in range(n):
        text = (
            rnd.choice(_TEMPLATES).format(brand=rnd.choice(names)) + "。" + "家里的电器" * rnd.randint(1, 8)
        )
        yield {
            "platform": "weibo",
            "post_id": f"b{i}",
            "text": text,
            "published_at": start.isoformat(),
            "event_time": (start + timedelta(milliseconds=i)).isoformat(),
            "engagement": {
                "reposts": rnd.randint(0, 50),
                "comments": rnd.randint(0, 50),
                "likes": rnd.randint(0, 500),
            },
        }
