"""The YAML config file shared by every service: rule groups, tiers, SLAs and notification channels.

Every number defaults to the crisis plans' value; an operator can override any of them.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
import warnings
from collections.abc import Hashable
from datetime import date, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.common.exceptions import ConfigError
from services.common.schedule import OnCall, Route

__all__ = [
    "CalendarConfig",
    "ChannelConfig",
    "EscalationConfig",
    "EscalationPolicy",
    "FeedConfig",
    "ForecastConfig",
    "IngestConfig",
    "LadderStep",
    "NotifierConfig",
    "RuleGroup",
    "RulesConfig",
    "SlaConfig",
    "StatementConfig",
    "TierRule",
    "TiersConfig",
    "YuqingConfig",
    "bundled_config_path",
    "load_config",
    "person_key",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Term = Annotated[str, Field(min_length=1, max_length=64)]


class TierRule(_Frozen):
    tier: Literal[1, 2, 3]
    threshold: int = Field(gt=0, description="Spread must be MORE than this …")
    window_minutes: int = Field(gt=0, le=24 * 60, description="… within this many minutes.")


DEFAULT_TIERS = (
    TierRule(tier=3, threshold=10_000, window_minutes=8 * 60),
    TierRule(tier=2, threshold=50_000, window_minutes=4 * 60),
    TierRule(tier=1, threshold=100_000, window_minutes=2 * 60),
)


class TiersConfig(_Frozen):
    rules: tuple[TierRule, ...] = DEFAULT_TIERS
    downgrade_ratio: float = Field(
        default=0.8, gt=0, le=1, description="A tier comes down once spread is below ratio × threshold …"
    )
    downgrade_hold_minutes: int = Field(default=15, ge=0, description="… for this many minutes.")
    grace_minutes: int = Field(
        default=10,
        ge=0,
        description="How far beyond the longest window a late observation still counts (behind the group's "
        "newest); older ones are dead-lettered as late_event.",
    )

    @field_validator("rules")
    @classmethod
    def _one_rule_per_tier(cls, rules: tuple[TierRule, ...]) -> tuple[TierRule, ...]:
        tiers = sorted(r.tier for r in rules)
        if tiers != [1, 2, 3]:
            raise ValueError(f"need exactly one rule for each of tiers 1, 2, 3; got tiers {tiers}")
        return tuple(sorted(rules, key=lambda r: -r.tier))


class ForecastConfig(_Frozen):
    """Warn before a tier's threshold is crossed if the recent trend holds (docs/forecast.md).

    A forecast never changes a tier: tiers stay exactly the thresholds above.
    """

    enabled: bool = Field(default=True, description="Compute forecasts and emit TierForecast events.")
    lead_minutes: int = Field(
        default=30, ge=1, le=240, description="Warn when the crossing is expected within this many minutes."
    )
    fit_minutes: int = Field(
        default=15, ge=6, le=120, description="The trend is fitted on this many recent complete minutes."
    )
    min_confidence: float = Field(
        default=0.75,
        ge=0.5,
        lt=1,
        description="A warning needs this chance of the crossing within the lead time: the band's late edge "
        "(the crossing at this confidence) must be within it. The band is the central range at this level.",
    )
    min_active_minutes: int = Field(
        default=8, ge=2, description="Minutes with spread the fit window needs before any estimate."
    )
    max_minute_share: float = Field(
        default=0.4,
        gt=0,
        le=1,
        description="No estimate while one minute holds more than this share of the fit window's spread: "
        "a spike is not a trend (it still counts in the window sums and tiers).",
    )
    reemit_minutes: int = Field(
        default=10,
        ge=1,
        le=240,
        description="While a warning stands, a new forecast is emitted only when the expected crossing moves "
        "by more than this.",
    )

    @model_validator(mode="after")
    def _fits(self) -> ForecastConfig:
        if self.min_active_minutes > self.fit_minutes:
            raise ValueError(
                f"min_active_minutes ({self.min_active_minutes}) must not exceed fit_minutes "
                f"({self.fit_minutes})"
            )
        return self


def _check_terms(terms: tuple[str, ...], field: str) -> tuple[str, ...]:
    # Matching works on NFKC text without spaces or symbols: a term with no letter, digit or CJK character
    # (" ", "！！", "——") would match nothing, or everything after normalisation. Refuse it at start-up.
    for t in terms:
        if not _WORDLIKE.search(unicodedata.normalize("NFKC", t)):
            raise ValueError(f"{field} term {t!r} has no letter, digit or CJK character; every term must")
    return terms


_WORDLIKE = re.compile(r"[^\W_]")


class RuleGroup(_Frozen):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\s/|]+$")
    brands: tuple[Term, ...] = Field(min_length=1, description="Company and product names, aliases.")
    negatives: tuple[Term, ...] | None = Field(
        default=None, description="Negative tags added to the bundled lexicon (see default_negatives)."
    )
    default_negatives: bool = Field(
        default=True,
        description="Use the bundled negative lexicon; false leaves only this group's `negatives`.",
    )
    ambiguous: tuple[Term, ...] = Field(
        default=(),
        description="Brand terms that are also everyday words (星河, 小米): they need a brand cue.",
    )
    negative_posts: bool = Field(
        default=True,
        description="Also hit a post about the brand that reads clearly negative without a tag (趴窝).",
    )
    required: tuple[Term, ...] = Field(default=(), description="At least one must also appear.")
    excluded: tuple[Term, ...] = Field(default=(), description="None may appear.")
    proximity: int | None = Field(default=None, gt=0, le=500, description="Brand and tag within N chars.")
    tiers: TiersConfig | None = Field(default=None, description="Per-group override of the tiers section.")

    @field_validator("brands", "negatives", "ambiguous", "required", "excluded")
    @classmethod
    def _wordlike(cls, terms: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        return None if terms is None else _check_terms(terms, str(info.field_name))

    @model_validator(mode="after")
    def _coherent(self) -> RuleGroup:
        if self.negatives is not None and not self.negatives:
            raise ValueError(
                f"group {self.name!r}: negatives is an empty list; omit it to use the bundled lexicon alone, "
                "or list the tags to add to it"
            )
        if not self.default_negatives and not self.negatives:
            raise ValueError(f"group {self.name!r}: default_negatives is false, so negatives must list tags")
        if unknown := [t for t in self.ambiguous if t not in self.brands]:
            raise ValueError(f"group {self.name!r}: ambiguous terms {unknown} are not among its brands")
        return self


# Building the matcher grows with a group's terms: 20,000 in one group took about 7 s and 300 MB at start-up
# on the CI machine kind, 100,000 took 14 s and 1 GB. A thousand covers any brand's names, products and tags.
DEFAULT_MAX_TERMS_PER_GROUP = 1_000
MAX_TERMS_PER_GROUP_LIMIT = 20_000


class RulesConfig(_Frozen):
    version: str = Field(default="1", min_length=1, max_length=64)
    groups: tuple[RuleGroup, ...] = Field(min_length=1)
    max_terms_per_group: int = Field(
        default=DEFAULT_MAX_TERMS_PER_GROUP,
        ge=1,
        le=MAX_TERMS_PER_GROUP_LIMIT,
        description="Most terms one group may list (brands, negatives, required and excluded together): "
        "each costs start-up time and memory in the matcher.",
    )

    @field_validator("groups")
    @classmethod
    def _unique_names(cls, groups: tuple[RuleGroup, ...]) -> tuple[RuleGroup, ...]:
        seen: set[str] = set()
        for g in groups:
            if g.name in seen:
                raise ValueError(f"rule group name {g.name!r} is used twice")
            seen.add(g.name)
        return groups

    @model_validator(mode="after")
    def _bounded_groups(self) -> RulesConfig:
        for g in self.groups:
            counts = {
                "brands": len(g.brands),
                "negatives": len(g.negatives or ()),
                "required": len(g.required),
                "excluded": len(g.excluded),
            }
            total = sum(counts.values())
            if total > self.max_terms_per_group:
                listed = ", ".join(f"{name} {n:,}" for name, n in counts.items() if n)
                cap = self.max_terms_per_group
                raise ValueError(
                    f"group {g.name!r} lists {total:,} terms ({listed}); at most {cap:,} per group "
                    f"(rules.max_terms_per_group, which may be raised to {MAX_TERMS_PER_GROUP_LIMIT:,}): "
                    "split the group, or raise the cap"
                )
        return self


class TierSla(_Frozen):
    ack_minutes: float = Field(gt=0)
    response_minutes: float = Field(gt=0, description="Meeting convened (level 1) / facts verified (2, 3).")
    statement_hours: float = Field(default=24, gt=0)


class SlaConfig(_Frozen):
    level1: TierSla = TierSla(ack_minutes=10, response_minutes=30)
    level2: TierSla = TierSla(ack_minutes=30, response_minutes=60)
    level3: TierSla = TierSla(ack_minutes=30, response_minutes=60)
    reminder_fractions: tuple[float, ...] = (0.5, 0.8)
    closing_review_hours: float = Field(
        default=24, gt=0, description="收尾: review whether spread stopped, this long after opening."
    )
    closing_hours: float = Field(default=72, gt=0, description="收尾: the incident is closed by then.")
    postmortem_working_days: int = Field(default=3, ge=1, le=30, description="复盘 after closing.")
    max_detection_lag_minutes: float = Field(
        default=5,
        ge=0,
        le=60,
        description="A tier change processed later than this after detection (replay, rebuilt table) starts "
        "its SLA clocks this long before processing, so a backlog cannot breach and page on arrival.",
    )

    @model_validator(mode="after")
    def _review_before_close(self) -> SlaConfig:
        if self.closing_review_hours >= self.closing_hours:
            raise ValueError(
                f"closing_review_hours ({self.closing_review_hours}) must be below closing_hours "
                f"({self.closing_hours})"
            )
        return self

    def for_tier(self, tier: int) -> TierSla:
        return {1: self.level1, 2: self.level2, 3: self.level3}[tier]


Audience = Literal["responder", "group_lead", "leadership", "approvers"]


class LadderStep(_Frozen):
    audience: Audience
    after_minutes: float = Field(ge=0, description="Paged this long after opening while nobody acknowledged.")


class EscalationPolicy(_Frozen):
    """PagerDuty-style: page each rung after its delay until acknowledged, then repeat the last one."""

    steps: tuple[LadderStep, ...] = Field(min_length=1)
    repeat_minutes: float = Field(default=10, gt=0)
    repeats: int = Field(default=2, ge=0, le=20)

    @field_validator("steps")
    @classmethod
    def _in_order(cls, steps: tuple[LadderStep, ...]) -> tuple[LadderStep, ...]:
        delays = [s.after_minutes for s in steps]
        if delays != sorted(delays):
            raise ValueError(f"ladder steps must be in order of after_minutes, got {delays}")
        return steps


def _policy(*steps: tuple[Audience, float]) -> EscalationPolicy:
    return EscalationPolicy(steps=tuple(LadderStep(audience=a, after_minutes=m) for a, m in steps))


class CalendarConfig(_Frozen):
    """Overrides of the Chinese holiday calendar, for years the bundled package does not know yet.

    A year counts as known once a holiday in it is listed here (every year has 元旦 and 春节).
    """

    holidays: tuple[date, ...] = Field(default=(), description="Days off, weekdays included (法定假日).")
    extra_workdays: tuple[date, ...] = Field(default=(), description="Make-up workdays on weekends (调休).")

    @model_validator(mode="after")
    def _disjoint(self) -> CalendarConfig:
        both = sorted(set(self.holidays) & set(self.extra_workdays))
        if both:
            raise ValueError(f"days listed both as holidays and as extra_workdays: {both}")
        return self


Person = Annotated[str, Field(min_length=1, max_length=64)]


class StatementConfig(_Frozen):
    """Who signs off a public statement (经领导小组审核) and the bounds of the statement workflow."""

    approvers: tuple[Person, ...] = Field(
        default=(),
        description="The leadership group members who may approve or return a statement, by the name they "
        "log in to the console with (or send as `actor`); compared ignoring case and extra spaces. None: "
        "nobody can approve, so nothing can be published.",
    )
    allow_self_approval: bool = Field(
        default=False, description="Whether an approver may approve a version they drafted themselves."
    )
    max_versions: int = Field(
        default=10,
        ge=1,
        le=10,
        description="Versions per incident (at most 10). Every one is kept, text and all, in the incident's "
        "row and on each of its events, which Kafka caps at 1 MB a message.",
    )
    follow_up_hours: float = Field(
        default=24, gt=0, le=24 * 30, description="The due time the console proposes for a new 回访 item."
    )

    @field_validator("approvers")
    @classmethod
    def _distinct(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        keys = [person_key(n) for n in names]
        if twice := sorted({n for n, k in zip(names, keys, strict=True) if keys.count(k) > 1}):
            raise ValueError(f"approvers listed twice (ignoring case and spaces): {twice}")
        if blank := [n for n, k in zip(names, keys, strict=True) if not k]:
            raise ValueError(f"approver names must not be blank, got {blank}")
        return names

    def is_approver(self, name: str) -> bool:
        return person_key(name) in {person_key(a) for a in self.approvers}


def person_key(name: str) -> str:
    """A name as compared for roles: NFKC, spaces collapsed, case folded ("Li  Na" is "li na")."""
    return " ".join(unicodedata.normalize("NFKC", name).split()).casefold()


class EscalationConfig(_Frozen):
    sla: SlaConfig = SlaConfig()
    calendar: CalendarConfig = CalendarConfig()
    statement: StatementConfig = StatementConfig()
    # Each tier's policy is its ladder: an SLA breach pages the next rung of it at once, whatever its delays.
    level1: EscalationPolicy = _policy(("responder", 0), ("group_lead", 10), ("leadership", 20))
    level2: EscalationPolicy = _policy(("responder", 0), ("group_lead", 30), ("leadership", 60))
    level3: EscalationPolicy = _policy(("responder", 0), ("group_lead", 30))

    def policy(self, tier: int) -> EscalationPolicy:
        return {1: self.level1, 2: self.level2, 3: self.level3}[tier]


ChannelType = Literal["webhook", "console", "file", "wecom", "dingtalk", "feishu", "email"]

# Robots allow about 20 messages a minute (WeCom and DingTalk document 20/min per robot; Feishu 100/min but
# 5/s, so a burst of 20 is its safe size too). None = no limit (local sinks).
_DEFAULT_RATE: dict[str, float | None] = {
    "wecom": 20,
    "dingtalk": 20,
    "feishu": 20,
    "email": 30,
    "webhook": 60,
    "console": None,
    "file": None,
}


class ChannelConfig(_Frozen):
    name: str = Field(min_length=1, max_length=64)
    type: ChannelType
    url: SecretStr | None = Field(
        default=None,
        description="Webhook or robot URL; a robot URL embeds its access token.",
    )
    path: Path | None = None
    secret: SecretStr | None = Field(
        default=None, description="HMAC key: webhook, DingTalk 加签, Feishu 签名校验."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    rate_per_minute: float | None = Field(
        default=None, gt=0, description="Sends per minute on this channel; the type's default when unset."
    )
    # email
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    starttls: bool = Field(
        default=True, description="Upgrade with STARTTLS (port 587); refuse to send in clear."
    )
    username: str | None = None
    password: SecretStr | None = None
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    ca_file: Path | None = Field(
        default=None, description="CA bundle for the SMTP server; system store if unset."
    )

    @model_validator(mode="after")
    def _target_present(self) -> ChannelConfig:
        if self.type in ("webhook", "wecom", "dingtalk", "feishu") and not self.url:
            raise ValueError(f"channel {self.name!r}: a {self.type} channel needs 'url'")
        if self.type == "file" and not self.path:
            raise ValueError(f"channel {self.name!r}: a file channel needs 'path'")
        if self.type == "email":
            missing = [f for f in ("smtp_host", "sender") if not getattr(self, f)]
            if not self.recipients:
                missing.append("recipients")
            if missing:
                raise ValueError(f"channel {self.name!r}: an email channel needs {', '.join(missing)}")
            if self.username and not self.password:
                raise ValueError(f"channel {self.name!r}: 'username' is set, so 'password' is needed too")
        return self

    @property
    def rate(self) -> float | None:
        """Sends per minute: the configured rate, else the type's default (None = unlimited)."""
        return self.rate_per_minute if self.rate_per_minute is not None else _DEFAULT_RATE[self.type]


