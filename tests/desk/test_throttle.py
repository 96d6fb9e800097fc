"""Login throttling on an injected clock: lockout after N failures in the window, per key, bounded memory."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.desk.throttle import LoginThrottle
from tests.factories import T0

MIN = timedelta(minutes=1)
KEYS = ("client:10.0.0.7", "name:张三")


def test_the_fifth_failure_locks_out_until_the_first_leaves_the_window():
    throttle = LoginThrottle(max_failures=5, window=15 * MIN)
    for i in range(4):
        assert throttle.retry_after(KEYS, T0 + i * MIN) is None
        throttle.failed(KEYS, T0 + i * MIN)
    assert throttle.retry_after(KEYS, T0 + 4 * MIN) is None
    throttle.failed(KEYS, T0 + 4 * MIN)
    assert throttle.retry_after(KEYS, T0 + 4 * MIN) == 11 * MIN
    assert throttle.retry_after(KEYS, T0 + 14 * MIN) == MIN
    # The first failure has left the window: one more try, and a failure locks again until the second goes.
    assert throttle.retry_after(KEYS, T0 + 15 * MIN) is None
    throttle.failed(KEYS, T0 + 15 * MIN)
    assert throttle.retry_after(KEYS, T0 + 15 * MIN) == MIN


def test_each_key_counts_alone_and_any_locked_key_refuses():
    throttle = LoginThrottle(max_failures=2, window=15 * MIN)
    throttle.failed(("client:a", "name:x"), T0)
    throttle.failed(("client:b", "name:x"), T0 + MIN)
    # The name is locked whatever the address; the two addresses are not.
    assert throttle.retry_after(("client:c", "name:x"), T0 + MIN) == 14 * MIN
    assert throttle.retry_after(("client:a", "name:y"), T0 + MIN) is None
    assert throttle.retry_after(("client:b", "name:y"), T0 + MIN) is None


def test_a_success_clears_its_keys():
    throttle = LoginThrottle(max_failures=2)
    throttle.failed(KEYS, T0)
    throttle.succeeded(KEYS)
    throttle.failed(KEYS, T0 + MIN)
    assert throttle.retry_after(KEYS, T0 + MIN) is None


def test_memory_is_bounded_and_the_least_recently_failing_key_goes_first():
    throttle = LoginThrottle(max_failures=1, max_keys=3)
    for i, key in enumerate(("a", "b", "c")):
        throttle.failed((key,), T0 + i * MIN)
    throttle.failed(("a",), T0 + 3 * MIN)  # a fails again: now b is the oldest
    throttle.failed(("d",), T0 + 4 * MIN)
    assert len(throttle) == 3
    assert throttle.retry_after(("b",), T0 + 4 * MIN) is None
    assert throttle.retry_after(("a",), T0 + 4 * MIN) is not None


def test_nonsense_limits_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        LoginThrottle(max_failures=0)
