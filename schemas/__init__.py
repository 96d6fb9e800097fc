"""Event contracts shared by every yuqing service and by downstream consumers."""

from schemas.events import (
    SCHEMA_VERSION,
    Alert,
    Delivery,
    IncidentAction,
    IncidentEvent,
    KeywordHit,
    Post,
    TierChange,
)

__all__ = [
    "EVENT_MODELS",
    "SCHEMA_VERSION",
    "Alert",
    "Delivery",
    "IncidentAction",
    "IncidentEvent",
    "KeywordHit",
    "Post",
    "TierChange",
]

EVENT_MODELS = (Post, KeywordHit, TierChange, IncidentEvent, IncidentAction, Alert, Delivery)
