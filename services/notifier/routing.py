"""Routing: the first matching route picks an alert's channels and its fallback."""

from __future__ import annotations

from datetime import datetime

from schemas.events import Alert
from services.common.schedule import OnCall, Route

__all__ = ["OnCall", "Route", "Router"]


class Router:
    def __init__(
        self,
        routes: tuple[Route, ...],
        all_channels: tuple[str, ...],
        unrouted: tuple[str, ...] | None = None,
    ) -> None:
        self.routes = routes
        self.all_channels = all_channels
        self.unrouted = all_channels if unrouted is None else unrouted

    def route(self, alert: Alert, at: datetime) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
        """(primary channels, fallback channels, matched a route).

        An alert no route matches goes to the unrouted channels (every channel unless configured), never
        nowhere: a briefing (group '*') or a new rule group nobody routed yet is still seen by someone.
        """
        for r in self.routes:
            if r.matches(alert, at):
                return r.channels, r.fallback, True
        return self.unrouted, (), not self.routes