class NotifierConfig(_Frozen):
    channels: tuple[ChannelConfig, ...] = Field(
        default=(ChannelConfig(name="console", type="console"),), min_length=1
    )
    routes: tuple[Route, ...] = Field(default=(), description="First match wins; no routes = every channel.")
    unrouted_channels: tuple[str, ...] | None = Field(
        default=None,
        description="Where alerts no route matches go (briefings, group '*', too); all channels if unset.",
    )
    oncall: OnCall = OnCall()
    briefing_times: tuple[time, ...] = Field(
        default=(time(9), time(14), time(20)), min_length=1, description="简报 times."
    )
    briefing_tz: str = "Asia/Shanghai"
    group_wait_seconds: float = Field(default=10, ge=0, le=600)
    group_interval_seconds: float = Field(default=30, ge=0, le=600)
    max_wait_seconds: float = Field(default=300, gt=0, le=600, description="Hard bound; never above 10 min.")
    max_attempts: int = Field(default=5, ge=1, le=20)

    @model_validator(mode="after")
    def _routes_name_channels(self) -> NotifierConfig:
        names = {c.name for c in self.channels}
        if len(names) != len(self.channels):
            raise ValueError(f"channel names must be unique, got {[c.name for c in self.channels]}")
        for r in self.routes:
            unknown = [c for c in (*r.channels, *r.fallback) if c not in names]
            if unknown:
                raise ValueError(
                    f"route {r.name!r} names unknown channel(s) {unknown}; channels are {sorted(names)}"
                )
        if self.unrouted_channels is not None:
            unknown = [c for c in self.unrouted_channels if c not in names]
            if unknown or not self.unrouted_channels:
                raise ValueError(
                    f"unrouted_channels must name at least one of the channels {sorted(names)}, got "
                    f"{list(self.unrouted_channels)}"
                )
        return self


