"""Notifier: grouping, dedup and delivery of alerts to on-call channels."""

from services.notifier.channels import build_channel, sign
from services.notifier.core import Dispatcher
from services.notifier.grouping import HitGrouper

__all__ = ["Dispatcher", "HitGrouper", "build_channel", "sign"]
