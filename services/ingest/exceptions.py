"""Errors of the ingest service (the adapters' own is services.ingest.adapters.AdapterError)."""

from __future__ import annotations

from services.common.exceptions import YuqingError
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["AdapterError", "ProduceFailed", "ReplayError"]


class ReplayError(YuqingError, ValueError):
    """`yuqing replay` was given an argument it cannot use (speed, platform, file)."""


class ProduceFailed(YuqingError):
    """Kafka did not acknowledge every post of a request; `acked` are the indexes of those it did."""

    def __init__(self, acked: list[int], total: int, cause: BaseException | None) -> None:
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else "no ack in time"
        super().__init__(f"Kafka acknowledged {len(acked)} of {total} posts ({reason})")
        self.acked = acked
        self.total = total
        self.cause = cause
