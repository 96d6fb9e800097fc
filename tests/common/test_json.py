"""The JSON module's strict reader: a repeated key is refused and named, the rest reads as orjson does."""

from __future__ import annotations

import pytest

from services.common import json


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"likes":5,"likes":500000}', "likes"),
        (b'{"engagement": {"likes": 5, "likes" : 6}}', "likes"),  # nested, blanks before the colon
        (b'[{"a":1},{"b":{"c":1,"c":2}}]', "c"),  # inside an array
        (b'{\n  "post_id": "1",\n  "post_id": "2"\n}', "post_id"),  # pretty-printed
        # \u0022 is a quote orjson writes back as \": it must not hide the repeat.
        (b'{"a":1,"a":2,"x":"\\u0022:"}', "a"),
    ],
)
def test_a_repeated_key_is_refused_and_named(body, key):
    with pytest.raises(json.JSONDecodeError) as caught:
        json.loads_unique(body)
    assert str(caught.value) == f"duplicate key {key!r} in one object; send each key once"


@pytest.mark.parametrize(
    "body",
    [
        b'{"text":"he said \\"x\\": y","b":1}',  # a quote and colon inside a string
        b'{"text":"\\u0022:\\u0022","a":{"a":{"a":1}}}',  # the same key at different depths
        b'[{"a":1},{"a":1}]',  # the same key in different objects
        b'{"a" : 1 , "b" :\n 2}',
        b"{}",
        b"[]",
        b'"x"',
    ],
)
def test_bodies_without_a_repeated_key_read_as_orjson_reads_them(body):
    assert json.loads_unique(body) == json.loads(body)


def test_invalid_json_is_still_a_decode_error():
    with pytest.raises(json.JSONDecodeError):
        json.loads_unique(b'{"a":')