class FeedConfig(_Frozen):
    """One RSS/Atom feed to poll; `platform` says whether its entries are news articles or forum threads."""

    url: str = Field(min_length=1)
    platform: Literal["news", "forum"] = "news"
    name: str | None = Field(
        default=None, description="Author for entries that name none (else the feed title)."
    )


class IngestConfig(_Frozen):
    feeds: tuple[FeedConfig, ...] = ()
    feed_poll_seconds: float = Field(default=300, ge=10, le=86_400)


class YuqingConfig(_Frozen):
    rules: RulesConfig
    tiers: TiersConfig = TiersConfig()
    forecast: ForecastConfig = ForecastConfig()
    escalation: EscalationConfig = EscalationConfig()
    notifier: NotifierConfig = NotifierConfig()
    ingest: IngestConfig = IngestConfig()

    def tiers_for(self, group: str) -> TiersConfig:
        for g in self.rules.groups:
            if g.name == group and g.tiers is not None:
                return g.tiers
        return self.tiers

    def window(self) -> timedelta:
        """The longest window any group needs, for bucket retention."""
        configs = [self.tiers, *(g.tiers for g in self.rules.groups if g.tiers)]
        return timedelta(minutes=max(r.window_minutes for c in configs for r in c.rules))


def bundled_config_path() -> Path:
    return Path(str(resources.files("services.common") / "data" / "example.yaml"))


