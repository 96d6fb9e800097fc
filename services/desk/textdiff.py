"""A diff of two statement versions, by characters: Chinese has no spaces, so a word or line diff would mark a
whole sentence for a one-character change. Plain data out; the templates escape the text.

The common head and tail are cut first (an edit usually touches one place). A middle too large to compare
character by character within the bound is compared line by line, and changed lines that are small enough are
then compared by characters; the rest show as removed and added whole. The bound keeps a page view cheap
whatever two texts an operator saves (difflib is quadratic on repetitive text).
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

__all__ = ["Segment", "diff_text"]

Op = Literal["equal", "delete", "insert"]
_MAX_CELLS = 250_000  # characters of one side times the other compared by SequenceMatcher at once


@dataclass(frozen=True, slots=True)
class Segment:
    op: Op
    text: str


def diff_text(old: str, new: str) -> list[Segment]:
    """Segments that turn `old` into `new`: equal text, deleted text, inserted text, in reading order."""
    head = _common(old, new)
    tail = _common(old[head:][::-1], new[head:][::-1])
    a, b = old[head : len(old) - tail], new[head : len(new) - tail]
    out: list[Segment] = [Segment("equal", old[:head])]
    if len(a) * len(b) <= _MAX_CELLS:
        out += _chars(a, b)
    else:
        out += _lines(a, b)
    out.append(Segment("equal", old[len(old) - tail :]))
    return _merge(out)


def _common(a: str, b: str) -> int:
    """The length of the common head of two texts."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _chars(a: str, b: str) -> list[Segment]:
    if not a or not b:
        return [Segment("delete", a), Segment("insert", b)]
    out: list[Segment] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(Segment("equal", a[i1:i2]))
            continue
        out += [Segment("delete", a[i1:i2]), Segment("insert", b[j1:j2])]
    return out


def _lines(a: str, b: str) -> list[Segment]:
    old, new = a.splitlines(keepends=True), b.splitlines(keepends=True)
    out: list[Segment] = []
    # Lines repeated throughout (blank lines, a refrain) are junk to the matcher: linear on a hostile text.
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, old, new).get_opcodes():
        x, y = "".join(old[i1:i2]), "".join(new[j1:j2])
        if tag == "equal":
            out.append(Segment("equal", x))
        elif len(x) * len(y) <= _MAX_CELLS:
            out += _chars(x, y)
        else:
            out += [Segment("delete", x), Segment("insert", y)]
    return out


def _merge(segments: list[Segment]) -> list[Segment]:
    """Drop empty segments and join neighbours of the same kind; deletions come before insertions."""
    out: list[Segment] = []
    for s in segments:
        if not s.text:
            continue
        if out and out[-1].op == s.op:
            out[-1] = Segment(s.op, out[-1].text + s.text)
        else:
            out.append(s)
    return out
