"""The processes a test session started and that still run, read from /proc (Linux; no psutil needed).

A session's processes are its descendants, and whatever shares its process group: a child whose parent
died is re-parented to init but keeps its group, which is how the scoring worker of issue 16 outlived the
suite by 13 minutes (parent 1, pointed at a broker that no longer existed). A process started in a session
of its own (the embedded broker) is found while its parent is alive, which is while a fixture owns it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest

__all__ = [
    "OWNED",
    "Proc",
    "end",
    "outliving",
    "pytest_fixture_setup",
    "restarting_for_fixture",
    "running",
]

T = TypeVar("T")


class Proc(NamedTuple):
    pid: int
    started: int  # clock ticks after boot: with the pid, one process, whatever pid reuse does later
    command: str


def _stat(pid: str) -> tuple[str, int, int, int] | None:
    """(state, parent, process group, start time) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces and parentheses of its own.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:300] or "?"


def running(root: int | None = None) -> set[Proc]:
    """The live processes of the session whose process is `root` (default: this one), `root` and its
    ancestors aside. Zombies are left out: they have exited, and only wait for their parent to reap them."""
    root = os.getpid() if root is None else root
    table = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(p)) is not None}
    if root not in table:
        return set()
    group = table[root][2]
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    ours: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in ours:
                ours.add(child)
                todo.append(child)
    ours |= {pid for pid, (_, _, pgid, _) in table.items() if pgid == group}
    ancestor = root
    while ancestor in table and ancestor > 1:
        ours.discard(ancestor)
        ancestor = table[ancestor][1]
    return {
        Proc(pid, table[pid][3], _command(pid))
        for pid in ours
        if pid in table and table[pid][0] not in ("Z", "X")
    }


def outliving(before: set[Proc], within: float) -> set[Proc]:
    """Processes running now that were not in `before`, after giving them `within` seconds to exit (a
    teardown may have signalled one without waiting for it)."""
    deadline = time.monotonic() + within
    while True:
        new = {p for p in running() if (p.pid, p.started) not in {(b.pid, b.started) for b in before}}
        if not new or time.monotonic() >= deadline:
            return new
        time.sleep(0.1)


def end(procs: Iterable[Proc]) -> None:
    """SIGKILL each, by pid, if it is still the same process; the suite must not leave it running."""
    for p in procs:
        state = _stat(str(p.pid))
        if state is not None and state[3] == p.started:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# Processes a module- or session-scoped fixture started: they may outlive a test, not their fixture.
OWNED: set[Proc] = set()


def restarting_for_fixture(restart: Callable[[], T]) -> T:
    """Run `restart`, which starts again a process a longer-lived fixture owns (a cluster node a test
    killed): the new process is the fixture's too, stopped by its teardown, not a leak of the test."""
    before = running()
    result = restart()
    OWNED.update(running() - before)
    return result


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    """Processes a longer-lived fixture starts are its own until its teardown, not the test's that first
    asked for it (also when a test asks for it itself, with request.getfixturevalue)."""
    if fixturedef.scope == "function":
        yield
        return
    before = running()
    yield
    owned = running() - before
    OWNED.update(owned)
    fixturedef.addfinalizer(lambda: OWNED.difference_update(owned))
