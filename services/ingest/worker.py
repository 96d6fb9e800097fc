"""Runs the ingest API under uvicorn."""

from __future__ import annotations

import uvicorn

from services.ingest.api import create_app
from services.ingest.settings import IngestSettings

__all__ = ["run"]


def run(settings: IngestSettings) -> None:
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
        # uvloop is installed for scoring; uvicorn would pick it up here too. Ingest's figures and tests are
        # on asyncio's loop: switch after measuring it (bench/ingest.py).
        loop="asyncio",
    )
