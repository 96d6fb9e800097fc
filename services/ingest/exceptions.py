"""Errors of the ingest service."""

from __future__ import annotations

from services.common.exceptions import YuqingError
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["AdapterError", "ReplayError"]


class ReplayError(YuqingError, ValueError):
    """`yuqing replay` was given an argument it cannot use (speed, platform, file)."""
