"""Every event yuqing puts on Kafka, as immutable pydantic models with deterministic ids.

An event id is a hash of the fields that make the event what it is, so a replay after a crash
produces the same ids and consumers can deduplicate on them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    PrivateAttr,
    Strict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_serializer,
    model_validator,
)
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
    "FollowUpItem",
    "FollowUpOutcome",
    "FollowUpRequest",
    "HitSpan",
    "IncidentAction",
    "IncidentActionKind",
    "IncidentEvent",
    "IncidentEventKind",
    "IncidentState",
    "KeywordHit",
    "Platform",
    "Post",
    "SpreadPost",
    "SpreadSnapshot",
    "StatementStatus",
    "StatementVersion",
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
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+08:00 has no UTC datetime; pydantic reports ValueErrors only
        raise ValueError("lies outside the years 1 to 9999 in UTC") from None


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]
# Strict: a count sent as "5", 5.0 or true is a sender's bug to be told about, not a number to guess at.
# Native payloads print counts as strings ("1.2万"); the adapters parse those before they get here.
Count = Annotated[int, Strict(), Field(ge=0, le=10**12)]


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


SPREAD_COUNTS: tuple[str, ...] = ("reposts", "comments", "likes")


def _nullable_counts(schema: dict[str, Any]) -> None:
    """The published schema says what the wire carries: an integer, or null for a count not reported."""
    for name in SPREAD_COUNTS:
        prop = schema.get("properties", {}).get(name)
        if isinstance(prop, dict) and "anyOf" not in prop:
            bounds = {k: prop.pop(k) for k in ("type", "minimum", "maximum") if k in prop}
            prop["anyOf"] = [bounds, {"type": "null"}]


class Engagement(BaseModel):
    """Cumulative counts as the platform reports them at observation time.

    A spread count the platform did not report is `null` on the wire and named in `unknown`; its attribute
    reads 0, the only value that keeps the spread a true lower bound (a delta over the high-water mark
    never counts it).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra=_nullable_counts,
    )

    reposts: Count = Field(default=0, description="null when the platform did not report it.")
    comments: Count = Field(default=0, description="null when the platform did not report it.")
    likes: Count = Field(default=0, description="null when the platform did not report it.")
    extras: dict[str, Count] = Field(
        default_factory=dict,
        description="Platform-specific counts kept as reported (views, coins, favourites, reads …).",
    )

    _unknown: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _read_unknown(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        missing: tuple[str, ...] = ()
        if isinstance(data, dict):
            missing = tuple(name for name in SPREAD_COUNTS if name in data and data[name] is None)
            if missing:
                data = {**data, **dict.fromkeys(missing, 0)}
        model = handler(data)
        if missing:
            model._unknown = frozenset(missing)
        return model

    @field_serializer(*SPREAD_COUNTS)
    def _write_unknown(self, value: int, info: FieldSerializationInfo) -> int | None:
        return None if self._unknown and info.field_name in self._unknown else value

    @property
    def unknown(self) -> frozenset[str]:
        """Names of the spread counts the platform did not report (their attribute reads 0)."""
        return self._unknown

    @property
    def total(self) -> int:
        """Spread (传播量) as the plans define it: reposts + comments + likes (unknown ones count 0)."""
        return self.reposts + self.comments + self.likes


class Post(Event):
    """One snapshot of a post. (platform, post_id, observed_at) makes a snapshot unique."""

    platform: Platform
    post_id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=20_000)
    author: str | None = Field(default=None, max_length=256)
    author_type: AuthorType = AuthorType.user
    url: str | None = Field(default=None, max_length=2048)
    published_at: UtcDatetime | None = Field(
        description="When the platform published the post. Required, but null when the source names no "
        "time (an undated feed entry): it is never filled in with the time the post was seen."
    )
    root_post_id: str | None = Field(
        default=None, max_length=128, description="The original post when this one is a repost or share."
    )
    engagement: Engagement = Field(default_factory=Engagement)
    truncated: bool = Field(
        default=False,
        exclude_if=lambda v: v is False,
        description="The platform sent a cut-off text (a Weibo long text without its full text); "
        "written only when true.",
    )
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


