"""Write one JSON Schema per event model; the committed copies under schemas/json/ must match."""

from __future__ import annotations

from pathlib import Path

from schemas import EVENT_MODELS
from services.common import json

__all__ = ["export", "render"]


def render() -> dict[str, bytes]:
    return {
        f"{model.__name__}.json": json.dumps(
            model.model_json_schema(mode="serialization"), indent=True, sort_keys=True
        )
        + b"\n"
        for model in EVENT_MODELS
    }


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render().items():
        path = directory / name
        path.write_bytes(content)
        written.append(path)
    return written
