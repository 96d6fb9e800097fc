"""The root error of yuqing and the outcomes every service shares."""

from __future__ import annotations

__all__ = ["ConfigError", "DeadLetter", "YuqingError"]


class YuqingError(Exception):
    """Root of every error yuqing raises on purpose."""


class ConfigError(YuqingError):
    """A settings value or config file is wrong; the message names the field."""


class DeadLetter(YuqingError):
    """A message that can never be processed: route it to the dead-letter topic with this reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
