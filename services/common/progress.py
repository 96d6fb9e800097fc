"""A progress line for the command-line tools that read a file (replay, backtest): one carriage-return line
on a terminal, redrawn at most five times a second."""

from __future__ import annotations

import math
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """`label [#####.....]  42.0%  <detail>`, where the subclass's `detail` says what the counts mean."""

    label = "progress"
    _WIDTH = 24
    _EVERY = 0.2  # seconds between redraws; a terminal cannot show more and it costs the loop time

    def __init__(self, total_bytes: int, stream: TextIO | None) -> None:
        self._total = max(total_bytes, 1)
        self._stream = stream
        self._last = -math.inf

    def detail(self, now: float, *counts: int) -> str:
        return "  ".join(f"{c:,}" for c in counts)

    def show(self, done_bytes: int, *counts: int, final: bool = False) -> None:
        """Redraw with `done_bytes` of the file read and the tool's `counts`; `final` ends the line."""
        if self._stream is None:
            return
        now = time.monotonic()
        if not final and now - self._last < self._EVERY:
            return
        self._last = now
        fraction = min(done_bytes / self._total, 1.0)
        filled = round(fraction * self._WIDTH)
        self._stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self._WIDTH - filled)}] {fraction:6.1%}"
            f"  {self.detail(now, *counts)}" + ("\n" if final else "")
        )
        self._stream.flush()
