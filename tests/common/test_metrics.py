"""observe_many must leave a histogram exactly as observe() one value at a time leaves it."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from services.common.metrics import observe_many

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


def _exposition(fill: str, amounts: list[float]) -> list[str]:
    registry = CollectorRegistry()
    child = Histogram("t_seconds", "t", ["service"], buckets=BUCKETS, registry=registry).labels("s")
    if fill == "one by one":
        for amount in amounts:
            child.observe(amount)
    else:
        observe_many(child, amounts)
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line and not line.startswith("#")]


@pytest.mark.parametrize(
    "amounts",
    [
        [],
        [0.0, 0.0005, 0.00051, 0.001, 2.5, 2.6, 100.0],  # on, just above and beyond the bounds
        [random.Random(7).expovariate(200) for _ in range(5000)],
    ],
)
def test_a_bulk_observation_matches_one_by_one(amounts: list[float]) -> None:
    assert _exposition("bulk", amounts) == _exposition("one by one", amounts)


def test_without_the_attributes_it_falls_back_to_observe() -> None:
    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    plain = Plain()
    observe_many(plain, [0.1, 0.2])
    assert plain.seen == [0.1, 0.2]
