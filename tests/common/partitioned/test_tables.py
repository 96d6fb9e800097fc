"""Tables: every change goes through set or delete and reaches the changelog once per batch; rows of an older
version are read; a row nobody can read fails loudly, naming the row."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common import json
from services.common.exceptions import StateRowError
from services.common.partitioned import CompactTable, StructCodec, Table


class Point(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="2"):
    x: int
    y: int


def _point_v1(row: dict[str, int]) -> Point:
    return Point(row["x"], row["y"])


POINTS = StructCodec(Point, _point_v1)


@pytest.mark.parametrize("kind", [Table, CompactTable])
def test_each_changed_key_is_reported_once_with_its_last_row(kind: type[Table[Point]]) -> None:
    table = kind(POINTS)
    table.restore({"kept": POINTS.encode(Point(0, 0)), "gone": POINTS.encode(Point(9, 9))})
    assert table.take_changes() == []  # restored rows are not changes
    table.set("a", Point(1, 1))
    table.set("a", Point(2, 2))
    table.delete("gone")
    table.delete("never there")
    assert sorted(table.take_changes(), key=str) == [("a", b'["2",2,2]'), ("gone", None)]
    assert table.take_changes() == []
    assert dict(table.items()) == {"kept": Point(0, 0), "a": Point(2, 2)}
    assert table.keys() == ["kept", "a"]
    assert list(table.values()) == [Point(0, 0), Point(2, 2)]  # in the order of keys()
    assert table.get("gone") is None
    assert table["a"] == Point(2, 2)
    assert "kept" in table
    assert len(table) == 2


_OPS = st.lists(
    # (key, None to delete it, or n to set it to Point(n, n))
    st.tuples(st.sampled_from("abcd"), st.none() | st.integers(0, 3)),
    max_size=30,
)


@pytest.mark.parametrize("kind", [Table, CompactTable])
@given(batches=st.lists(_OPS, max_size=5))
def test_a_restore_from_the_changelog_gives_exactly_the_live_rows(
    kind: type[Table[Point]], batches: list[list[tuple[str, int | None]]]
) -> None:
    live = kind(POINTS)
    changelog: dict[str, bytes] = {}  # what compaction leaves: the latest record per key, tombstones applied
    for ops in batches:
        for key, n in ops:
            if n is None:
                live.delete(key)
            else:
                live.set(key, Point(n, n))
        for key, data in live.take_changes():
            if data is None:
                changelog.pop(key, None)
            else:
                changelog[key] = data
    restored = kind(POINTS)
    restored.restore(changelog)
    assert dict(restored.items()) == dict(live.items())


def test_a_table_has_no_way_to_change_a_row_but_set_and_delete() -> None:
    table = Table(POINTS)
    table.set("a", Point(1, 1))
    for name in ("pop", "popitem", "setdefault", "update", "clear", "__setitem__", "__delitem__"):
        assert not hasattr(table, name), name
    with pytest.raises(AttributeError):
        table["a"].x = 5  # type: ignore[misc]  # rows are frozen: a changed row is a new one, set again


def test_a_table_without_changelog_notes_nothing() -> None:
    table = Table(POINTS, changelog=False)
    table.set("a", Point(1, 1))
    table.delete("a")
    assert table.take_changes() == []


def test_a_compact_table_keeps_rows_packed_and_writes_them_as_json() -> None:
    table = CompactTable(POINTS)
    table.restore({"old": json.dumps({"x": 3, "y": 4}), "new": b'["2",5,6]'})  # an older row converted once
    assert table["old"] == Point(3, 4)
    assert table._rows == {"old": b"\x93\xa12\x03\x04", "new": b"\x93\xa12\x05\x06"}  # MessagePack ["2",x,y]
    table.set("old", Point(7, 8))
    assert table.take_changes() == [("old", b'["2",7,8]')]


@pytest.mark.parametrize("data", [b'["3",1,2]', b'["2","1",2]', b"{}", b"not json", b'{"x": 1}'])
def test_a_row_nobody_can_read_names_itself(data: bytes) -> None:
    with pytest.raises(StateRowError, match="not a Point row"):
        POINTS.decode(data)
    with pytest.raises(StateRowError, match="row 'k': not a Point row"):
        Table(POINTS).restore({"k": data})
