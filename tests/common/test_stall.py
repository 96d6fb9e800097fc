"""The stall watchdog with an injected clock: lag with no progress past the limit is a stall."""

from __future__ import annotations

from services.common.stall import StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waiting_input_with_no_progress_past_the_limit_is_a_stall() -> None:
    clock = Clock()
    watch = StallWatch(300, clock)
    clock.now += 300
    assert watch.stalled(lag=5) is None  # at the limit, not over it
    clock.now += 1
    assert watch.stalled(lag=5) == 301


def test_progress_resets_the_clock() -> None:
    clock = Clock()
    watch = StallWatch(300, clock)
    clock.now += 299
    watch.progressed()
    clock.now += 299
    assert watch.stalled(lag=5) is None
    clock.now += 2
    assert watch.stalled(lag=5) == 301


def test_an_idle_worker_with_nothing_to_read_is_healthy() -> None:
    clock = Clock()
    watch = StallWatch(300, clock)
    clock.now += 3600
    assert watch.stalled(lag=0) is None
    clock.now += 10  # input arrives after an idle hour: the stall is counted from when lag was last zero
    assert watch.stalled(lag=3) is None
    clock.now += 291
    assert watch.stalled(lag=3) == 301


def test_a_zero_limit_disables_it() -> None:
    clock = Clock()
    watch = StallWatch(0, clock)
    clock.now += 10**6
    assert watch.stalled(lag=10**6) is None
