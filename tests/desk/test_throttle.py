"""Login throttling on an injected clock: lockout after N failures in the window, per key (shared by replicas
through the store: tests/desk/test_store.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from services.desk.settings import DeskSettings
from services.desk.store import open_store
from services.desk.throttle import LoginThrottle, lockout
from tests.factories import T0

MIN = timedelta(minutes=1)
KEYS = ("client:10.0.0.7", "name:张三")


def test_lockout_rule():
    window = 15 * MIN
    times = [T0 + i * MIN for i in reversed(range(5))]  # newest first
    assert lockout(times[1:], T0 + 4 * MIN, 5, window) is None
    assert lockout(times, T0 + 4 * MIN, 5, window) == 11 * MIN
    assert lockout(times, T0 + 14 * MIN, 5, window) == MIN
    assert lockout(times, T0 + 15 * MIN, 5, window) is None
    # Only the last five count: the sixth failure, at 15 min, locks out until the second is 15 min old.
    assert lockout([T0 + 15 * MIN, *times], T0 + 15 * MIN, 5, window) == MIN


@pytest.fixture
def throttle() -> Iterator[LoginThrottle]:
    store = open_store(DeskSettings(database_url="sqlite://"))
    yield LoginThrottle(store, max_failures=5, window=15 * MIN)
    store.close()


def test_the_fifth_failure_locks_out_until_the_first_leaves_the_window(throttle):
    for i in range(4):
        assert throttle.retry_after(KEYS, T0 + i * MIN) is None
        throttle.failed(KEYS, T0 + i * MIN)
    assert throttle.retry_after(KEYS, T0 + 4 * MIN) is None
    throttle.failed(KEYS, T0 + 4 * MIN)
    assert throttle.retry_after(KEYS, T0 + 4 * MIN) == 11 * MIN
    assert throttle.retry_after(KEYS, T0 + 14 * MIN) == MIN
    assert throttle.retry_after(KEYS, T0 + 15 * MIN) is None
    throttle.failed(KEYS, T0 + 15 * MIN)
    assert throttle.retry_after(KEYS, T0 + 15 * MIN) == MIN


def test_keys_count_on_their_own(throttle):
    short = LoginThrottle(throttle.store, max_failures=2, window=15 * MIN)
    short.failed(("client:a", "name:x"), T0)
    short.failed(("client:b", "name:x"), T0 + MIN)
    assert short.retry_after(("client:c", "name:x"), T0 + MIN) == 14 * MIN
    assert short.retry_after(("client:a", "name:y"), T0 + MIN) is None
    assert short.retry_after(("client:b", "name:y"), T0 + MIN) is None


def test_a_success_clears_the_count(throttle):
    short = LoginThrottle(throttle.store, max_failures=2)
    short.failed(KEYS, T0)
    short.succeeded(KEYS)
    short.failed(KEYS, T0 + MIN)
    assert short.retry_after(KEYS, T0 + MIN) is None


def test_at_least_one_failure_is_needed(throttle):
    with pytest.raises(ValueError, match="max_failures"):
        LoginThrottle(throttle.store, max_failures=0)
