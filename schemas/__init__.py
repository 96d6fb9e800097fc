"""Event contracts shared by every yuqing service and by downstream consumers."""

from schemas.events import (
    SCHEMA_VERSION,
    Alert,
    DeadLetterRecord,
    Delivery,
    IncidentAction,
    IncidentEvent,
    KeywordHit,
    Post,
    SpreadSnapshot,
    TierChange,
    TierForecast,
    TierOverride,
)

__all__ = [
    "EVENT_MODELS",
    "SCHEMA_VERSION",
    "Alert",
    "DeadLetterRecord",
    "Delivery",
    "IncidentAction",
    "IncidentEvent",
    "KeywordHit",
    "Post",
    "SpreadSnapshot",
    "TierChange",
    "TierForecast",
    "TierOverride",
]

EVENT_MODELS = (
    Post,
    KeywordHit,
    TierChange,
    TierOverride,
    TierForecast,
    SpreadSnapshot,
    IncidentEvent,
    IncidentAction,
    Alert,
    Delivery,
    DeadLetterRecord,
)