class SpreadPost(BaseModel):
    """A post driving a group's spread (the keyword-hits it came in on are in the ledger, by `post`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    post: str = Field(max_length=300, description="platform:post_id, the ledger's key for the post.")
    platform: Platform
    spread: Count = Field(description="Spread this post added to the group since it was first hit.")
    excerpt: str = Field(default="", max_length=80, description="Post text, hostile: escape it to show it.")
    url: str | None = Field(default=None, max_length=2000)


class SpreadSnapshot(Event):
    """A rule group's live window counts between tier changes: what the tiers count now, a per-minute series
    for a sparkline, and the posts driving it. Published at most every few seconds and only on a change;
    the latest one per group (the topic is compacted) is the state, earlier ones are history."""

    group: str
    event_time: UtcDatetime = Field(description="The scoring clock when the counts were read.")
    tier: Tier = Field(description="The group's tier at event_time.")
    counts: dict[str, Count] = Field(
        description="Spread per tier window, keyed '2h', '4h', '8h': the running sums tiers are decided on."
    )
    series_start: UtcDatetime = Field(description="Start of the first minute of `series`.")
    series: tuple[Count, ...] = Field(
        max_length=24 * 60,
        description="Spread per minute from series_start, oldest first; the last minute may still fill.",
    )
    top_posts: tuple[SpreadPost, ...] = Field(default=(), max_length=20)
    detected_at: UtcDatetime

    _id_fields = ("group", "event_time", "tier", "counts", "series_start", "series")


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
    # The statement (发声回应) is drafted, reviewed by the leadership group (经领导小组审核), then published.
    statement_drafted = "statement_drafted"  # a new version; `text` holds it
    statement_submitted = "statement_submitted"  # the latest draft goes to the approvers
    statement_approved = "statement_approved"  # an approver signs off `version`
    statement_returned = "statement_returned"  # an approver sends `version` back; the comment says why
    statement_published = "statement_published"  # only an approved version
    cooling = "cooling"  # spread stopped after the statement: the closing review (收尾) starts
    resolve = "resolve"
    reopen = "reopen"
    postmortem_filed = "postmortem_filed"
    follow_up = "follow_up"  # 回访: affected users were contacted; the comment says whom and how
    follow_up_added = (
        "follow_up_added"  # an item on the 回访 list: `follow_up` says whom, who owns it, by when
    )
    follow_up_outcome = "follow_up_outcome"  # what came of item `item_id`: `outcome`, the comment as a note
    correction = "correction"  # something passed on (a verification, a statement) was corrected


class StatementStatus(StrEnum):
    draft = "draft"
    submitted = "submitted"  # waiting for the leadership group's review
    approved = "approved"
    returned = "returned"
    published = "published"
    superseded = "superseded"  # a newer version was drafted before this one was published


class StatementVersion(BaseModel):
    """One version of an incident's public statement (发声回应), its text and its review."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(ge=1)
    text: str
    status: StatementStatus
    drafted_by: str
    drafted_at: UtcDatetime
    submitted_by: str | None = None
    submitted_at: UtcDatetime | None = None
    reviewed_by: str | None = Field(default=None, description="The approver who approved or returned it.")
    reviewed_at: UtcDatetime | None = None
    review_comment: str = ""
    published_by: str | None = None
    published_at: UtcDatetime | None = None


class FollowUpOutcome(StrEnum):
    done = "done"
    unreachable = "unreachable"
    declined = "declined"
    not_needed = "not_needed"


class FollowUpRequest(BaseModel):
    """A 回访 item as an operator adds it: whom to follow up, who does it and by when."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    target: str = Field(
        min_length=1, max_length=200, description="The user or post to follow up, for a person."
    )
    post: str | None = Field(
        default=None,
        max_length=300,
        pattern=r"^[a-z]+:\S+$",
        description="The post as `platform:post_id` (an incident's top post), if the item is about one.",
    )
    owner: str = Field(min_length=1, max_length=64, description="Who follows it up.")
    due_at: UtcDatetime


class FollowUpItem(BaseModel):
    """An item of an incident's 回访 list and what came of it (no outcome: still open)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str = Field(description="IncidentAction.new_item_id of the action that added it.")
    target: str
    post: str | None = None
    owner: str
    due_at: UtcDatetime
    added_by: str
    added_at: UtcDatetime
    outcome: FollowUpOutcome | None = None
    outcome_by: str | None = None
    outcome_at: UtcDatetime | None = None
    note: str = ""


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
    statement: tuple[StatementVersion, ...] = Field(
        default=(), description="Every version of the public statement so far, oldest first, with its review."
    )
    follow_ups: tuple[FollowUpItem, ...] = Field(default=(), description="The 回访 list so far.")

    _id_fields = ("incident_id", "sequence")


