"""An example downstream consumer of yuqing's tier changes, in plain aiokafka (no yuqing import needed).

    pip install aiokafka
    python docs/examples/consumer.py --bootstrap 127.0.0.1:9092 [--prefix yuqing.]

Delivery is at-least-once: the same event can arrive twice after a restart or rebalance, with the same
event_id. This consumer keeps the ids it has handled and skips repeats, and commits offsets only after
handling, so nothing is lost either.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import OrderedDict


async def main(bootstrap: str, prefix: str) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        f"{prefix}tier-changes",
        bootstrap_servers=bootstrap,
        group_id="example-downstream",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    seen: OrderedDict[str, None] = OrderedDict()
    await consumer.start()
    try:
        async for record in consumer:
            event = json.loads(record.value)
            if event.get("schema_version") != 1:
                print(
                    f"skipping unknown schema version {event.get('schema_version')} at offset {record.offset}"
                )
            elif event["event_id"] not in seen:
                seen[event["event_id"]] = None
                if len(seen) > 100_000:
                    seen.popitem(last=False)
                print(
                    f"{event['group']}: tier {event['previous']} -> {event['tier']} ({event['direction']}, "
                    f"{event['reason']}) counts {event['counts']}"
                )
            await consumer.commit()
    finally:
        await consumer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--prefix", default="yuqing.")
    args = parser.parse_args()
    asyncio.run(main(args.bootstrap, args.prefix))
