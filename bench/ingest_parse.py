"""What refusing repeated JSON keys costs a request: orjson.loads against json.loads_unique, and both
against the whole conversion of the same body into Posts (no broker).

    .venv/bin/python bench/ingest_parse.py [--repeat 200]

Bodies: the 8 per-platform samples x 12 (compact JSON), the accepted payloads of the real-shaped corpus
x 3 (compact and indented), and one normalised post.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common import json
from services.ingest.batch import Body, native, to_posts

PAYLOADS = Path(__file__).resolve().parents[1] / "tests" / "ingest" / "payloads"


def _median_us(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    samples = [json.loads(p.read_bytes()) for p in sorted(PAYLOADS.glob("*.json"))]
    real = [
        (doc["platform"], case)
        for p in sorted((PAYLOADS / "real").glob("*.json"))
        for doc in [json.loads(p.read_bytes())]
        for case in doc["cases"]
        if "expect" in case
    ]
    douyin = [c["payload"] for platform, c in real if platform == "douyin"]
    bodies = {
        "8 samples x 12 (67 KB)": orjson.dumps(samples * 12),
        "corpus x 3, compact": orjson.dumps([c["payload"] for _, c in real] * 3),
        "corpus x 3, indented": orjson.dumps([c["payload"] for _, c in real] * 3, option=orjson.OPT_INDENT_2),
        "one post": orjson.dumps(samples[0]),
        "100 douyin items": orjson.dumps((douyin * 20)[:100]),
    }
    now = datetime.now(UTC)
    print("| body | bytes | orjson.loads (µs) | loads_unique (µs) | difference | whole conversion (µs) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, body in bodies.items():
        plain = _median_us(partial(orjson.loads, body), args.repeat)
        unique = _median_us(partial(json.loads_unique, body), args.repeat)
        convert = ""
        if name == "100 douyin items":
            items = Body(json.loads(body), single=False)
            whole = _median_us(partial(to_posts, items, native("douyin"), now), 20)
            convert = f"{whole:,.0f}"
        row = f"{plain:,.0f} | {unique:,.0f} | +{unique - plain:,.0f} | {convert}"
        print(f"| {name} | {len(body):,} | {row} |")


if __name__ == "__main__":
    main()
