"""Write one JSON Schema per event model; the committed copies under schemas/json/ must match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_core import to_json

from schemas import EVENT_MODELS

__all__ = ["export", "render"]


def render() -> dict[str, bytes]:
    # pydantic's own serializer: the contracts layer imports nothing of services/, so not services.common.json
    # (whose indent + sort_keys output these bytes equal).
    return {
        f"{model.__name__}.json": to_json(_sorted(model.model_json_schema(mode="serialization")), indent=2)
        + b"\n"
        for model in EVENT_MODELS
    }


def _sorted(value: Any) -> Any:
    """`value` with every mapping's keys in order, so that the files diff well."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render().items():
        path = directory / name
        path.write_bytes(content)
        written.append(path)
    return written
