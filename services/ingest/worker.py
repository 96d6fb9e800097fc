"""Runs the ingest API under uvicorn."""

from __future__ import annotations

from services.common.serve import serve_http
from services.ingest.api import create_app
from services.ingest.settings import IngestSettings

__all__ = ["run"]


def run(settings: IngestSettings) -> None:
    serve_http(create_app(settings), settings.api_host, settings.api_port)
