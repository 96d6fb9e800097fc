"""Text normalisation before matching: one form for simplified, traditional, full-width and spaced text."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

__all__ = ["normalize"]

# Zero-width and formatting characters that posters (and spam) insert inside words; all whitespace too.
_DROP = re.compile(r"[\s\u200b-\u200f\u2028-\u202f\u2060-\u206f\ufeff\u00ad\u180e]+")


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    """NFKC (full-width to half-width), case folding, traditional to simplified, no spaces or zero-widths.

    Emoji are kept as they are: they separate words, so they keep jieba's boundaries honest.
    """
    text = _DROP.sub("", unicodedata.normalize("NFKC", text).casefold())
    # Folding case and dropping spaces can leave characters that compose ('A´' -> 'a' + combining acute):
    # normalise once more, so that normalising twice changes nothing.
    return str(_t2s().convert(unicodedata.normalize("NFKC", text)))
