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
