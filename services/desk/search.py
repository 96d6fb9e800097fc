"""Chinese keyword search over ledger excerpts, the same on SQLite and PostgreSQL (docs/store.md).

Neither back end splits Chinese into words by itself (PostgreSQL's text search and pg_trgm find no word
boundaries in 汉字, SQLite's FTS5 would be SQLite only), so the desk does it once, when an entry is first
stored: the excerpt is normalised as the matcher normalises posts (full-width → half-width, case folded,
traditional → simplified) and cut by jieba's search mode, which also yields the dictionary words inside a
longer word (小米手机 → 小米, 手机, 小米手机). Those words, with the terms the matcher found, go to
`ledger_terms`. A query is normalised and cut the same way, each keyword of it (keywords are separated by
spaces) on its own; an entry matches when it has every word (an index lookup per word) and its normalised
excerpt contains every keyword as typed (a LIKE on the few rows left), so that a hit is always a real
substring. A keyword of one character has no word of two and is only the LIKE, over the rows the other
filters leave.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any

__all__ = ["MAX_TERM_CHARS", "normalise", "query_terms", "terms"]

MAX_TERM_CHARS = 64  # ledger_terms.term
_MAX_TERMS = 200


@cache
def _converter() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


@cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def normalise(text: str) -> str:
    """NFKC (full-width → half-width), case folded, traditional → simplified."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    converted: str = _converter().convert(folded)
    return converted


@lru_cache(maxsize=4096)
def _words(normalised: str) -> tuple[str, ...]:
    """jieba's words of a normalised text, remembered: a post matched by several rule groups is one entry per
    group, all with the same excerpt, and jieba costs about 0.25 ms per excerpt."""
    out = []
    for word in _jieba().cut_for_search(normalised):
        word = word.strip()
        if len(word) >= 2 and any(ch.isalnum() for ch in word):
            out.append(word[:MAX_TERM_CHARS])
    return tuple(out)


def terms(excerpt_norm: str, matched: Iterable[str] = ()) -> set[str]:
    """The words an entry is found by: its normalised excerpt's, and the matcher's terms (normalised)."""
    found = set(_words(excerpt_norm))
    for term in matched:
        term = normalise(term).strip()
        if len(term) >= 2:
            found.add(term[:MAX_TERM_CHARS])
    return set(sorted(found)[:_MAX_TERMS])


def query_terms(query: str) -> list[tuple[str, list[str]]]:
    """Per keyword of the query (separated by spaces): (the normalised keyword for the LIKE, the words every
    matching entry has)."""
    return [(part, sorted(set(_words(part)))) for part in normalise(query).split()]
