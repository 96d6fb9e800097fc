"""Typed reads from native payloads and the text clean-up every adapter shares.

Every read names its dotted path, so a failure is an AdapterError that says which field was wrong.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from schemas.events import Post
from services.ingest.adapters.exceptions import AdapterError
from services.ingest.timeparse import SHANGHAI, TimeBounds, parse_time

__all__ = [
    "TEXT_MAX",
    "Payload",
    "Reading",
    "aweme_id_time",
    "checked_url",
    "clean_text",
    "count",
    "extras",
    "first",
    "followed_widely",
    "get",
    "hashed_id",
    "ident",
    "inside",
    "join_title",
    "note_id_time",
    "optional_count",
    "parse_count",
    "published",
    "require_text",
    "short_text",
    "spread",
    "string",
    "truthy",
    "url",
    "weibo_mid_time",
    "when",
    "within",
]

Payload = Mapping[str, Any]
T = TypeVar("T")


@dataclass
class Reading:
    """What an adapter needs besides the payload: when it was read (for relative times and the plausible
    range of publish times), and where to note the optional fields it dropped."""

    now: datetime
    bounds: TimeBounds = field(default_factory=TimeBounds)
    warnings: list[str] = field(default_factory=list)


def _max_length(field: str) -> int:
    for meta in Post.model_fields[field].metadata:
        limit = getattr(meta, "max_length", None)
        if isinstance(limit, int):
            return limit
    raise LookupError(f"Post.{field} has no max_length")


# Read from the model so the caps follow the schema if it changes.
TEXT_MAX = _max_length("text")
_ID_MAX = _max_length("post_id")
_AUTHOR_MAX = _max_length("author")
_URL_MAX = _max_length("url")
_COUNT_MAX = 10**12  # Engagement's Count bound

_UNITS = {"": 1, "k": 1_000, "千": 1_000, "w": 10_000, "万": 10_000, "亿": 100_000_000}
# One optional run of blanks on each side of the unit, never two adjacent ones: "1" + 10⁵ blanks + "x"
# must fail in one pass, not backtrack over every split of the blanks.
_COUNT = re.compile(r"([0-9]+(?:\.[0-9]+)?)(?:\s*(k|千|w|万|亿))?\s*\+?", re.IGNORECASE)
_COUNT_CHARS_MAX = 32  # "1,234,567,890,123" with blanks and a unit fits; longer is not a count

# Markup longer than this is cut before it is parsed: a WeChat article's HTML is rarely above 300 KB, and
# the cap bounds the work an adversarial body can cause.
_RAW_MAX = 1_000_000
# Block-level tags become line breaks; every other tag is removed.
_BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"})
_DROP_CONTENT = frozenset({"script", "style"})
_ALT = re.compile(r"\balt\s*=\s*([\"']?)", re.IGNORECASE)
# An unquoted attribute value ends at a blank (a trailing "/" belongs to "/>", not to the value).
_UNQUOTED = re.compile(r"[^\s\"'=<>`]+")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u3000]+")
# Zero-width spaces and joiners, word joiner, BOM: invisible, and they split a brand name in two for the
# matcher ("小\u200b米").
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def get(payload: Payload, path: str) -> Any:
    """The value at dotted `path`, or None when it (or an object on the way) is missing or null."""
    node: Any = payload
    walked: list[str] = []
    for key in path.split("."):
        if node is None:
            return None
        if not isinstance(node, Mapping):
            raise AdapterError(".".join(walked) or "payload", f"expected an object, got {_kind(node)}")
        node = node.get(key)
        walked.append(key)
    return node


def string(payload: Payload, path: str) -> str | None:
    value = get(payload, path)
    if value is None or isinstance(value, str):
        return value
    raise AdapterError(path, f"expected a string, got {_kind(value)}")


def ident(payload: Payload, *paths: str) -> str | None:
    """The first id present among `paths`, as a string; ints are ids too, floats have lost digits."""
    for path in paths:
        value = get(payload, path)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise AdapterError(path, f"expected a string or integer id, got {_kind(value)}")
        text = str(value).strip()
        if not text:
            continue
        if len(text) > _ID_MAX:
            raise AdapterError(path, f"id is {len(text)} characters; the limit is {_ID_MAX}")
        return text
    return None


def within(envelope: str, exc: AdapterError) -> AdapterError:
    """`exc` with every path it names moved under `envelope` (the key a platform wraps its object in)."""
    field = re.sub(r"(^|(?<= or )|(?<= \+ ))(?=\w)", envelope + ".", exc.field)
    return AdapterError(field, exc.reason)


def inside(envelope: str, reading: Reading, read: Callable[..., T], *args: Any) -> T:
    """`read(*args)` of an object wrapped in `envelope`, its errors and warnings naming their full paths."""
    if not envelope:
        return read(*args)
    before = len(reading.warnings)
    try:
        result = read(*args)
    except AdapterError as exc:
        raise within(envelope, exc) from None
    for i in range(before, len(reading.warnings)):
        field, sep, rest = reading.warnings[i].partition(": ")
        if sep and field != "published_at":
            reading.warnings[i] = f"{within(envelope, AdapterError(field, rest)).field}: {rest}"
    return result


def hashed_id(*parts: str) -> str:
    """A stable post id for sources that only give a URL or a free-form id."""
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:32]


def parse_count(value: object) -> int:
    """A count as platforms print it: 123, "1,234", "1.2万", "3亿", "10w+", "1.5k"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a count, got a boolean {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a count, got {value!r}")
        number = int(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "").replace("，", "")
        if len(text) > _COUNT_CHARS_MAX:
            raise ValueError(f"expected a count like 123 or '1.2万', got {len(value)} characters")
        if not text:
            return 0  # Xiaohongshu prints an empty count for none
        m = _COUNT.fullmatch(text)
        if m is None:
            raise ValueError(f"expected a count like 123, '1.2万', '3亿' or '10w+', got {value!r}")
        # Decimal: 1.15万 is 11500, where float arithmetic gives 11499.
        number = int(Decimal(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
    else:
        raise ValueError(f"expected a count (number or string like '1.2万'), got {_kind(value)}")
    if number < 0:
        raise ValueError(f"a count cannot be negative, got {value!r}")
    if number > _COUNT_MAX:
        raise ValueError(f"count {value!r} is above the limit of {_COUNT_MAX}")
    return number


def optional_count(payload: Payload, path: str) -> int | None:
    value = get(payload, path)
    if value is None:
        return None
    try:
        return parse_count(value)
    except ValueError as exc:
        raise AdapterError(path, str(exc)) from None


def count(payload: Payload, path: str) -> int:
    """A count that a platform leaves out when it is zero."""
    return optional_count(payload, path) or 0


def extras(payload: Payload, reading: Reading, paths: Mapping[str, str]) -> dict[str, int]:
    """Optional platform counts by name. One a platform prints as "--" or -1 is dropped and noted in
    `reading.warnings`: an odd view count must not cost the post, whose spread is in the main counts."""
    found: dict[str, int] = {}
    for name, path in paths.items():
        try:
            value = _first_count(payload, reading, (path,))
        except AdapterError as exc:
            reading.warnings.append(f"{exc.field}: {exc.reason}; dropped")
            continue
        if value is not None:
            found[name] = value
    return found


_LOWER_BOUND = re.compile(r"\+\s*$")
# What crawlers write for a count they did not get: MediaCrawler stores str(None).
_NOT_A_READING = frozenset({"None", "null", "undefined", "NaN"})


def first(payload: Payload, *paths: str) -> tuple[str, Any] | None:
    """The first (path, value) among `paths` whose value is present (not null, not "")."""
    for path in paths:
        value = get(payload, path)
        if value is not None and value != "":
            return path, value
    return None


def truthy(value: object) -> bool:
    """A flag as crawlers store it: true, 1, "true", "1"."""
    return value is True or value == 1 or (isinstance(value, str) and value.strip().lower() in ("true", "1"))


def spread(
    payload: Payload,
    reading: Reading,
    paths: Mapping[str, tuple[str, ...]],
    *,
    extra_paths: tuple[str, ...] = (),
    fixed: Mapping[str, int | None] | None = None,
) -> dict[str, int | None]:
    """reposts, comments and likes, each from the first of its `paths` present; None when none is.

    A count that is not there is unknown, never 0: it stays None (null on the wire) and the receipt gets a
    warning. A payload with none of them, and none of `extra_paths` (views, plays) either, is refused
    naming every field looked for: it is most likely a shape this adapter does not read, and accepting it
    would publish zeros nobody measured. `fixed` gives counts the platform does not have for this kind of
    post (a 知乎 answer cannot be reposted): they are not looked for. "10w+" and "100万+" are lower bounds,
    which a warning says.
    """
    counts: dict[str, int | None] = dict(fixed or {})
    looked: list[str] = []
    for name, candidates in paths.items():
        looked.extend(candidates)
        counts[name] = _first_count(payload, reading, candidates)
    found = [n for n in paths if counts[n] is not None]
    if not found and not any(_present_count(payload, p) for p in extra_paths):
        raise AdapterError(
            " or ".join((*looked, *extra_paths)),
            "none of the counts is present; a post needs at least one (is this a shape the adapter reads?)",
        )
    for name in paths:
        if counts[name] is None:
            reading.warnings.append(
                f"{' or '.join(paths[name])}: missing; engagement.{name} is unknown (null), not 0"
            )
    return counts


def _present_count(payload: Payload, path: str) -> bool:
    value = get(payload, path)
    return value is not None and value != "" and value not in _NOT_A_READING


def _first_count(payload: Payload, reading: Reading, candidates: tuple[str, ...]) -> int | None:
    for path in candidates:
        value = get(payload, path)
        if value is None or (isinstance(value, str) and value.strip() in _NOT_A_READING):
            continue
        try:
            number = parse_count(value)
        except ValueError as exc:
            raise AdapterError(path, str(exc)) from None
        if isinstance(value, str) and _LOWER_BOUND.search(value):
            reading.warnings.append(f"{path}: {value!r} is a lower bound; counted as {number}")
        return number
    return None


# Ids that carry their own creation time, verified against posts whose time is known (docs/platforms.md):
# a Weibo mid's bits above 22 are seconds since 1986-05-02 (515483463 s), an 抖音 aweme_id's bits above 32
# are epoch seconds, a 小红书 note id starts with 8 hex digits of epoch seconds (as a Mongo ObjectId).
def weibo_mid_time(mid: str) -> int | None:
    return (int(mid) >> 22) + 515_483_463 if mid.isdigit() and 15 <= len(mid) <= 17 else None


def aweme_id_time(aweme_id: str) -> int | None:
    return int(aweme_id) >> 32 if aweme_id.isdigit() and len(aweme_id) == 19 else None


def note_id_time(note_id: str) -> int | None:
    return int(note_id[:8], 16) if _HEX24.fullmatch(note_id) else None


_HEX24 = re.compile(r"[0-9a-f]{24}")
# A time with only a day: "06-27", "2019-12-28", "2019/12/28", "12月28日", "20191228".
_DAY_ONLY = re.compile(r"(?:\d{4}[-/.年])?\d{1,2}[-/.月]\d{1,2}日?|\d{8}")


def published(
    payload: Payload,
    reading: Reading,
    paths: tuple[str, ...],
    *,
    id_path: str,
    id_time: Callable[[str], int | None] | None,
    post_id: str,
) -> datetime:
    """The publish time from the first of `paths` present; from the post id when it has only a day or is
    missing and the platform's ids carry their time (`id_time`). A derived time is said in a warning; a
    missing one that cannot be derived is refused naming the fields, never taken as now."""
    found = first(payload, *paths)
    derived = _from_id(post_id, id_time)
    if found is not None:
        path, value = found
        text = str(value).strip() if isinstance(value, str | int) else ""
        day_only = _DAY_ONLY.fullmatch(text) is not None
        rough = _ROUGH.fullmatch(text)
        parsed = when(payload, reading, path)
        if derived is not None and (day_only or rough):
            # The id is exact to the second; "06-27" or "15小时前" is not. Use it when both agree.
            slack = timedelta(days=1) if day_only else _ROUGH_UNITS[rough.group(1)] if rough else timedelta()
            near = (
                derived.astimezone(SHANGHAI).date() == parsed.astimezone(SHANGHAI).date()
                if day_only
                else abs(derived - parsed) <= slack
            )
            if not near:
                raise AdapterError(
                    path,
                    f"{value!r} reads as {parsed.isoformat()}, but the id ({id_path}) says "
                    f"{derived.isoformat()}; not the id of this post?",
                )
            return _checked_derived(derived, reading, id_path, f"{path} {value!r} is not exact")
        if day_only:
            reading.warnings.append(f"{path}: {value!r} gives only the day; read as 00:00 Beijing time")
        return parsed
    if derived is not None:
        return _checked_derived(derived, reading, id_path, f"{' or '.join(paths)} missing")
    suffix = "" if id_time is None else f", and {id_path} does not carry it"
    raise AdapterError(" or ".join(paths), f"missing; the publish time is required{suffix}")


# "15小时前", "3天前": a relative time no finer than its unit.
_ROUGH = re.compile(r"[0-9]{1,4} ?(小时|天)前")
_ROUGH_UNITS = {"小时": timedelta(hours=1), "天": timedelta(days=1)}


def _from_id(post_id: str, id_time: Callable[[str], int | None] | None) -> datetime | None:
    if id_time is None:
        return None
    seconds = id_time(post_id)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _checked_derived(value: datetime, reading: Reading, id_path: str, why: str) -> datetime:
    problem = reading.bounds.problem(value, reading.now)
    if problem is not None:
        raise AdapterError(id_path, f"the time derived from the id reads as {problem}")
    reading.warnings.append(
        f"published_at: derived from {id_path} ({value.astimezone(SHANGHAI).isoformat()}): {why}"
    )
    return value


# The follower count from which an account without a platform verification counts as a KOL (大V). The
# crisis plans name no figure; 10万粉 is what Chinese agencies commonly price as a mid-tier KOL.
KOL_FOLLOWERS = 100_000


def followed_widely(payload: Payload, reading: Reading, *paths: str) -> bool:
    """True when the first follower count present among `paths` reaches KOL_FOLLOWERS."""
    for path in paths:
        try:
            value = optional_count(payload, path)
        except AdapterError as exc:
            reading.warnings.append(f"{exc.field}: {exc.reason}; ignored")
            continue
        if value is not None:
            return value >= KOL_FOLLOWERS
    return False


def when(payload: Payload, reading: Reading, *paths: str) -> datetime:
    """The first time present among `paths`, in UTC, checked against `reading.bounds`."""
    for path in paths:
        value = get(payload, path)
        if value is None or value == "":
            continue
        try:
            parsed = parse_time(value, reading.now)
        except ValueError as exc:
            raise AdapterError(path, str(exc)) from None
        problem = reading.bounds.problem(parsed, reading.now)
        if problem is not None:
            raise AdapterError(path, f"{value!r} reads as {problem}")
        return parsed
    raise AdapterError(" or ".join(paths), "missing; the publish time is required")


def url(payload: Payload, *paths: str) -> str | None:
    for path in paths:
        value = string(payload, path)
        if value and value.strip():
            return checked_url(value.strip())
    return None


def checked_url(value: str) -> str | None:
    # A link longer than the schema allows is dropped rather than cut: a cut link is a wrong link,
    # and the post matters more than its link.
    return value if len(value) <= _URL_MAX else None


def short_text(value: str | None) -> str | None:
    """An author name: NFC, no markup, capped; None when nothing is left."""
    if value is None:
        return None
    text = clean_text(value)[:_AUTHOR_MAX].strip()
    return text or None


def join_title(title: str | None, body: str | None) -> list[str]:
    """Title and body as parts of the text, without the title twice when the body starts with it."""
    title = (title or "").strip()
    body = (body or "").strip()
    if title and body.startswith(title):
        return [body]
    return [p for p in (title, body) if p]


def clean_text(*parts: str | None) -> str:
    """Parts joined by newlines, HTML stripped and unescaped, NFC, blank runs collapsed, capped."""
    joined = "\n".join(p for p in parts if p)[:_RAW_MAX]
    text = unicodedata.normalize("NFC", html.unescape(_strip_markup(joined))).translate(_INVISIBLE)
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    text = "\n".join(line for line in lines if line)
    # Not cut here: adapt refuses an over-long text with its length, where a cut would go unnoticed.
    return text


def _strip_markup(text: str) -> str:
    """Tags removed in one left-to-right pass, in time linear in len(text).

    Regexes like `<img[^>]*?alt=(["']).*?\\1[^>]*>` backtrack polynomially on unclosed markup (4 KB of
    "<img alt='" took 13 s), so tags are found with str.find and the position of the next ">" and of the
    next closing </script> are remembered: no character is scanned more than a fixed number of times.
    """
    out: list[str] = []
    i = 0
    gt = -1  # position of the next ">" at or after the current tag, or len(text) when there is none
    closers: dict[str, int] = {}  # the same for each </script>, </style>
    n = len(text)
    while (lt := text.find("<", i)) != -1:
        out.append(text[i:lt])
        if text.startswith("<!--", lt):
            end = text.find("-->", lt + 4)
            # An unclosed comment hides the rest, as it does in a browser.
            i = n if end == -1 else end + 3
            out.append(" ")
            continue
        name_start = _skip_blanks(text, lt + 1)
        closing = name_start < n and text[name_start] == "/"
        if closing:
            name_start = _skip_blanks(text, name_start + 1)
        name_end = name_start
        while name_end < n and (text[name_end].isalnum() or text[name_end] == "_"):
            name_end += 1
        # A tag starts with an ASCII letter, so "价格<100元" and "a < b" stay text.
        if name_end == name_start or not ("a" <= text[name_start].lower() <= "z"):
            out.append("<")
            i = lt + 1
            continue
        if gt < name_end:
            found = text.find(">", name_end)
            gt = n if found == -1 else found
        if gt == n:  # no ">" anywhere after: not a tag, and neither is any later "<"
            out.append("<")
            i = lt + 1
            continue
        name = text[name_start:name_end].lower()
        if name in _DROP_CONTENT and not closing:
            end = _closer(text, name, gt + 1, closers)
            if end != -1:
                out.append(" ")
                i = end
                continue
        elif name == "img" and not closing:
            out.append(_alt(text[name_end:gt]))
        elif name in _BREAKS:
            out.append("\n")
        i = gt + 1
    out.append(text[i:])
    return "".join(out)


def _skip_blanks(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _closer(text: str, name: str, start: int, cache: dict[str, int]) -> int:
    """The end of the first `</name>` at or after `start`, or -1; remembered so that a thousand unclosed
    <script> tags cost one scan, not a thousand."""
    known = cache.get(name)
    if known is not None and (known == -1 or known >= start):
        return known
    pattern = _CLOSERS[name]
    m = pattern.search(text, start)
    cache[name] = -1 if m is None else m.end()
    return cache[name]


# "<" and "/" and the name are literals, so each attempt fails within one run of blanks: linear.
_CLOSERS = {name: re.compile(rf"<\s*/\s*{name}\s*>", re.IGNORECASE) for name in _DROP_CONTENT}


def _alt(attributes: str) -> str:
    """The alt text of an <img>: platforms draw emoticons as <img alt="[怒]">, and the emotion counts.

    m.weibo.cn writes it unquoted (`<img alt=[doge] src=…>`): then it runs to the next blank or "/>".
    """
    m = _ALT.search(attributes)
    if m is None:
        return ""
    quote = m.group(1)
    if quote:
        end = attributes.find(quote, m.end())
        alt = "" if end == -1 else attributes[m.end() : end]
    else:
        unquoted = _UNQUOTED.match(attributes, m.end())
        alt = unquoted.group(0) if unquoted else ""
        if alt.endswith("/") and unquoted is not None and unquoted.end() == len(attributes):
            alt = alt[:-1]
    # An alt holding "<" is markup that lost its quotes, not an emoticon's name.
    return "" if "<" in alt else alt


def require_text(text: str, *paths: str) -> str:
    if not text:
        raise AdapterError(" + ".join(paths), "no text left after removing markup; a post needs text")
    return text


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
