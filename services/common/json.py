"""The project's one JSON module: orjson underneath, bytes out, bytes or str in.

State rows are msgspec Structs, which msgspec writes and reads as JSON itself (`dumps_row`, `row_reader`):
it checks every field's type while it parses, in one step, several times faster than orjson plus a check.
"""

from __future__ import annotations

import json as _stdlib
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import orjson
from pydantic import BaseModel

__all__ = [
    "JSONDecodeError",
    "RowError",
    "dumps",
    "dumps_row",
    "loads",
    "loads_unique",
    "row_reader",
]

JSONDecodeError = orjson.JSONDecodeError

# A row that is not JSON, or not of the expected shape and types; the message names the field.
RowError = (msgspec.DecodeError, msgspec.ValidationError)

_Row = TypeVar("_Row")

_ROWS = msgspec.json.Encoder()
dumps_row: Callable[[Any], bytes] = _ROWS.encode


def row_reader(kind: type[_Row]) -> Callable[[bytes], _Row]:
    """A function reading JSON straight into `kind` (a msgspec Struct), raising one of RowError."""
    return msgspec.json.Decoder(kind).decode


_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


# What changelog rows and plain payloads are made of: these skip the model check (isinstance against
# pydantic's metaclass costs more than orjson writing a short row).
_NATIVE = frozenset({dict, list, tuple, str, int, float, bool, type(None)})


def dumps(value: Any, *, indent: bool = False, sort_keys: bool = False) -> bytes:
    if indent or sort_keys:
        option = _OPTIONS
        if indent:
            option |= orjson.OPT_INDENT_2
        if sort_keys:
            option |= orjson.OPT_SORT_KEYS
        return orjson.dumps(value, option=option, default=_default)
    if type(value) not in _NATIVE and isinstance(value, BaseModel):
        # An event, as it goes on a topic: pydantic writes the same bytes as model_dump + orjson, in one
        # step (a quarter faster on a KeywordHit).
        return value.__pydantic_serializer__.to_json(value)
    return orjson.dumps(value, option=_OPTIONS, default=_default)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)


def _default(value: Any) -> Any:
    # pydantic models and sets are the only non-native values we serialise.
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


_BLANKS = b" \t\r\n"


def loads_unique(data: bytes) -> Any:
    """`loads`, refusing an object that repeats a key (orjson and the stdlib keep the last silently,
    so `{"likes": 5, "likes": 500000}` would pass for 500000). JSONDecodeError names the key.

    Cheap in the common case: every key ends in a quote and a colon, so with blanks removed the input's
    `":` are counted against those of orjson's own writing of the parsed value. Strings count alike on both
    sides (a quote in a string is `\\"` in both, their blanks are removed from both), so the input has more
    only when an object repeated a key. A `\\u0022` in the input, which orjson writes back as `\\"`, could
    hide one: then, and on a mismatch, the body is parsed again to find the key.
    """
    value = orjson.loads(data)
    written = data.translate(None, _BLANKS).count(b'":')
    if written <= orjson.dumps(value).translate(None, _BLANKS).count(b'":') and b"\\u0022" not in data:
        return value
    _stdlib.loads(data, object_pairs_hook=_refuse_repeats)  # raises on the repeated key
    return value


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            shown = key if len(key) <= 60 else key[:57] + "..."
            error = JSONDecodeError(f"duplicate key {shown!r} in one object; send each key once", "", 0)
            error.args = (error.msg,)  # no "line 1 column 1": the hook does not know where the key was
            raise error
        seen[key] = value
    return seen
