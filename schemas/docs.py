"""Render docs/contracts.md from the models and the topic table, so the document cannot drift."""

from __future__ import annotations

from importlib import resources
from typing import Any

from schemas import EVENT_MODELS
from schemas.topics import TOPIC_DOCS

__all__ = ["render_contracts"]


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    t = schema.get("type", "any")
    if t == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if t == "string" and schema.get("format"):
        return f"string ({schema['format']})"
    return str(t)


def render_contracts() -> str:
    intro = (resources.files("schemas") / "contracts_intro.md").read_text(encoding="utf-8")
    lines = [intro, "## Topics", "", "Names take the configurable prefix (default `yuqing.`).", ""]
    lines += ["| topic | key | value |", "|---|---|---|"]
    lines += [f"| `yuqing.{suffix}` | {key} | {value} |" for suffix, key, value in TOPIC_DOCS.values()]
    lines += ["", "## Events", ""]
    nested: dict[str, dict[str, Any]] = {}
    for model in EVENT_MODELS:
        schema = model.model_json_schema(mode="serialization")
        nested.update(schema.get("$defs", {}))
        ids = ", ".join(f"`{f}`" for f in model._id_fields)
        lines += [f"### {model.__name__}", "", (model.__doc__ or "").strip(), ""]
        lines += [f"`event_id` = sha256 of `{model.__name__}` and {ids}.", ""]
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            desc = str(prop.get("description", "")).replace("|", "\\|")
            lines.append(f"| `{name}` | {_type(prop)} | {'yes' if name in required else ''} | {desc} |")
        lines.append("")
    lines += ["## Types inside events", ""]
    for name, schema in sorted(nested.items()):
        lines += [f"### {name}", ""]
        if "enum" in schema:
            lines += ["One of " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".", ""]
            continue
        lines += [str(schema.get("description", "")).strip(), ""] if schema.get("description") else []
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        required = set(schema.get("required", []))
        for field, prop in schema.get("properties", {}).items():
            desc = str(prop.get("description", "")).replace("|", "\\|")
            lines.append(f"| `{field}` | {_type(prop)} | {'yes' if field in required else ''} | {desc} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
