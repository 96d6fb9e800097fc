"""Weibo-shaped markup in normalised text: #话题# hashtags and @mentions.

A hashtag is a topic the poster files the post under: #小米差评# names the brand and the grievance in one
run, with no space or punctuation between them. An @mention's nick is a name, not the poster's words: the
避雷 of @避雷小分队 is no tag and the 华为 of @华为粉丝小王 no brand, while @小米公司 addresses the company.
Emoticon alt-text ([怒], [doge]) is data: sentiment words in data/emoticons.yaml.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from operator import itemgetter

__all__ = ["hashtags", "inside", "nicks"]

# Weibo topics are at most 32 characters and may not hold '#'; a longer run is two stray '#', not a topic.
# A '#' right after a Latin letter or digit opens none (C# 和 F#).
_HASHTAG = re.compile(r"(?<![a-z0-9+])#([^#]{1,32})#")
# Weibo nicks are letters (any script), digits, '_' and '-'. An e-mail address is no mention (service@jd.com).
_MENTION = re.compile(r"(?<![a-z0-9._%+\-])@([\w\-]+)")
_START = itemgetter(0)


def hashtags(norm: str) -> list[tuple[int, int]]:
    """The spans of the hashtags' contents (without the '#'), in order."""
    if "#" not in norm:
        return []
    return [m.span(1) for m in _HASHTAG.finditer(norm)]


def nicks(norm: str, ends: frozenset[int]) -> list[tuple[int, int]]:
    """The spans of the nicks of @mentions (without the '@'), in order. A nick runs to the first character
    that cannot be in one, or to where whitespace ended it in the original (normalize_marked's ends)."""
    if "@" not in norm:
        return []
    stops = sorted(ends)
    out = []
    for m in _MENTION.finditer(norm):
        start, end = m.span(1)
        i = bisect_right(stops, start)
        if i < len(stops) and stops[i] < end:
            end = stops[i]
        out.append((start, end))
    return out


def inside(start: int, end: int, spans: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The span that holds norm[start:end], if one does; spans ascending and apart, as the two above give
    them. A bisection: a hostile post can hold thousands of spans and candidates."""
    i = bisect_right(spans, start, key=_START) - 1
    if i >= 0 and end <= spans[i][1]:
        return spans[i]
    return None
