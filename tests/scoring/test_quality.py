"""Quality floors on the hand-labelled posts (tests/data/labelled_posts.jsonl), as bench/quality.py measures.

The labels say what a careful analyst expects, not what the code does. A floor the current code does not reach
is marked xfail(strict=True) with the failing cases: when the code is fixed the test passes, strict xfail
turns that into a failure, and the marker must come off so the floor holds from then on.
"""

from __future__ import annotations

import pytest

from bench.quality import Evaluation, evaluate, is_traditional
from services.scoring.sentiment import DEMANDS

# The floors asked for; measured values are in docs/quality.md (.venv/bin/python bench/quality.py).
HIT_PRECISION_FLOOR = 0.90  # measured 0.771: below the floor, xfail below
HIT_RECALL_FLOOR = 0.90  # measured 0.924; the floor asked for is 0.85
NEGATIVE_RECALL_FLOOR = 0.70  # measured 0.635: below the floor, xfail below

PRECISION_GAP = (
    "BUG/quality gap: keyword-hit micro precision 0.771 < 0.9 (47 false hits). The matcher has no "
    "notion of negation or of which brand a tag is about "
    "(用了三年小米手机，从来没维修过; 还是华为好用，苹果信号真是差评), "
    "counts tags in praise and good news "
    "(小米的售后真的很贴心; 京东宣布上线“一键退款”功能), "
    "and takes ambiguous words for the brand "
    "(这箱苹果一半都烂了…差评; 小米椒炒肉…差评; 鸿蒙紫气; "
    "看PDD直播…翻车; 今晚的星河真美…避雷)"
)
TRADITIONAL_GAP = (
    "BUG/quality gap: trad-013 美團外賣點的餐吃了食物中毒，要求賠償 "
    "is not matched to meituan: the tag 中毒 sits inside the jieba word 食物中毒 "
    "and fails the word-boundary check"
)
NEGATIVE_RECALL_GAP = (
    "BUG/quality gap: sentiment negative-class recall 0.635 < 0.7 (86 of 244 negative posts "
    "score 0.0): the sentiment lexicon lacks most of the matcher's own negative tags "
    "(态度恶劣, 虚假宣传, 隐私泄露, 割韭菜, 拒赔, 智商税, "
    "以次充好, 大数据杀熟, 中毒, 过敏), e.g. "
    "小米的客服态度恶劣，问三遍都是复制粘贴的回复 -> 0.0; "
    "and 是不是假货 / 没有假货？别逗了 read as negations (-> +1.0)"
)


@pytest.fixture(scope="module")
def ev() -> Evaluation:
    return evaluate()


def _pairs(pairs: list) -> str:
    return "\n".join(f"  {o.post.id} [{g}] {o.post.text}" for o, g in pairs)


def test_labelled_set_shape(ev: Evaluation) -> None:
    posts = [o.post for o in ev.outcomes]
    assert len(posts) >= 320
    hits = sum(bool(p.groups) for p in posts)
    assert 0.40 <= hits / len(posts) <= 0.50, "about 45 % true hits, 55 % hard negatives"
    assert sum(is_traditional(p.text) for p in posts) >= 0.07 * len(posts)
    assert {p.sentiment for p in posts} == {"negative", "neutral", "positive"}
    assert {p.demand for p in posts} == set(DEMANDS)
    for g in ev.groups:
        assert ev.hit_prf(g).support >= 10, f"group {g} has too few expected hits"


@pytest.mark.xfail(
    strict=True,
    reason=PRECISION_GAP,
)
def test_keyword_hit_precision(ev: Evaluation) -> None:
    micro = ev.hit_prf()
    assert micro.precision >= HIT_PRECISION_FLOOR, (
        f"precision {micro.precision:.3f}; false hits:\n{_pairs(ev.false_hits())}"
    )


def test_keyword_hit_recall(ev: Evaluation) -> None:
    micro = ev.hit_prf()
    assert micro.recall >= HIT_RECALL_FLOOR, f"recall {micro.recall:.3f}; misses:\n{_pairs(ev.misses())}"


@pytest.mark.xfail(
    strict=True,
    reason=TRADITIONAL_GAP,
)
def test_traditional_posts_all_matched(ev: Evaluation) -> None:
    missed = [(o, g) for o in ev.traditional() for g in sorted(o.post.groups - o.groups)]
    expected, matched = ev.traditional_hits()
    assert expected >= 20
    assert not missed, f"{matched}/{expected} traditional-character hits matched; missed:\n{_pairs(missed)}"


@pytest.mark.xfail(
    strict=True,
    reason=NEGATIVE_RECALL_GAP,
)
def test_sentiment_negative_recall(ev: Evaluation) -> None:
    neg = ev.class_prf("sentiment", "negative")
    missed = [o for o in ev.outcomes if o.post.sentiment == "negative" and o.sentiment != "negative"]
    listing = "\n".join(f"  {o.post.id} {o.score:+.3f} {o.post.text}" for o in missed)
    assert neg.recall >= NEGATIVE_RECALL_FLOOR, f"negative recall {neg.recall:.3f}; missed:\n{listing}"
