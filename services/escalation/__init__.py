"""Escalation: incidents, SLA clocks and the escalation ladder."""

from services.escalation.core import EscalationCore, Incident
from services.escalation.exceptions import InvalidTransition

__all__ = ["EscalationCore", "Incident", "InvalidTransition"]
