"""Text normalisation before matching: one form for simplified, traditional, full-width and spaced text."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

__all__ = ["normalize"]

# Zero-width and formatting characters that posters (and spam) insert inside words; all whitespace too.
_DROP = re.compile(r"[\s\u200b-\u200f\u2028-\u202f\u2060-\u206f\ufeff\u00ad\u180e]+")


def _gap(m: re.Match[str]) -> str:
    """Spaces go, except one between two Latin letters or digits ('iphone 15 pro'), where they end a word."""
    s, i, j = m.string, m.start(), m.end()
    if 0 < i and j < len(s) and _latin(s[i - 1]) and _latin(s[j]) and any(c.isspace() for c in m.group()):
        return " "
    return ""


def _latin(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    """NFKC (full-width to half-width), case folding, traditional to simplified, no zero-widths, and no
    spaces except a single one between Latin letters or digits.

    Emoji are kept as they are: they separate words, so they keep jieba's boundaries honest.
    """
    text = _DROP.sub(_gap, unicodedata.normalize("NFKC", text).casefold())
    # Folding case and dropping spaces can leave characters that compose ('A´' -> 'a' + combining acute):
    # normalise once more, so that normalising twice changes nothing.
    return str(_t2s().convert(unicodedata.normalize("NFKC", text)))
