"""`python -m tests.reliability.crashing_worker <service>`: `yuqing worker <service>`, except that decoding a
message that contains CRASH_MARKER kills the process on the spot (os._exit), as an out-of-memory kill or a
crash inside a C extension would: no exception, no finally, no flush.

Test-only: the hook lives here, in the test tree, and is installed before the worker's modules import
`decode`; production code has no such switch to flip.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from services.common import stream

CRASH_MARKER = b"CRASHMARKER"
CRASH_EXIT_CODE = 86

_decode = stream.decode


def _dying_decode(model: Any, raw: bytes | None) -> Any:
    if raw is not None and CRASH_MARKER in raw:
        os._exit(CRASH_EXIT_CODE)
    return _decode(model, raw)


if __name__ == "__main__":
    stream.decode = _dying_decode
    from services.cli.main import main

    sys.exit(main(["worker", sys.argv[1]]))
