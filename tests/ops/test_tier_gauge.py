"""yuqing_tier_level comes from the tiers table, for the groups this worker owns: a restart does not reset a
level-1 group to "none", and replicas do not keep reporting groups they handed over."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from schemas.events import Tier
from services.scoring.tiers import TierState
from services.scoring.worker import _TierCollector, tier_levels

GROUPS = ["xinghe", "mingyue", "qinghe"]
HOME = {"xinghe": 0, "mingyue": 1, "qinghe": 0}.__getitem__


def _table() -> dict[str, TierState]:
    """The tiers table as a restarted worker finds it after recovering the changelog."""
    return {"xinghe": TierState(tier=Tier.level1), "mingyue": TierState(tier=Tier.level3)}


def test_a_restarted_worker_reports_the_recovered_tier_not_none() -> None:
    assert tier_levels(GROUPS, _table(), owned={0, 1}, home=HOME) == {"xinghe": 1, "mingyue": 3, "qinghe": 0}


def test_each_replica_reports_only_the_groups_it_owns() -> None:
    table = _table()
    first = tier_levels(GROUPS, table, owned={0}, home=HOME)
    second = tier_levels(GROUPS, table, owned={1}, home=HOME)
    assert first == {"xinghe": 1, "qinghe": 0}
    assert second == {"mingyue": 3}
    # After a rebalance moves partition 1 to the first replica, the second one drops mingyue.
    assert tier_levels(GROUPS, table, owned={0, 1}, home=HOME)["mingyue"] == 3
    assert tier_levels(GROUPS, table, owned=set(), home=HOME) == {}


def test_nothing_is_exported_while_the_share_is_unsettled() -> None:
    assert tier_levels(GROUPS, _table(), owned=None, home=HOME) == {}


def test_the_collector_exports_the_table_through_the_registry() -> None:
    table = _table()
    shell = SimpleNamespace(owned_partitions=lambda: {0}, home_partition=HOME)
    registry = CollectorRegistry()
    registry.register(_TierCollector(GROUPS, lambda: table, shell))
    text = generate_latest(registry).decode()
    assert 'yuqing_tier_level{group="xinghe"} 1.0' in text
    assert 'yuqing_tier_level{group="qinghe"} 0.0' in text
    assert "mingyue" not in text
    table["xinghe"] = TierState(tier=Tier.level2)  # a tier change: no gauge to forget to update
    assert 'yuqing_tier_level{group="xinghe"} 2.0' in generate_latest(registry).decode()
