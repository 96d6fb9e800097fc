"""Errors of the escalation service."""

from __future__ import annotations

from services.common.exceptions import YuqingError

__all__ = ["InvalidTransition"]


class InvalidTransition(YuqingError):
    """An operator action that the incident's current state does not allow (HTTP 409)."""
