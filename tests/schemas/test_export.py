from __future__ import annotations

from pathlib import Path

import pytest

from schemas import EVENT_MODELS
from schemas.events import KeywordHit, Post, TierChange
from schemas.export import render

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "json"


def test_committed_json_schemas_match_the_models():
    rendered = render()
    committed = {p.name: p.read_bytes() for p in COMMITTED.glob("*.json")}
    assert set(committed) == set(rendered), "run `yuqing schemas export` and commit schemas/json/"
    for name, content in rendered.items():
        assert committed[name] == content, f"{name} drifted from the model: run `yuqing schemas export`"


@pytest.mark.parametrize("model", EVENT_MODELS)
def test_every_event_has_version_id_and_time(model):
    fields = model.model_fields
    assert {"schema_version", "event_id", "event_time"} <= set(fields)


def test_ids_are_deterministic_and_content_derived():
    base = {
        "platform": "weibo",
        "post_id": "1",
        "text": "投诉",
        "published_at": "2026-11-21T10:00:00+08:00",
        "event_time": "2026-11-21T10:05:00+08:00",
    }
    a, b = Post.model_validate(base), Post.model_validate(base)
    assert a.event_id == b.event_id
    assert len(a.event_id) == 64
    c = Post.model_validate({**base, "event_time": "2026-11-21T10:06:00+08:00"})
    assert c.event_id != a.event_id


def test_naive_event_time_is_rejected():
    with pytest.raises(ValueError, match="time zone"):
        TierChange.model_validate(
            {
                "group": "g",
                "previous": 0,
                "tier": 3,
                "direction": "up",
                "reason": "threshold",
                "window_end": "2026-11-21T10:00:00",
                "counts": {},
                "detected_at": "2026-11-21T10:00:00+00:00",
                "event_time": "2026-11-21T10:00:00Z",
            }
        )


def test_keyword_hit_schema_has_delta_and_cumulative():
    props = KeywordHit.model_json_schema()["properties"]
    assert {"delta", "cumulative", "first_seen", "snapshot_id"} <= set(props)


def test_contracts_doc_is_in_sync_with_the_code():
    from schemas.docs import render_contracts

    doc = COMMITTED.parents[1] / "docs" / "contracts.md"
    assert doc.read_text(encoding="utf-8") == render_contracts(), "run `yuqing schemas docs` and commit it"


def test_asyncapi_document_is_in_sync_and_complete():
    import yaml

    from schemas.asyncapi import render_asyncapi

    path = COMMITTED.parents[1] / "docs" / "asyncapi.yaml"
    text = path.read_text(encoding="utf-8")
    assert text == render_asyncapi(), "run `yuqing schemas asyncapi` and commit docs/asyncapi.yaml"
    doc = yaml.safe_load(text)
    assert doc["asyncapi"] == "3.0.0"
    described = {m["payload"]["$ref"].rsplit("/", 1)[1] for m in doc["components"]["messages"].values()}
    assert {m.__name__ for m in EVENT_MODELS} <= described
    refs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    for ref in refs:
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert target, ref
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"yuqing.posts.raw", "yuqing.tier-changes", "yuqing.dead-letter", "yuqing.alerts"} <= addresses
    assert not any(a.endswith(".ticks") for a in addresses)


