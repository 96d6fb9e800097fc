"""Errors and typed outcomes of the notifier service."""

from __future__ import annotations

from services.common.exceptions import DeadLetter, YuqingError

__all__ = ["DeliveryFailed", "NotifierError"]


class NotifierError(YuqingError):
    """The notifier was asked to do something its config cannot do; the message names what and why."""


class DeliveryFailed(DeadLetter):
    """Every channel an alert was routed to failed after its retries: dead-letter it (delivery_failed) so
    that an operator can re-publish it once the channel is fixed."""

    def __init__(self, dedup_key: str, failed: object) -> None:
        super().__init__("delivery_failed", f"alert {dedup_key} was not delivered: {failed}")
