"""The corpus of real-shaped payloads (tests/ingest/payloads/real/): every mapped field against the values
read from each payload by hand, the warnings it must give, and the refusals that must name their field."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.events import SPREAD_COUNTS, AuthorType, Platform
from services.common import json
from services.ingest.adapters import AdapterError, adapt

CORPUS = Path(__file__).parent / "payloads" / "real"


def _cases() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path in sorted(CORPUS.glob("*.json")):
        doc = json.loads(path.read_bytes())
        for case in doc["cases"]:
            found.append((doc["platform"], f"{path.stem}: {case['name']}", case))
    return found


CASES = _cases()


def test_the_corpus_spreads_over_every_platform_and_names_its_sources():
    assert len(CASES) >= 60
    per_file = {p.stem: len(json.loads(p.read_bytes())["cases"]) for p in CORPUS.glob("*.json")}
    assert set(per_file) == {p.value for p in Platform} | {"wechat_channels"}
    assert min(per_file.values()) >= 4, per_file
    for _, name, case in CASES:
        source = case["source"]
        assert source.get("repo") or source.get("path") or source.get("index_file_id"), name
        assert source.get("note"), name
    # Refusals are part of the corpus: a shape read wrongly is worse than one refused.
    assert sum("refused" in c for _, _, c in CASES) >= 8


@pytest.mark.parametrize(("platform", "case"), [(p, c) for p, _, c in CASES], ids=[n for _, n, _ in CASES])
def test_real_payload_maps_every_field(platform, case):
    observed = datetime.fromisoformat(case["observed_at"])
    warnings: list[str] = []
    if "refused" in case:
        with pytest.raises(AdapterError) as caught:
            adapt(platform, case["payload"], observed, warnings=warnings)
        assert caught.value.field.startswith(case["refused"]["field"]), caught.value
        assert case["refused"]["reason"] in caught.value.reason, caught.value
        return
    expect = case["expect"]
    post = adapt(platform, case["payload"], observed, warnings=warnings)
    assert post.platform is Platform(platform)
    assert post.event_time == observed
    assert post.post_id == expect["post_id"]
    assert post.root_post_id == expect["root_post_id"]
    assert post.author == expect["author"]
    assert post.author_type is AuthorType(expect["author_type"])
    assert post.url == expect["url"]
    assert post.published_at == datetime.fromisoformat(expect["published_at"])
    assert post.truncated is expect.get("truncated", False)
    text = expect["text"]
    if isinstance(text, str):
        assert post.text == text
    else:
        assert post.text.startswith(text.get("startswith", "")), post.text
        assert post.text.endswith(text.get("endswith", "")), post.text
        for part in text.get("contains", []):
            assert part in post.text
    # Unknown counts are null on the wire and named in `unknown`, never a 0 nobody measured.
    assert json.loads(json.dumps(post.engagement)) == expect["engagement"]
    unknown = {name for name in SPREAD_COUNTS if expect["engagement"][name] is None}
    assert post.engagement.unknown == unknown
    assert len(warnings) == len(expect["warnings"]), warnings
    for needle in expect["warnings"]:
        assert any(needle in w for w in warnings), (needle, warnings)
