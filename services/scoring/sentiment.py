"""Lexicon sentiment with negation, and the poster's core demand (核心诉求), for the ledger."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import yaml

from services.scoring.normalize import normalize

__all__ = ["DEMANDS", "analyse"]

DEMANDS = ("refund", "quality", "service", "safety", "privacy", "false_advertising", "other")
_NEGATORS = ("不", "没", "没有", "别", "未", "无", "非")
_INTENSIFIERS = ("非常", "特别", "无比", "格外")


@lru_cache(maxsize=1)
def _lexicon() -> dict[str, list[str]]:
    raw = (resources.files("services.scoring") / "data" / "lexicon.yaml").read_text(encoding="utf-8")
    data: dict[str, list[str]] = yaml.safe_load(raw)
    return {k: [normalize(w) for w in v] for k, v in data.items()}


def _negated(text: str, at: int) -> bool:
    """A negator in the two characters before the word, within the same clause.

    非常, 特别 and 无比 are intensifiers that merely contain a negator character: they do not negate.
    """
    window = re.split(r"[^\w]", text[max(0, at - 2) : at])[-1]
    if any(window.endswith(i) for i in _INTENSIFIERS):
        return False
    return any(window.endswith(n) or window.startswith(n) for n in _NEGATORS)


def analyse(text: str) -> tuple[float, str]:
    """(sentiment in [-1, 1], demand category). Negative words count -1, positive +1, negation flips."""
    norm = normalize(text)
    lex = _lexicon()
    score = 0
    n = 0
    for sign, key in ((-1, "negative"), (1, "positive")):
        for word in lex[key]:
            start = norm.find(word)
            while start != -1:
                score += -sign if _negated(norm, start) else sign
                n += 1
                start = norm.find(word, start + len(word))
    sentiment = 0.0 if n == 0 else max(-1.0, min(1.0, score / n))
    best, best_count = "other", 0
    for demand in DEMANDS[:-1]:
        count = sum(norm.count(w) for w in lex.get(f"demand_{demand}", []))
        if count > best_count:
            best, best_count = demand, count
    return round(sentiment, 3), best
