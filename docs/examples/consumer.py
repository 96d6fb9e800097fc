"""An example downstream consumer of yuqing's tier changes, in plain aiokafka (no yuqing import needed).

    pip install aiokafka
    python docs/examples/consumer.py --bootstrap 127.0.0.1:9092 [--prefix yuqing.]

On a cluster with TLS and SASL (as the ops team runs it), name the protocol, mechanism, user and CA; the
password comes from the environment, never the command line:

    KAFKA_SASL_PASSWORD=... python docs/examples/consumer.py --bootstrap kafka-0:9093 \
        --security-protocol SASL_SSL --sasl-mechanism SCRAM-SHA-512 --username downstream \
        --cafile ca.crt [--certfile client.crt --keyfile client.key]

Delivery is at-least-once: the same event can arrive twice, with the same event_id, after a producer
retry, a rebalance or a restart. This consumer commits offsets only after handling an event (nothing is
lost) and skips event_ids it has already handled. That memory is in-process and bounded: it covers
repeats within one run, not a restart, when events handled but not yet committed arrive again. If a
repeat would do harm, make the handling itself idempotent, e.g. an upsert keyed by event_id in your store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer


class SeenIds:
    """The last `size` event ids handled, oldest forgotten first."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, event_id: str) -> bool:
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


def describe(event: dict[str, Any]) -> str:
    return (
        f"{event['group']}: tier {event['previous']} -> {event['tier']} ({event['direction']}, "
        f"{event['reason']}) counts {event['counts']}"
    )


def security(
    protocol: str = "PLAINTEXT",
    mechanism: str | None = None,
    username: str | None = None,
    password: str | None = None,
    cafile: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> dict[str, Any]:
    """aiokafka's keyword arguments for a TLS and/or SASL connection (none for PLAINTEXT)."""
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=cafile)  # the system's CAs when no file is named
        if certfile:
            context.load_cert_chain(certfile, keyfile)  # mTLS, when the cluster asks for a client certificate
        kwargs["ssl_context"] = context
    if protocol.startswith("SASL_"):
        if not (mechanism and username and password):
            raise SystemExit(f"{protocol} needs --sasl-mechanism, --username and KAFKA_SASL_PASSWORD")
        kwargs |= {
            "sasl_mechanism": mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }
    return kwargs


async def consume(
    bootstrap: str,
    prefix: str,
    group_id: str = "example-downstream",
    out: Callable[[str], None] = print,
    limit: int | None = None,
    **client: Any,
) -> None:
    """Print each tier change once; stop after `limit` records (None: run until cancelled). `client` holds
    further aiokafka arguments, such as those `security` returns."""
    consumer = AIOKafkaConsumer(
        f"{prefix}tier-changes",
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client,
    )
    seen = SeenIds()
    handled = 0
    await consumer.start()
    try:
        async for record in consumer:
            event = json.loads(record.value)
            if event.get("schema_version") != 1:
                out(
                    f"skipping unknown schema version {event.get('schema_version')} at offset {record.offset}"
                )
            elif seen.first_time(event["event_id"]):
                out(describe(event))
            await consumer.commit()
            handled += 1
            if limit is not None and handled >= limit:
                return
    finally:
        await consumer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--prefix", default="yuqing.")
    parser.add_argument(
        "--security-protocol", default="PLAINTEXT", choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
    )
    parser.add_argument("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    parser.add_argument("--username")
    parser.add_argument("--cafile")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    client = security(
        args.security_protocol,
        args.sasl_mechanism,
        args.username,
        os.environ.get("KAFKA_SASL_PASSWORD"),
        args.cafile,
        args.certfile,
        args.keyfile,
    )
    asyncio.run(consume(args.bootstrap, args.prefix, **client))
