"""Failed console logins, counted per key (the client's address, the name given), with a lockout.

The failures live in the store, so that every desk replica counts the same ones: behind a load balancer, a
guesser cannot get five tries per replica. The rule itself is `lockout`, a plain function over the times.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from services.desk.store import Store

__all__ = ["LoginThrottle", "lockout"]


def lockout(
    failures: Sequence[datetime], now: datetime, max_failures: int, window: timedelta
) -> timedelta | None:
    """How long a key with these failed logins (newest first) is locked out; None when it may try.

    Locked when its last `max_failures` failures all fall within `window`, until the oldest of them is
    `window` old; then one more try is allowed, and so on."""
    recent = [t for t in failures[:max_failures] if now - t < window]
    if len(recent) < max_failures:
        return None
    return recent[-1] + window - now


class LoginThrottle:
    """`lockout` over the failures the store holds. Blocking: the console calls it from a worker thread."""

    def __init__(
        self, store: Store, max_failures: int = 5, window: timedelta = timedelta(minutes=15)
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.store = store
        self.max_failures = max_failures
        self.window = window

    def retry_after(self, keys: Sequence[str], now: datetime) -> timedelta | None:
        """How long until any of `keys` may try again; None when none is locked out."""
        failures = self.store.login_failures(keys, now - self.window, self.max_failures)
        waits = [
            w for times in failures.values() if (w := lockout(times, now, self.max_failures, self.window))
        ]
        return max(waits) if waits else None

    def failed(self, keys: Sequence[str], now: datetime) -> None:
        self.store.login_failed(keys, now, forget_before=now - self.window)

    def succeeded(self, keys: Sequence[str]) -> None:
        self.store.login_succeeded(keys)
