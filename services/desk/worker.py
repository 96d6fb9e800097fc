"""Runs the desk under uvicorn."""

from __future__ import annotations

from services.common.serve import serve_http
from services.desk.app import create_app
from services.desk.settings import DeskSettings

__all__ = ["run"]


def run(settings: DeskSettings) -> None:
    serve_http(create_app(settings), settings.desk_host, settings.desk_port)
