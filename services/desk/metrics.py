"""The desk's gauges of the live spread, read from the read model at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from services.desk.readmodel import ReadModel

__all__ = ["SpreadCollector"]


class SpreadCollector:
    """`yuqing_spread_interactions` per configured group and tier window, from the newest spread snapshot (or
    the last tier change), and `yuqing_tier_forecast_seconds` while a forecast stands. Only the rule groups
    of the operator's config are exported: a group name on a topic is not trusted as a label."""

    def __init__(self, model: ReadModel, windows: dict[str, set[str]]) -> None:
        self._model = model
        self._windows = windows  # configured group -> its tier windows' labels ("2h", "4h", "8h")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        spread = GaugeMetricFamily(
            "yuqing_spread_interactions",
            "Spread (reposts + comments + likes) per rule group in each tier window, as scoring counts it.",
            labels=["group", "window"],
        )
        eta = GaugeMetricFamily(
            "yuqing_tier_forecast_seconds",
            "Time until a group's next tier threshold is expected to be crossed, while a forecast stands.",
            labels=["group", "tier"],
        )
        for row in self._model.tier_board():
            windows = self._windows.get(row["group"])
            if windows is None:
                continue
            for window, count in row["counts"].items():
                if window in windows:
                    spread.add_metric([row["group"], window], count)
            fc = row["forecast"]
            if fc is not None:
                now = self._model.clock_of(row["group"])
                if now is not None:
                    seconds = max(0.0, (fc["expected_at"] - now).total_seconds())
                    eta.add_metric([row["group"], str(fc["tier"])], seconds)
        yield spread
        yield eta
