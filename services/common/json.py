"""The project's one JSON module: orjson underneath, bytes out, bytes or str in."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

__all__ = ["JSONDecodeError", "dumps", "loads"]

JSONDecodeError = orjson.JSONDecodeError

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def dumps(value: Any, *, indent: bool = False, sort_keys: bool = False) -> bytes:
    if not (indent or sort_keys) and isinstance(value, BaseModel):
        # An event, as it goes on a topic: pydantic writes the same bytes as model_dump + orjson, in one
        # step (a quarter faster on a KeywordHit).
        return value.__pydantic_serializer__.to_json(value)
    option = _OPTIONS
    if indent:
        option |= orjson.OPT_INDENT_2
    if sort_keys:
        option |= orjson.OPT_SORT_KEYS
    return orjson.dumps(value, option=option, default=_default)


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
