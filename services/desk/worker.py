"""Runs the desk under uvicorn."""

from __future__ import annotations

import uvicorn

from services.desk.app import create_app
from services.desk.settings import DeskSettings

__all__ = ["run"]


def run(settings: DeskSettings) -> None:
    uvicorn.run(
        create_app(settings),
        host=settings.desk_host,
        port=settings.desk_port,
        log_level="warning",
        access_log=False,
        loop="asyncio",
    )
