"""The crash journal behind the supervisor rule: a worker that dies twice on the same input record
dead-letters it (reason crash_loop) and moves on.

A record that kills the process (out of memory, a crash in a C extension, a handler stuck until the
liveness probe kills the container) is never acknowledged, so every restart reads it again and dies again.
Nothing inside the dying process can help; the next start can, if it knows where the last one was. So,
per input partition, the worker keeps a small file in its data directory (an emptyDir in k8s, which
outlives container restarts; .yuqing-data under `yuqing dev`):

- before handling a fetched run of records (the batch loop) it writes the run's last offset (`to`);
- before handling one record alone (the faust workers, each record; the batch loop, each suspect) it writes
  that record's offset (`at`), and clears it after.

On the next start, with the offset the partition resumes from (the first record it sees):
- `at` set: the process died on that very record. If the record was already under suspicion, that is
  its second death: it goes on the poison list, and the worker dead-letters it instead of handling it.
  Otherwise it becomes the suspect, handled again alone;
- `to` at or past the resume point: the process died somewhere in that run. Each of its records is a
  suspect, handled again one at a time with `at` written, so a second death names its record.

Writes are one pwrite of a few hundred bytes, without fsync: the file must survive the death of the
process, not of the machine (the page cache outlives the process; a node failure takes the emptyDir
with it anyway). The batch loop writes once per partition per fetch, never per record, except while it
re-handles suspects.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from services.common import json

__all__ = ["CrashJournal", "PartitionJournal"]

log = logging.getLogger(__name__)

_NONE = -1
_MAX_POISON = 100  # offsets remembered per partition; more would mean a partition that never commits


class PartitionJournal:
    """One input partition's journal: what the last process left, and what this one is handling."""

    def __init__(self, path: Path, first_offset: int) -> None:
        self.path = path
        state = _read(path)
        at, to = _int(state, "at"), _int(state, "to")
        self.low, self.high = _int(state, "low"), _int(state, "high")
        listed = state.get("poison")
        listed = listed if isinstance(listed, list) else []
        self.poison = {o for o in listed if isinstance(o, int) and o >= first_offset}
        # What the last process left, for the worker's log (None: it stopped cleanly, or never ran).
        self.found: str | None = None
        if at >= first_offset:
            if self.low <= at <= self.high:
                self.poison.add(at)
                self.found = f"died a second time on offset {at}; it will be dead-lettered as crash_loop"
            else:
                self.low = self.high = at
                self.found = f"died handling offset {at}; it is handled again alone"
        elif to >= first_offset:
            self.low, self.high = first_offset, max(to, self.high)
            self.found = f"died handling offsets {first_offset}-{to}; they are handled again one at a time"
        if self.high < first_offset:
            self.low = self.high = _NONE
        self.poison = set(sorted(self.poison)[-_MAX_POISON:])
        self._at = self._to = _NONE
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._written = os.fstat(self._fd).st_size  # what the last process wrote, padded over below
        self._write()

    def suspects(self, first: int) -> bool:
        """Whether any record from offset `first` on needs care: a suspect or a poisoned one."""
        if self.poison and min(self.poison) < first:
            self.poison = {o for o in self.poison if o >= first}
        return bool(self.poison) or first <= self.high

    def poisoned(self, offset: int) -> bool:
        return offset in self.poison

    def suspect(self, offset: int) -> bool:
        return self.low <= offset <= self.high

    def batch(self, last: int) -> None:
        """Records up to `last` are about to be handled as a run."""
        self._to = last
        self._write()

    def begin(self, offset: int) -> None:
        """The record at `offset` is about to be handled alone."""
        self._at = offset
        self._write()

    def end(self) -> None:
        """The record begun last is handled: a death from here on is not its doing."""
        if self._at != _NONE:
            self._at = _NONE
            self._write()

    def close(self) -> None:
        os.close(self._fd)

    def _write(self) -> None:
        data = json.dumps(
            {
                "at": self._at,
                "to": self._to,
                "low": self.low,
                "high": self.high,
                "poison": sorted(self.poison),
            }
        )
        # Padded over what an earlier, longer write left: one pwrite, no truncate.
        if len(data) < self._written:
            data += b" " * (self._written - len(data))
        os.pwrite(self._fd, data, 0)
        self._written = len(data)


class CrashJournal:
    """The journals of one worker's input partitions, as files `<topic>.<partition>` in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._open: dict[tuple[str, int], PartitionJournal] = {}

    def partition(self, topic: str, partition: int, first_offset: int) -> PartitionJournal:
        """The partition's journal; opened at the first record this process sees on it (`first_offset`,
        where it resumes), which is when what the last process left is read."""
        journal = self._open.get((topic, partition))
        if journal is None:
            journal = PartitionJournal(self.directory / f"{topic}.{partition}", first_offset)
            self._open[topic, partition] = journal
            if journal.found is not None:
                log.warning("%s[%d]: the last run %s", topic, partition, journal.found)
        return journal

    def get(self, topic: str, partition: int) -> PartitionJournal | None:
        return self._open.get((topic, partition))

    def forget(self, partitions: set[int]) -> None:
        """Close the journals of revoked partitions: their next owner reads them afresh."""
        for key in [k for k in self._open if k[1] in partitions]:
            self._open.pop(key).close()

    def close(self) -> None:
        self.forget({p for _, p in self._open})


def _read(path: Path) -> dict[str, object]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("crash journal %s unreadable, starting without it: %s", path, exc)
        return {}
    if not raw.strip():
        return {}
    try:
        state = json.loads(raw)
    except json.JSONDecodeError:
        log.warning("crash journal %s is not JSON, starting without it", path)
        return {}
    return state if isinstance(state, dict) else {}


def _int(state: dict[str, object], name: str) -> int:
    value = state.get(name, _NONE)
    return value if isinstance(value, int) and not isinstance(value, bool) else _NONE
