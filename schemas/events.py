"""Every event yuqing puts on Kafka, as immutable pydantic models with deterministic ids.

An event id is a hash of the fields that make the event what it is, so a replay after a crash
produces the same ids and consumers can deduplicate on them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "SCHEMA_VERSION",
    "Alert",
    "AlertKind",
    "AuthorType",
    "DeadLetterRecord",
    "Deadline",
    "Delivery",
    "DeliveryOutcome",
    "Engagement",
    "Event",
    "HitSpan",
    "IncidentAction",
    "IncidentActionKind",
    "IncidentEvent",
    "IncidentEventKind",
    "IncidentState",
    "KeywordHit",
    "Platform",
    "Post",
    "TermMatch",
    "Tier",
    "TierChange",
    "TierForecast",
    "TierForecastInputs",
    "event_id",
]

SCHEMA_VERSION: Literal[1] = 1


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone offset (naive times are ambiguous)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]
Count = Annotated[int, Field(ge=0, le=10**12)]


def event_id(*parts: object) -> str:
    """sha256 over the '|'-joined parts, hex: the same content always gives the same id."""
    # A list, and plain strings taken as they are: every event computes its id, every decode checks it.
    raw = "|".join(
        [p if type(p) is str else p.isoformat() if isinstance(p, datetime) else str(p) for p in parts]
    )
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class Event(BaseModel):
    """Common envelope: schema version, deterministic id and event time in UTC."""

    # allow_inf_nan=False: NaN and Infinity are not JSON, and no count, score or latency is ever either.
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(
        default="",
        description="Deterministic sha256 of the identifying fields; computed, refused if sent different.",
    )
    event_time: UtcDatetime = Field(description="When the fact happened, UTC.")

    _id_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _fill_id(self) -> Self:
        # Always derived, never trusted: a sender-chosen id would let two different events share one id
        # and be deduplicated into one (and every id derived from it, like a KeywordHit's, with them).
        expected = event_id(type(self).__name__, *[getattr(self, f) for f in self._id_fields])
        if self.event_id and self.event_id != expected:
            # A ValidationError rather than a ValueError, so that the error's loc names event_id.
            error = PydanticCustomError(
                "event_id_mismatch",
                "event_id does not match the id derived from {fields} ({expected}); leave it out and it is "
                "computed",
                {"fields": ", ".join(self._id_fields) or "the type", "expected": expected},
            )
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [InitErrorDetails(type=error, loc=("event_id",), input=self.event_id[:80])],
            )
        object.__setattr__(self, "event_id", expected)
        return self


class Platform(StrEnum):
    weibo = "weibo"
    wechat = "wechat"  # 微信公众号 / 视频号
    douyin = "douyin"
    xiaohongshu = "xiaohongshu"
    zhihu = "zhihu"
    bilibili = "bilibili"
    news = "news"
    forum = "forum"


class AuthorType(StrEnum):
    user = "user"
    media = "media"
    kol = "kol"


class Engagement(BaseModel):
    """Cumulative counts as the platform reports them at observation time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reposts: Count = 0
    comments: Count = 0
    likes: Count = 0
    extras: dict[str, Count] = Field(
        default_factory=dict,
        description="Platform-specific counts kept as reported (views, coins, favourites, reads …).",
    )

    @property
    def total(self) -> int:
        """Spread (传播量) as the plans define it: reposts + comments + likes."""
        return self.reposts + self.comments + self.likes


class Post(Event):
    """One snapshot of a post. (platform, post_id, observed_at) makes a snapshot unique."""

    platform: Platform
    post_id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=20_000)
    author: str | None = Field(default=None, max_length=256)
    author_type: AuthorType = AuthorType.user
    url: str | None = Field(default=None, max_length=2048)
    published_at: UtcDatetime
    root_post_id: str | None = Field(
        default=None, max_length=128, description="The original post when this one is a repost or share."
    )
    engagement: Engagement = Field(default_factory=Engagement)
    event_time: UtcDatetime = Field(description="observed_at: when these counts were read from the platform.")

    _id_fields = ("platform", "post_id", "event_time")

    @property
    def key(self) -> str:
        """Kafka message key: every snapshot of a post lands on the same partition."""
        return f"{self.platform.value}:{self.post_id}"

    @property
    def thread_key(self) -> str:
        """Key of the thread: a repost is counted with the root post it spreads."""
        return f"{self.platform.value}:{self.root_post_id or self.post_id}"


class TermMatch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    term: str
    kind: Literal["brand", "negative", "required"]
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class KeywordHit(Event):
    """A post snapshot that matched a rule group, with the engagement it adds (a positive delta)."""

    group: str
    platform: Platform
    post_id: str
    thread_key: str
    snapshot_id: str = Field(description="event_id of the Post snapshot that caused the hit.")
    first_seen: bool = Field(description="True for the first snapshot of this post that matched the group.")
    matches: tuple[TermMatch, ...] = ()
    delta: Engagement = Field(description="Engagement added by this snapshot over the previous one.")
    cumulative: Engagement
    excerpt: str = Field(default="", max_length=280)
    url: str | None = None
    sentiment: float = Field(default=0.0, ge=-1.0, le=1.0)
    demand: str = "other"
    rule_version: str = ""
    detected_at: UtcDatetime

    _id_fields = ("group", "snapshot_id")


