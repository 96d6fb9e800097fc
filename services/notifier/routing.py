"""Routing: the first matching route picks an alert's channels and its fallback."""

from __future__ import annotations

from datetime import datetime

from schemas.events import Alert
from services.common.schedule import OnCall, Route

__all__ = ["OnCall", "Route", "Router"]


class Router:
    def __init__(self, routes: tuple[Route, ...], all_channels: tuple[str, ...]) -> None:
        self.routes = routes
        self.all_channels = all_channels

    def route(self, alert: Alert, at: datetime) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(primary channels, fallback channels) for the alert; every channel when no route is set."""
        for r in self.routes:
            if r.matches(alert, at):
                return r.channels, r.fallback
        return (self.all_channels, ()) if not self.routes else ((), ())
