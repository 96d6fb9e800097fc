"""An HTTP service (ingest, desk) under uvicorn, stopping within a bound."""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI

from services.common.shutdown import exit_after

__all__ = ["serve_http"]

# Open responses get this long to finish after SIGTERM (a console's event stream runs up to 15 s), then are
# cancelled; the lifespan's shutdown follows, within the process's own bound (services/common/shutdown.py).
_GRACE_SECONDS = 5


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        exit_after()
        super().handle_exit(sig, frame)


def serve_http(app: FastAPI, host: str, port: int) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        # uvloop is installed for scoring; uvicorn would pick it up here too. The HTTP services' figures and
        # tests are on asyncio's loop: switch after measuring it (bench/ingest.py).
        loop="asyncio",
        timeout_graceful_shutdown=_GRACE_SECONDS,
    )
    _Server(config).run()
