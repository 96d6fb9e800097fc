"""Errors of the notifier service."""

from __future__ import annotations

from services.common.exceptions import YuqingError

__all__ = ["NotifierError"]


class NotifierError(YuqingError):
    """The notifier was asked to do something its config cannot do; the message names what and why."""
