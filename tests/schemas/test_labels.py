from __future__ import annotations

from schemas.labels import sentiment_label, window_label


def test_window_label() -> None:
    assert window_label(120) == "2h"
    assert window_label(480) == "8h"
    assert window_label(90) == "90m"


def test_sentiment_label_has_a_neutral_band() -> None:
    assert [sentiment_label(s) for s in (-0.11, -0.1, 0.0, 0.1, 0.11)] == [
        "negative",
        "neutral",
        "neutral",
        "neutral",
        "positive",
    ]
