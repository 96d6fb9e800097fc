"""The YAML config file shared by every service: rule groups, tiers, SLAs and notification channels.

Every number defaults to the crisis plans' value; an operator can override any of them.
"""

from __future__ import annotations

import os
import stat
import warnings
from datetime import time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from services.common.exceptions import ConfigError
from services.common.schedule import OnCall, Route

__all__ = [
    "ChannelConfig",
    "EscalationConfig",
    "EscalationPolicy",
    "FeedConfig",
    "IngestConfig",
    "LadderStep",
    "NotifierConfig",
    "RuleGroup",
    "RulesConfig",
    "SlaConfig",
    "TierRule",
    "TiersConfig",
    "YuqingConfig",
    "bundled_config_path",
    "load_config",
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
    grace_minutes: int = Field(default=10, ge=0, description="How late an event may arrive and still count.")

    @field_validator("rules")
    @classmethod
    def _one_rule_per_tier(cls, rules: tuple[TierRule, ...]) -> tuple[TierRule, ...]:
        tiers = sorted(r.tier for r in rules)
        if tiers != [1, 2, 3]:
            raise ValueError(f"need exactly one rule for each of tiers 1, 2, 3; got tiers {tiers}")
        return tuple(sorted(rules, key=lambda r: -r.tier))


class RuleGroup(_Frozen):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\s/|]+$")
    brands: tuple[Term, ...] = Field(min_length=1, description="Company and product names, aliases.")
    negatives: tuple[Term, ...] | None = Field(
        default=None, description="Negative tags; the bundled lexicon when omitted."
    )
    required: tuple[Term, ...] = Field(default=(), description="At least one must also appear.")
    excluded: tuple[Term, ...] = Field(default=(), description="None may appear.")
    proximity: int | None = Field(default=None, gt=0, le=500, description="Brand and tag within N chars.")
    tiers: TiersConfig | None = Field(default=None, description="Per-group override of the tiers section.")


class RulesConfig(_Frozen):
    version: str = Field(default="1", min_length=1, max_length=64)
    groups: tuple[RuleGroup, ...] = Field(min_length=1)

    @field_validator("groups")
    @classmethod
    def _unique_names(cls, groups: tuple[RuleGroup, ...]) -> tuple[RuleGroup, ...]:
        seen: set[str] = set()
        for g in groups:
            if g.name in seen:
                raise ValueError(f"rule group name {g.name!r} is used twice")
            seen.add(g.name)
        return groups


class TierSla(_Frozen):
    ack_minutes: float = Field(gt=0)
    response_minutes: float = Field(gt=0, description="Meeting convened (level 1) / facts verified (2, 3).")
    statement_hours: float = Field(default=24, gt=0)


class SlaConfig(_Frozen):
    level1: TierSla = TierSla(ack_minutes=10, response_minutes=30)
    level2: TierSla = TierSla(ack_minutes=30, response_minutes=60)
    level3: TierSla = TierSla(ack_minutes=30, response_minutes=60)
    reminder_fractions: tuple[float, ...] = (0.5, 0.8)

    def for_tier(self, tier: int) -> TierSla:
        return {1: self.level1, 2: self.level2, 3: self.level3}[tier]


Audience = Literal["responder", "group_lead", "leadership"]


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


class EscalationConfig(_Frozen):
    sla: SlaConfig = SlaConfig()
    # On an SLA breach the next rung is paged at once, whatever the policy's delays.
    ladder: tuple[Audience, ...] = ("responder", "group_lead", "leadership")
    level1: EscalationPolicy = _policy(("responder", 0), ("group_lead", 10), ("leadership", 20))
    level2: EscalationPolicy = _policy(("responder", 0), ("group_lead", 30), ("leadership", 60))
    level3: EscalationPolicy = _policy(("responder", 0), ("group_lead", 30))

    def policy(self, tier: int) -> EscalationPolicy:
        return {1: self.level1, 2: self.level2, 3: self.level3}[tier]


class ChannelConfig(_Frozen):
    name: str = Field(min_length=1, max_length=64)
    type: Literal["webhook", "console", "file"]
    url: str | None = None
    path: Path | None = None
    secret: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _target_present(self) -> ChannelConfig:
        if self.type == "webhook" and not self.url:
            raise ValueError(f"channel {self.name!r}: a webhook needs 'url'")
        if self.type == "file" and not self.path:
            raise ValueError(f"channel {self.name!r}: a file channel needs 'path'")
        return self


class NotifierConfig(_Frozen):
    channels: tuple[ChannelConfig, ...] = (ChannelConfig(name="console", type="console"),)
    routes: tuple[Route, ...] = Field(default=(), description="First match wins; no routes = every channel.")
    oncall: OnCall = OnCall()
    rate_per_minute: float = Field(
        default=20, gt=0, description="Per-channel send rate (robots allow ~20/min)."
    )
    briefing_times: tuple[time, ...] = Field(default=(time(9), time(14), time(20)), description="简报 times.")
    briefing_tz: str = "Asia/Shanghai"
    group_wait_seconds: float = Field(default=10, ge=0, le=600)
    group_interval_seconds: float = Field(default=30, ge=0, le=600)
    max_wait_seconds: float = Field(default=300, gt=0, le=600, description="Hard bound; never above 10 min.")
    max_attempts: int = Field(default=5, ge=1, le=20)

    @model_validator(mode="after")
    def _routes_name_channels(self) -> NotifierConfig:
        names = {c.name for c in self.channels}
        for r in self.routes:
            unknown = [c for c in (*r.channels, *r.fallback) if c not in names]
            if unknown:
                raise ValueError(
                    f"route {r.name!r} names unknown channel(s) {unknown}; channels are {sorted(names)}"
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
    """Read and validate the YAML config; errors name the file and the field."""
    path = path or bundled_config_path()
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror})") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top, got {type(data).__name__}")
    try:
        config = YuqingConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)]
        raise ConfigError(f"config file {path} is invalid:\n  " + "\n  ".join(lines)) from None
    _warn_if_readable_by_others(path, config)
    return config


def _secrets_in(config: YuqingConfig) -> list[str]:
    """Where the config holds a secret: channel signing secrets, and webhook URLs that carry a credential.

    Robot webhooks (DingTalk access_token=, WeCom key=, Feishu /hook/<token>) are bearer credentials in
    the URL itself: whoever reads the URL can post to the group.
    """
    found = []
    for c in config.notifier.channels:
        if c.secret is not None and c.secret.get_secret_value():
            found.append(f"channel {c.name!r} secret")
        if c.url and _url_carries_credential(c.url):
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
