"""Scoring worker: posts.raw -> (re-key by thread) -> keyword-hits -> tier-changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from schemas.events import KeywordHit, Post, TierOverride
from services.common.config import load_config
from services.common.exceptions import DeadLetter
from services.common.stream import ORIGIN_HEADER, StreamShell, decode, envelope
from services.scoring.core import HitStage, ScoringState, TierStage, Write, apply_writes
from services.scoring.matcher import RuleMatcher
from services.scoring.settings import ScoringSettings
from services.scoring.windows import LateEvent

__all__ = ["build", "tier_levels"]


def _thread_key(raw: bytes | None) -> bytes:
    """platform:root_post_id (or post_id), as Post.thread_key computes it, without building the model.

    Undecodable input is refused here so that the dead letter names the topic it arrived on; other schema
    errors are caught by the match stage.
    """
    data = envelope(raw)
    if "platform" not in data or "post_id" not in data:
        raise DeadLetter("invalid_schema", "a post needs at least 'platform' and 'post_id'")
    root = data.get("root_post_id") or data["post_id"]
    return f"{str(data['platform']).strip()}:{str(root).strip()}".encode()


def tier_levels(
    groups: Iterable[str], tiers: Mapping[str, Any], owned: set[int] | None, home: Callable[[str], int]
) -> dict[str, int]:
    """The tier of each rule group this worker owns, read from the tiers table (0 when it has no row).

    Read at scrape time rather than kept in a gauge set on change: a gauge started at 0 after a restart
    (showing "none" for a level-1 group), and with several replicas each one kept reporting groups it had
    handed over. A worker without a settled share exports nothing.
    """
    if owned is None:
        return {}
    out: dict[str, int] = {}
    for group in groups:
        if home(group) in owned:
            row = tiers[group] if group in tiers else None
            out[group] = int(row["tier"]) if row else 0
    return out


class _TierCollector:
    def __init__(self, groups: list[str], tiers: Mapping[str, Any], shell: StreamShell) -> None:
        self._groups, self._tiers, self._shell = groups, tiers, shell

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "yuqing_tier_level",
            "Current crisis tier per rule group this worker owns (0 none, 1 major … 3 general).",
            labels=["group"],
        )
        levels = tier_levels(
            self._groups, self._tiers, self._shell.owned_partitions(), self._shell.home_partition
        )
        for group, level in levels.items():
            family.add_metric([group], level)
        yield family


def build(settings: ScoringSettings) -> StreamShell:
    shell = StreamShell("scoring", settings)
    config = load_config(settings.config_file)
    matcher = RuleMatcher(config.rules)
    hits_stage = HitStage(config, matcher)
    tier_stage = TierStage(config, rule_version=matcher.version)
    t = shell.topics
    posts_raw = shell.raw_topic(t.posts_raw)
    threads = shell.raw_topic(t.scoring_threads)
    keyword_hits = shell.raw_topic(t.keyword_hits)
    tier_changes = shell.raw_topic(t.tier_changes)
    state = ScoringState(
        snapshots=shell.table("snapshots"),
        thread_groups=shell.table("thread-groups"),
        seen=shell.table("seen"),
        buckets=shell.table("buckets"),
        windows_meta=shell.table("windows-meta"),
        tiers=shell.table("tiers"),
        top=shell.table("top-posts"),
        counted=shell.table("counted"),
    )
    hits_total = Counter(
        "yuqing_keyword_hits_total",
        "Keyword hits emitted, per platform.",
        ["platform"],
        registry=shell.registry,
    )
    tier_changes_total = Counter(
        "yuqing_tier_changes_total", "Tier changes emitted.", ["direction"], registry=shell.registry
    )
    groups = [g.name for g in config.rules.groups]  # from the operator's config: a fixed, small set
    shell.registry.register(_TierCollector(groups, state.tiers, shell))

    async def emit_changes(changes: list[Any]) -> None:
        for change in changes:
            tier_changes_total.labels(change.direction).inc()
            await shell.send_model(tier_changes, change.group, change)

    async def rekey(event: Any) -> None:
        # Only the thread key is needed here; the match stage validates the whole post (and dead-letters it).
        origin = f"{event.message.topic}|{event.message.partition}|{event.message.offset}".encode()
        await threads.send(key=_thread_key(event.value), value=event.value, headers={ORIGIN_HEADER: origin})

    async def match(event: Any) -> None:
        post = decode(Post, event.value)
        writes: list[Write] = []
        for hit in hits_stage.process(post, state, writes):
            hits_total.labels(hit.platform.value).inc()
            await shell.send_model(keyword_hits, hit.group, hit)
        # State after the hits: a crash in between replays the post and emits the same hits (same ids),
        # which the tier stage counts once; the other order could keep a snapshot whose hit was lost.
        apply_writes(writes)

    async def count(event: Any) -> None:
        if shell.is_tick(event):
            await emit_changes(tier_stage.tick(state, shell.tick_keys(event, state.windows_meta)))
            return
        if event.message.topic == t.tier_overrides:
            cmd = decode(TierOverride, event.value)
            change = tier_stage.override(cmd.group, cmd.tier, cmd.actor, state)
            await emit_changes([change] if change else [])
            return
        hit = decode(KeywordHit, event.value)
        try:
            changes = tier_stage.process(hit, state, offset=event.message.offset)
        except LateEvent as exc:
            raise DeadLetter("late_event", str(exc)) from None
        await emit_changes(changes)

    @shell.app.agent(posts_raw, name="scoring-rekey")
    async def _rekey(stream: Any) -> None:
        async for event in stream.events():
            await shell.guarded(event, rekey)

    @shell.app.agent(threads, name="scoring-match")
    async def _match(stream: Any) -> None:
        async for event in stream.events():
            await shell.guarded(event, match)

    @shell.app.agent(
        shell.raw_topic(t.keyword_hits, t.tier_overrides, shell.ticks_name), name="scoring-tiers"
    )
    async def _count(stream: Any) -> None:
        async for event in stream.events():
            await shell.guarded(event, count)

    shell.every(settings.tick_seconds)
    return shell
