"""State tables of the batch runtime: one partition's rows of one table, and how rows meet their changelog.

A table offers get, set and delete, as Quix Streams' State does, and notes every key that set or delete
changed, as faust's Table does in on_key_set/on_key_del: those are the only ways to change a row, so no change
can miss the changelog. It is not a dict (a dict's pop, setdefault or update would go around the notes), and
its rows are immutable records, so a row cannot be changed in place behind its table's back either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from services.common import json
from services.common.exceptions import StateRowError

__all__ = ["Codec", "CompactTable", "StructCodec", "Table"]

V = TypeVar("V")


class Codec(Protocol[V]):
    """How a table's rows are written to its changelog and read back, rows of earlier versions included.

    `decode` raises StateRowError for bytes it cannot read."""

    def encode(self, row: V, /) -> bytes: ...

    def decode(self, data: bytes, /) -> V: ...


class StructCodec(Generic[V]):
    """Rows of one msgspec Struct type, written as a JSON array whose first item is the row's version (the
    Struct's tag). `legacy` reads a row of an earlier shape from its parsed JSON; a LookupError,
    AttributeError, TypeError or ValueError it raises becomes a StateRowError.

    `pack` and `unpack` are the form a CompactTable keeps a row in while it is in memory: MessagePack, which
    holds the same array in about half the bytes of its JSON."""

    def __init__(self, kind: type[V], legacy: Callable[[Any], V] | None = None) -> None:
        self.kind = kind
        self._read = json.row_reader(kind)
        self._legacy = legacy
        self._buffer = bytearray()
        self._packer = msgspec.msgpack.Encoder()
        self.unpack: Callable[[bytes], V] = msgspec.msgpack.Decoder(kind).decode

    def encode(self, row: V) -> bytes:
        return json.dumps_row(row)

    def pack(self, row: V) -> bytes:
        # Through a buffer, so that the bytes are allocated at their length: msgspec's encode() leaves room
        # to spare, which a CompactTable would keep for every row.
        self._packer.encode_into(row, self._buffer)
        return bytes(self._buffer)

    def decode(self, data: bytes) -> V:
        try:
            return self._read(data)
        except json.RowError as exc:
            error: Exception = exc
        if self._legacy is not None:
            try:
                return self._legacy(json.loads(data))
            except (LookupError, AttributeError, TypeError, ValueError) as exc:  # JSONDecodeError too
                error = exc
        raise StateRowError(f"not a {self.kind.__name__} row ({error}): {bytes(data[:200])!r}")


class Table(Generic[V]):
    """One partition's rows of one table, kept as records; the rows changed since the last `take_changes`
    are encoded then.

    `changelog=False` makes a table that notes nothing: for state that lives only in memory (tests, the
    backtest), where the notes would only grow."""

    __slots__ = ("_changed", "_rows", "codec")

    def __init__(self, codec: Codec[V], *, changelog: bool = True) -> None:
        self.codec = codec
        self._rows: dict[str, Any] = {}
        self._changed: set[str] | None = set() if changelog else None

    def get(self, key: str) -> V | None:
        row: V | None = self._rows.get(key)
        return row

    def __getitem__(self, key: str) -> V:
        """The row, or KeyError: reads only, there is no item assignment."""
        row = self.get(key)
        if row is None:
            raise KeyError(key)
        return row

    def set(self, key: str, row: V) -> None:
        self._rows[key] = row
        if self._changed is not None:
            self._changed.add(key)

    def delete(self, key: str) -> None:
        """Remove the row (a tombstone on the changelog); nothing happens when there is none."""
        if key in self._rows:
            del self._rows[key]
            if self._changed is not None:
                self._changed.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def keys(self) -> list[str]:
        """The keys as they are now: the table may be changed while the list is walked."""
        return list(self._rows)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def items(self) -> Iterator[tuple[str, V]]:
        """Every row; do not change the table before the iteration ends (collect, then set or delete)."""
        return iter(self._rows.items())

    def values(self) -> Iterator[V]:
        """Every row, in the order of `keys` while the table is not changed; the same caveat as `items`."""
        return iter(self._rows.values())

    # -- for the runtime ------------------------------------------------------------------------------

    def restore(self, rows: Mapping[str, bytes]) -> None:
        """Load the rows a changelog holds (latest value per key); restored rows are not changes."""
        decode = self.codec.decode
        for key, data in rows.items():
            try:
                self._rows[key] = decode(data)
            except StateRowError as exc:
                raise StateRowError(f"row {key!r}: {exc}") from None

    def take_changes(self) -> list[tuple[str, bytes | None]]:
        """(key, encoded row or None for a deleted one) for each key changed since the last call."""
        if not self._changed:
            return []
        rows, encode = self._rows, self.codec.encode
        changes = [(key, None if (row := rows.get(key)) is None else encode(row)) for key in self._changed]
        self._changed = set()
        return changes


class CompactTable(Table[V]):
    """A table that keeps each row packed (StructCodec.pack) and unpacks it on every get; a changed row is
    written to the changelog as JSON when the changes are taken.

    For tables with a row per tracked post: a tracked post's packed row is 21 bytes, its JSON 39, the record
    with the numbers it holds about 160; a get costs about 0.2 µs and a changed row 0.3 µs more at the
    checkpoint (docs/benchmarks.md)."""

    __slots__ = ("_pack", "_unpack")

    def __init__(self, codec: StructCodec[V], *, changelog: bool = True) -> None:
        super().__init__(codec, changelog=changelog)
        self._pack, self._unpack = codec.pack, codec.unpack

    def get(self, key: str) -> V | None:
        data = self._rows.get(key)
        return None if data is None else self._unpack(data)

    def set(self, key: str, row: V) -> None:
        self._rows[key] = self._pack(row)
        if self._changed is not None:
            self._changed.add(key)

    def items(self) -> Iterator[tuple[str, V]]:
        unpack = self._unpack
        for key, data in self._rows.items():
            yield key, unpack(data)

    def values(self) -> Iterator[V]:
        return map(self._unpack, self._rows.values())

    def restore(self, rows: Mapping[str, bytes]) -> None:
        decode, pack = self.codec.decode, self._pack
        for key, data in rows.items():
            try:
                self._rows[key] = pack(decode(data))
            except StateRowError as exc:
                raise StateRowError(f"row {key!r}: {exc}") from None

    def take_changes(self) -> list[tuple[str, bytes | None]]:
        if not self._changed:
            return []
        rows, unpack, encode = self._rows, self._unpack, self.codec.encode
        changes = [
            (key, None if (data := rows.get(key)) is None else encode(unpack(data))) for key in self._changed
        ]
        self._changed = set()
        return changes
