"""The desk's errors."""

from __future__ import annotations

from services.common.exceptions import ConfigError, YuqingError

__all__ = ["StoreError", "StoreRejected", "StoreUnavailable"]


class StoreError(ConfigError):
    """The store cannot be used as configured (unreachable at start-up, login refused, a schema from a newer
    release); the message names YUQING_DATABASE_URL."""


class StoreUnavailable(YuqingError):
    """The store did not answer now (a restart, a network blip): retry later, lose nothing."""


class StoreRejected(YuqingError):
    """The store refused what it was given (a value out of a column's range, a broken constraint): the same
    rows will always fail, so the sink dead-letters the event instead of retrying it."""
