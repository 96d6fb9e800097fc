"""Ingest: the HTTP API that puts normalised posts on Kafka."""

from services.ingest.api import create_app
from services.ingest.settings import IngestSettings

__all__ = ["IngestSettings", "create_app"]
