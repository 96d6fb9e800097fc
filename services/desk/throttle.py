"""Failed console logins, counted per key (the client's address, the name given), with a lockout.

A plain class over an injected `now`: the console asks before checking a token and reports the outcome.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta

__all__ = ["LoginThrottle"]


class LoginThrottle:
    """A key with `max_failures` failed logins within `window` is locked out until the oldest of them is
    `window` old; then one more try is allowed, and so on. At most `max_keys` keys are remembered (the
    least recently failing go first), so that a flood of made-up names cannot exhaust memory."""

    def __init__(
        self, max_failures: int = 5, window: timedelta = timedelta(minutes=15), max_keys: int = 10_000
    ) -> None:
        if max_failures < 1 or max_keys < 1:
            raise ValueError("max_failures and max_keys must be at least 1")
        self.max_failures = max_failures
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, deque[datetime]] = {}

    def retry_after(self, keys: Iterable[str], now: datetime) -> timedelta | None:
        """How long until any of `keys` may try again; None when none is locked out."""
        waits = []
        for key in keys:
            times = self._failures.get(key)
            if times is not None and len(times) == self.max_failures and now - times[0] < self.window:
                waits.append(times[0] + self.window - now)
        return max(waits) if waits else None

    def failed(self, keys: Iterable[str], now: datetime) -> None:
        for key in keys:
            times = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
            times.append(now)
            self._failures[key] = times  # re-inserted: the dict's order is least recently failing first
        while len(self._failures) > self.max_keys:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)
