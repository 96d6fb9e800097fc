"""Topic names: one configurable prefix, fixed suffixes."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["TOPIC_DOCS", "Topics"]

TOPIC_DOCS: dict[str, tuple[str, str, str]] = {
    # attribute: (suffix, key, value)
    "posts_raw": ("posts.raw", "platform:root_post_id (the thread; post_id when not a repost)", "Post"),
    "keyword_hits": ("keyword-hits", "rule group", "KeywordHit"),
    "tier_changes": ("tier-changes", "rule group", "TierChange"),
    "tier_overrides": ("tier-overrides", "rule group", "TierOverride"),
    "tier_forecasts": ("tier-forecasts", "rule group", "TierForecast"),
    "spread_snapshots": ("spread-snapshots", "rule group", "SpreadSnapshot"),
    "incidents": ("incidents", "rule group", "IncidentEvent"),
    "incident_actions": ("incident-actions", "rule group", "IncidentAction"),
    "alerts": ("alerts", "rule group (`*` for briefings)", "Alert"),
    "deliveries": ("deliveries", "dedup key", "Delivery"),
    "dead_letter": ("dead-letter", "source topic", "DeadLetterRecord"),
    "scoring_threads": ("scoring.threads", "platform:root_post_id", "Post (internal repartition)"),
    "escalation_ticks": ("escalation.ticks", "-", "clock tick (internal)"),
    "notifier_ticks": ("notifier.ticks", "-", "clock tick (internal)"),
}


@dataclass(frozen=True)
class Topics:
    posts_raw: str
    keyword_hits: str
    tier_changes: str
    tier_overrides: str
    tier_forecasts: str
    spread_snapshots: str
    incidents: str
    incident_actions: str
    alerts: str
    deliveries: str
    dead_letter: str
    scoring_threads: str
    escalation_ticks: str
    notifier_ticks: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(**{name: prefix + suffix for name, (suffix, _, _) in TOPIC_DOCS.items()})

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]