class IncidentAction(Event):
    """An operator's action on an incident (ack, meeting convened, verified, statement, resolve, …)."""

    incident_id: str
    group: str
    action: IncidentActionKind
    actor: str = Field(min_length=1, max_length=128)
    comment: str = Field(default="", max_length=4000)
    text: str = Field(
        default="", max_length=5000, description="statement_drafted (required, only there): the new version."
    )
    version: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="The statement version acted on: required to approve or return it (the text the approver "
        "read), optional to submit or publish it, refused on other actions.",
    )
    follow_up: FollowUpRequest | None = Field(
        default=None, description="follow_up_added (required, only there): the item."
    )
    item_id: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{12}$", description="follow_up_outcome (required, only there)."
    )
    outcome: FollowUpOutcome | None = Field(
        default=None, description="follow_up_outcome (required, only there)."
    )

    _id_fields = ("incident_id", "action", "actor", "event_time")

    @property
    def new_item_id(self) -> str | None:
        """The id of the 回访 item a follow_up_added adds: 12 hex digits of sha256 over the action's event_id
        and the item, so that two items added at the same instant differ and a replayed action adds none."""
        item = self.follow_up
        if item is None:
            return None
        return event_id("FollowUpItem", self.event_id, item.target, item.post, item.owner, item.due_at)[:12]

    @model_validator(mode="after")
    def _fields_fit_the_action(self) -> Self:
        a = IncidentActionKind
        wanted = {
            "text": {a.statement_drafted},
            "version": {a.statement_approved, a.statement_returned},
            "follow_up": {a.follow_up_added},
            "item_id": {a.follow_up_outcome},
            "outcome": {a.follow_up_outcome},
        }
        optional = {"version": {a.statement_submitted, a.statement_published}}
        for name, needed_by in wanted.items():
            value = getattr(self, name)
            present = value not in (None, "")
            if not present and self.action in needed_by:
                raise _field_error(self, name, f"{self.action.value} needs {name}", value)
            if present and self.action not in needed_by | optional.get(name, set()):
                allowed = ", ".join(sorted(k.value for k in needed_by | optional.get(name, set())))
                raise _field_error(
                    self, name, f"{name} is only for {allowed}, not {self.action.value}", value
                )
        return self


def _field_error(model: BaseModel, field: str, message: str, value: object) -> ValidationError:
    """A ValidationError whose loc names `field`, from a model validator (which would otherwise name none)."""
    error = PydanticCustomError("action_field", message)
    return ValidationError.from_exception_data(
        type(model).__name__, [InitErrorDetails(type=error, loc=(field,), input=str(value)[:80])]
    )


class AlertKind(StrEnum):
    keyword_hits = "keyword_hits"
    tier_change = "tier_change"
    incident_opened = "incident_opened"
    reminder = "reminder"
    sla_breached = "sla_breached"
    escalation = "escalation"
    statement_review = "statement_review"  # a statement version waits for the approvers
    forecast = "forecast"  # a tier's threshold is expected to be crossed soon (TierForecast)
    briefing = "briefing"


class HitSpan(BaseModel):
    """The keyword-hits records a grouped alert covers: every hit of its group at these offsets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partition: int = Field(ge=0)
    first_offset: int = Field(ge=0)
    last_offset: int = Field(ge=0)


class Alert(Event):
    """A message for people. The notifier delivers each dedup_key once per channel; a crash while a request
    is out sends it again, under the same event_id (a webhook's idempotency key, X-Yuqing-Event-Id)."""

    dedup_key: str
    kind: AlertKind
    group: str
    tier: Tier
    title: str
    body: str = Field(description="Markdown.")
    incident_id: str | None = None
    audience: Literal["responder", "group_lead", "leadership", "approvers"] = "responder"
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
    key: str | None = Field(
        default=None, description="The message key as UTF-8 (bad bytes replaced; the first 1,024 characters)."
    )
    reason: str = Field(
        pattern=r"^[a-z_]+$",
        description="invalid_json, invalid_schema, unsupported_schema_version, empty, too_large, wrong_key, "
        "late_event, future_event, invalid_transition, delivery_failed, processing_error, crash_loop (the "
        "metric's reason "
        "label; docs/operations.md says what each means).",
    )
    detail: str = Field(default="", max_length=2000, description="What was wrong, for a person.")
    value_base64: str = Field(
        description="The original message bytes, base64: the first 512 KiB when value_size is larger."
    )
    value_size: int | None = Field(
        default=None,
        ge=0,
        description="Size of the original value in bytes; null for a message without a value (a tombstone) "
        "and in records written before this field existed.",
    )

    _id_fields = ("service", "source_topic", "partition", "offset", "reason")
