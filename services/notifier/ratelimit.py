"""Per-channel token buckets: chat robots allow about 20 messages a minute."""

from __future__ import annotations

from datetime import datetime

__all__ = ["TokenBucket"]


class TokenBucket:
    def __init__(self, per_minute: float, now: datetime) -> None:
        self.capacity = max(1.0, per_minute)
        self.rate = per_minute / 60.0
        self.tokens = self.capacity
        self.updated = now

    def wait_for(self, now: datetime) -> float:
        """Seconds to wait before the next send is allowed (0 = go, and the token is taken)."""
        elapsed = max(0.0, (now - self.updated).total_seconds())
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else float("inf")