class Tier(IntEnum):
    """Crisis tiers. Lower number = more severe; none = 0 means no crisis."""

    none = 0
    level3 = 3
    level2 = 2
    level1 = 1

    @property
    def severity(self) -> int:
        """Order for comparisons: none < level3 < level2 < level1."""
        return 0 if self == 0 else 4 - int(self)


class TierChange(Event):
    """The crisis tier of a rule group went up or came down, with the evidence for it."""

    group: str
    previous: Tier
    tier: Tier
    direction: Literal["up", "down"]
    reason: Literal["threshold", "cooldown", "override"]
    window_end: UtcDatetime
    counts: dict[str, int] = Field(description="Spread per window, keyed '2h', '4h', '8h'.")
    top_posts: tuple[dict[str, Any], ...] = ()
    platform_mix: dict[str, int] = Field(default_factory=dict)
    rule_version: str = ""
    operator: str | None = None
    detected_at: UtcDatetime

    _id_fields = ("group", "previous", "tier", "reason", "window_end")


class TierForecastInputs(BaseModel):
    """What a forecast was computed from, so that a reader can check it by hand (docs/forecast.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    threshold: int = Field(gt=0, description="The tier's threshold: spread must be more than this …")
    window_minutes: int = Field(gt=0, le=24 * 60, description="… within this many minutes.")
    current: int = Field(ge=0, description="Spread in that window at event_time.")
    counts: dict[str, int] = Field(description="Spread per window at event_time, keyed '2h', '4h', '8h'.")
    fit_start: UtcDatetime = Field(description="Start of the first minute of the fit window.")
    fit_minutes: int = Field(gt=0, description="Complete minutes fitted, ending at event_time.")
    active_minutes: int = Field(ge=0, description="Minutes of the fit window with any spread.")
    rate: float = Field(ge=0, description="Projected spread per minute now.")
    rate_low: float = Field(ge=0, description="Low edge of that rate at the forecast's confidence.")
    rate_high: float = Field(ge=0, description="High edge of that rate at the forecast's confidence.")
    trend: float = Field(
        le=0,
        description="Projected change of the rate, spread per minute per minute (a rise is not projected).",
    )
    outflow: int = Field(
        ge=0, description="Spread of the minutes that leave the window by expected_at (known, not projected)."
    )


class TierForecast(Event):
    """A group's spread is expected to cross a tier's threshold within the lead time if its trend holds: a
    warning only, as a tier changes when its threshold is crossed (TierChange), never on a forecast."""

    group: str
    tier: Tier = Field(description="The tier whose threshold is expected to be crossed.")
    current_tier: Tier = Field(description="The group's tier when the forecast was made (less severe).")
    event_time: UtcDatetime = Field(description="End of the last complete minute the forecast uses.")
    expected_at: UtcDatetime = Field(description="When the threshold is expected to be crossed.")
    earliest_at: UtcDatetime = Field(description="Early edge of the band.")
    latest_at: UtcDatetime = Field(description="Late edge of the band (within the lead time).")
    confidence: float = Field(
        ge=0,
        le=1,
        description="Estimated chance of the crossing within the lead time (at least the setting).",
    )
    lead_minutes: int = Field(gt=0, description="The configured lead time the crossing falls within.")
    inputs: TierForecastInputs
    method: str = Field(description="Estimator and its version (docs/forecast.md).")
    detected_at: UtcDatetime

    _id_fields = ("group", "tier", "event_time", "expected_at")

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.tier == Tier.none or self.tier.severity <= self.current_tier.severity:
            raise ValueError(
                f"tier {int(self.tier)} must be a tier more severe than current_tier {int(self.current_tier)}"
            )
        if not self.event_time <= self.earliest_at <= self.expected_at <= self.latest_at:
            raise ValueError("expected event_time <= earliest_at <= expected_at <= latest_at")
        return self


class TierOverride(Event):
    """An operator pins a rule group's tier by hand (tier), or releases the pin (tier null)."""

    group: str
    tier: Tier | None
    actor: str = Field(min_length=1, max_length=128)
    comment: str = Field(default="", max_length=4000)

    _id_fields = ("group", "tier", "actor", "event_time")


class IncidentState(StrEnum):
    opened = "opened"
    acknowledged = "acknowledged"
    meeting_convened = "meeting_convened"
    facts_verified = "facts_verified"
    statement_published = "statement_published"
    cooling = "cooling"
    closed = "closed"
    postmortem_filed = "postmortem_filed"


