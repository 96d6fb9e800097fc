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
    )