def load_config(path: Path | None = None) -> YuqingConfig:
    """Read and validate the YAML config; errors name the file and the field, line or byte."""
    path = path or bundled_config_path()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start]
        raise ConfigError(
            f"config file {path}: not UTF-8 text (byte 0x{bad:02x} on line {line}); save it as UTF-8"
        ) from None
    data = _parse_yaml(path, text)
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top, got {type(data).__name__}")
    try:
        config = YuqingConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)]
        raise ConfigError(f"config file {path} is invalid:\n  " + "\n  ".join(lines)) from None
    _warn_if_readable_by_others(path, config)
    return config


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, without PyYAML's quote of the line: that line may be a channel secret."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return type(exc).__name__
    parts = []
    for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if text:
            parts.append(f"{text} (line {mark.line + 1}, column {mark.column + 1})" if mark else text)
    return "; ".join(parts) or type(exc).__name__


# The config is a few levels deep; a hundred is generous. Deeper, PyYAML's composer recursed until Python gave
# up with a bare RecursionError.
_MAX_DEPTH = 100


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses what it used to take silently or die on: a key twice in one mapping (YAML
    keeps the last, so an edit further down quietly undid one above), nesting deeper than _MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _YamlRefused(f"nested more than {_MAX_DEPTH} levels deep at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are meant to be overridden
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: construct_mapping says so
            if first is not None:
                raise _YamlRefused(
                    f"key {key!r} appears twice in one mapping (lines {first} and {line}); YAML would keep "
                    "only the last: remove one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _YamlRefused(Exception):
    """Raised inside the loader; load_config turns it into a ConfigError naming the file."""


def _parse_yaml(path: Path, text: str) -> object:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except _YamlRefused as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML: {_yaml_problem(exc)}") from None
    finally:
        loader.dispose()


def _secrets_in(config: YuqingConfig) -> list[str]:
    """Where the config holds a secret: channel signing secrets, and webhook URLs that carry a credential.

    Robot webhooks (DingTalk access_token=, WeCom key=, Feishu /hook/<token>) are bearer credentials in
    the URL itself: whoever reads the URL can post to the group.
    """
    found = []
    for c in config.notifier.channels:
        if c.secret is not None and c.secret.get_secret_value():
            found.append(f"channel {c.name!r} secret")
        if c.url and _url_carries_credential(c.url.get_secret_value()):
            found.append(f"channel {c.name!r} url")
    return found


def _url_carries_credential(url: str) -> bool:
    parts = urlsplit(url)
    if parts.query or parts.username or parts.password:
        return True
    # A long path segment is a token (Feishu /open-apis/bot/v2/hook/<uuid>, Slack /services/T…/B…/…).
    return any(len(segment) >= 20 for segment in parts.path.split("/"))


def _warn_if_readable_by_others(path: Path, config: YuqingConfig) -> None:
    if os.name != "posix":
        return
    secrets = _secrets_in(config)
    if secrets and path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.warn(
            f"config file {path} holds secrets ({', '.join(secrets)}) and is group/world-readable; "
            "chmod 600 it",
            stacklevel=3,
        )