class Deadline(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    due_at: UtcDatetime
    started_at: UtcDatetime | None = Field(default=None, description="When the clock started.")
    met_at: UtcDatetime | None = None
    breached_at: UtcDatetime | None = None
    superseded_at: UtcDatetime | None = Field(
        default=None,
        description="Retired unmet: replaced by another step (tier rise), by a reopen, or by the close.",
    )
    approximate: bool = Field(
        default=False, description="Counted without the Chinese holiday calendar for a year (Mon-Fri)."
    )

    @property
    def status(self) -> Literal["pending", "met", "met_late", "breached", "superseded"]:
        # Met after due is late whether or not a tick recorded the breach first.
        if self.met_at is not None:
            return "met" if self.met_at <= self.due_at else "met_late"
        if self.breached_at is not None:
            return "breached"
        return "superseded" if self.superseded_at is not None else "pending"


class IncidentEventKind(StrEnum):
    opened = "opened"
    tier_changed = "tier_changed"
    transitioned = "transitioned"
    reminder = "reminder"
    sla_breached = "sla_breached"
    escalated = "escalated"
    noted = "noted"  # an action that records a fact without a transition (follow-up, correction)


class IncidentActionKind(StrEnum):
    ack = "ack"
    meeting_convened = "meeting_convened"
    verified = "verified"
    statement_published = "statement_published"
    cooling = "cooling"  # spread stopped after the statement: the closing review (收尾) starts
    resolve = "resolve"
    reopen = "reopen"
    postmortem_filed = "postmortem_filed"
    follow_up = "follow_up"  # 回访: affected users were contacted; the comment says whom and how
    correction = "correction"  # something passed on (a verification, a statement) was corrected


class IncidentEvent(Event):
    """Something happened to an incident: opened, tier change, transition, reminder, breach, escalation."""

    incident_id: str
    group: str
    kind: IncidentEventKind
    state: IncidentState
    tier: Tier
    actor: str = "system"
    detail: str = ""
    deadlines: tuple[Deadline, ...] = ()
    sequence: int = Field(
        ge=0, description="Per-incident counter; with incident_id it orders and identifies."
    )
    action: IncidentActionKind | None = Field(default=None, description="The operator action, if any.")
    report: str | None = Field(
        default=None, description="Markdown post-mortem (复盘报告), on the event that closes the incident."
    )

    _id_fields = ("incident_id", "sequence")


class IncidentAction(Event):
    """An operator's action on an incident (ack, meeting convened, verified, statement, resolve, …)."""

    incident_id: str
    group: str
    action: IncidentActionKind
    actor: str = Field(min_length=1, max_length=128)
    comment: str = Field(default="", max_length=4000)

    _id_fields = ("incident_id", "action", "actor", "event_time")


class AlertKind(StrEnum):
    keyword_hits = "keyword_hits"
    tier_change = "tier_change"
    incident_opened = "incident_opened"
    reminder = "reminder"
    sla_breached = "sla_breached"
    escalation = "escalation"
    briefing = "briefing"


class HitSpan(BaseModel):
    """The keyword-hits records a grouped alert covers: every hit of its group at these offsets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partition: int = Field(ge=0)
    first_offset: int = Field(ge=0)
    last_offset: int = Field(ge=0)


class Alert(Event):
    """A message for people. The notifier sends each dedup_key at most once."""

    dedup_key: str
    kind: AlertKind
    group: str
    tier: Tier
    title: str
    body: str = Field(description="Markdown.")
    incident_id: str | None = None
    audience: Literal["responder", "group_lead", "leadership"] = "responder"
    hit_time: UtcDatetime | None = Field(
        default=None, description="Event time of the earliest keyword hit behind this alert (for latency)."
    )
    hit_ids: tuple[str, ...] = Field(default=(), description="A sample of the hits (the top posts), not all.")
    hit_count: int = Field(default=0, ge=0, description="How many keyword hits this alert covers.")
    hit_span: HitSpan | None = Field(
        default=None, description="Where those hits are on keyword-hits: with hit_count, proof of coverage."
    )
    ack_url: str | None = Field(default=None, description="Signed, expiring one-click acknowledgement link.")

    _id_fields = ("dedup_key",)


class DeliveryOutcome(StrEnum):
    delivered = "delivered"
    failed = "failed"
    retrying = "retrying"
    duplicate = "duplicate"


class Delivery(Event):
    """One attempt to deliver an alert on one channel, and its outcome."""

    alert_id: str
    dedup_key: str
    channel: str
    outcome: DeliveryOutcome
    attempt: int = Field(ge=1)
    error: str = ""
    latency_seconds: float | None = Field(default=None, description="From hit_time to this attempt.")

    _id_fields = ("dedup_key", "channel", "attempt", "outcome")


class DeadLetterRecord(Event):
    """A message a service could not process, with its original bytes, where it came from and why.

    Fix the cause, then re-publish `value_base64` (decoded) to `source_topic` with the same key."""

    service: str = Field(description="The service that gave up on the message.")
    source_topic: str = Field(description="Where the message first arrived (not an internal re-key topic).")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = Field(default=None, description="The message key as UTF-8 (bad bytes replaced).")
    reason: str = Field(
        pattern=r"^[a-z_]+$",
        description="invalid_json, invalid_schema, unsupported_schema_version, empty, late_event, "
        "invalid_transition, delivery_failed, processing_error (the metric's reason label).",
    )
    detail: str = Field(default="", max_length=2000, description="What was wrong, for a person.")
    value_base64: str = Field(description="The original message bytes, base64.")

    _id_fields = ("service", "source_topic", "partition", "offset", "reason")
