"""A bound on stopping: once asked to stop, a process is gone within SHUTDOWN_SECONDS, done or not.

A worker's graceful stop talks to Kafka: it commits offsets, leaves its group and flushes its producer.
With the broker unreachable each of those waits for a timeout or retries (faust's consumer kept retrying its
fetches for minutes), so SIGTERM alone did not end the process: a rollout, a dev stack's Ctrl-C and the test
suite waited on it. Cutting the stop short is as safe as the SIGKILL the reliability suite survives: output
is flushed before offsets are committed, so what was not committed is processed again after a restart, with
the same event ids.
"""

from __future__ import annotations

import logging
import os
import threading
import time

__all__ = ["SHUTDOWN_SECONDS", "exit_after"]

log = logging.getLogger(__name__)

# Below the 10 s the tests allow every worker, and Kubernetes' grace period (30 s) before its SIGKILL.
SHUTDOWN_SECONDS = 8.0
# A process cut short did not stop cleanly; a supervisor may want to know.
_EXIT_CODE = 1
_armed = threading.Event()


def exit_after(seconds: float = SHUTDOWN_SECONDS) -> None:
    """End this process `seconds` from now unless it has exited by then; called when a stop is requested.
    Only the first call counts (a second SIGTERM does not push the deadline back)."""
    if _armed.is_set():
        return
    _armed.set()
    threading.Thread(target=_expire, args=(seconds,), name="shutdown-deadline", daemon=True).start()


def _expire(seconds: float) -> None:
    time.sleep(seconds)
    log.error(
        "still stopping %.0f s after being asked to (is Kafka unreachable?): exiting now; input not yet "
        "committed is processed again after a restart",
        seconds,
    )
    os._exit(_EXIT_CODE)
