"""The one error the adapters raise: a native payload that cannot become a Post."""

from __future__ import annotations

from services.common.exceptions import YuqingError

__all__ = ["AdapterError"]


class AdapterError(YuqingError):
    """`field` is the path in the native payload (e.g. 'user.screen_name'); `reason` says what was wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