_ID = r"^[a-zA-Z0-9.\-_]+$"
_REF = {"type": "object", "required": ["$ref"], "properties": {"$ref": {"type": "string", "pattern": "^#/"}}}
# The parts of the AsyncAPI 3.0.0 specification the document uses: required fields, enums, key patterns
# and the Kafka bindings 0.5.0 (message key is a schema; channel topic a string).
ASYNCAPI_3 = {
    "type": "object",
    "required": ["asyncapi", "info"],
    "properties": {
        "asyncapi": {"const": "3.0.0"},
        "info": {
            "type": "object",
            "required": ["title", "version"],
            "properties": {"title": {"type": "string"}, "version": {"type": "string"}},
        },
        "defaultContentType": {"type": "string"},
        "channels": {
            "type": "object",
            "propertyNames": {"pattern": _ID},
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "address": {"type": ["string", "null"]},
                    "messages": {
                        "type": "object",
                        "propertyNames": {"pattern": _ID},
                        "additionalProperties": _REF,
                    },
                    "bindings": {
                        "type": "object",
                        "properties": {
                            "kafka": {
                                "type": "object",
                                "required": ["topic"],
                                "additionalProperties": False,
                                "properties": {
                                    "topic": {"type": "string"},
                                    "partitions": {"type": "integer", "minimum": 1},
                                    "bindingVersion": {"const": "0.5.0"},
                                },
                            }
                        },
                    },
                },
            },
        },
        "operations": {
            "type": "object",
            "propertyNames": {"pattern": _ID},
            "additionalProperties": {
                "type": "object",
                "required": ["action", "channel"],
                "properties": {
                    "action": {"enum": ["send", "receive"]},
                    "channel": _REF,
                    "messages": {"type": "array", "items": _REF},
                },
            },
        },
        "components": {
            "type": "object",
            "properties": {
                "schemas": {"type": "object", "propertyNames": {"pattern": _ID}},
                "messages": {
                    "type": "object",
                    "propertyNames": {"pattern": _ID},
                    "additionalProperties": {
                        "type": "object",
                        "required": ["payload"],
                        "not": {"required": ["headers"]},  # headers must be a schema of real headers
                        "properties": {
                            "payload": _REF,
                            "contentType": {"type": "string"},
                            "bindings": {
                                "type": "object",
                                "required": ["kafka"],
                                "properties": {
                                    "kafka": {
                                        "type": "object",
                                        "required": ["key", "bindingVersion"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "key": {"type": "object", "required": ["type"]},
                                            "schemaIdLocation": {"enum": ["header", "payload"]},
                                            "bindingVersion": {"const": "0.5.0"},
                                        },
                                    }
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_asyncapi_document_follows_the_specification():
    import jsonschema
    import yaml

    from schemas.asyncapi import render_asyncapi
    from schemas.topics import TOPIC_DOCS

    doc = yaml.safe_load(render_asyncapi())
    jsonschema.validate(doc, ASYNCAPI_3)
    # An operation's messages must be among its channel's messages.
    for name, op in doc["operations"].items():
        channel = op["channel"]["$ref"]
        assert all(m["$ref"].startswith(f"{channel}/messages/") for m in op["messages"]), name
    # Each channel's message states the topic's key as a Kafka key binding.
    keys = {f"yuqing.{suffix}": key for suffix, key, _ in TOPIC_DOCS.values()}
    for channel in doc["channels"].values():
        (ref,) = channel["messages"].values()
        message = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
        assert message["bindings"]["kafka"]["key"]["description"].startswith(keys[channel["address"]])
    # The dead-letter topic carries the model the services produce, not a hand-written copy.
    dead = doc["channels"]["dead-letter"]["messages"]["DeadLetterRecord"]["$ref"]
    payload = doc["components"]["messages"][dead.rsplit("/", 1)[1]]["payload"]["$ref"]
    assert doc["components"]["schemas"][payload.rsplit("/", 1)[1]]["title"] == "DeadLetterRecord"
    broken = yaml.safe_load(render_asyncapi())
    del broken["operations"]["consume-alerts"]["action"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ASYNCAPI_3)


def test_alerts_are_documented_as_produced_by_escalation_and_the_notifiers_briefings():
    import yaml

    from schemas.asyncapi import render_asyncapi

    doc = yaml.safe_load(render_asyncapi())
    description = doc["channels"]["alerts"]["description"]
    assert "escalation (incident alerts) and notifier (the 09:00/14:00/20:00 briefings)" in description
    assert "ingest" not in description
    for channel in ("tier-overrides", "incident-actions"):
        assert "Produced by desk" in doc["channels"][channel]["description"]
