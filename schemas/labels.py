"""The vocabulary inside the events' fields: what `KeywordHit.demand` and `KeywordHit.sentiment` mean, and how
`TierChange.counts` names its windows. Producers (scoring) and readers (the desk, downstream consumers) share
these, so they live with the contracts rather than in one service.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DEMANDS", "NEUTRAL_BAND", "SENTIMENTS", "Sentiment", "sentiment_label", "window_label"]

# 核心诉求: what the poster asks for; "other" when nothing is asked, or the post is not negative.
DEMANDS = ("refund", "quality", "service", "safety", "privacy", "false_advertising", "other")

# A sentiment score below -NEUTRAL_BAND is negative, above NEUTRAL_BAND positive, else neutral.
NEUTRAL_BAND = 0.1
Sentiment = Literal["negative", "neutral", "positive"]
SENTIMENTS: tuple[Sentiment, ...] = ("negative", "neutral", "positive")


def sentiment_label(score: float) -> Sentiment:
    """情感倾向 of a score in [-1, 1]."""
    return "negative" if score < -NEUTRAL_BAND else "positive" if score > NEUTRAL_BAND else "neutral"


def window_label(minutes: int) -> str:
    """The key of a window in `TierChange.counts`: '2h' for 120 minutes, '90m' for 90."""
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
