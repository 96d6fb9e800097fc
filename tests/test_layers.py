"""Imports run one way: entry point (services.cli) -> services -> services.common -> schemas.

A service imports schemas, common and itself, never another service; the one exception is the desk using
escalation's public lifecycle module (ALLOWED). Every module under services/ and schemas/ is parsed: imports
at the top, inside functions and under TYPE_CHECKING, relative imports, and a module named in a string
(importlib.import_module, resources.files) all count.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("ingest", "scoring", "escalation", "notifier", "desk")
RANK = {"schemas": 0, "common": 1, "service": 2, "entry": 3}
# (importing service, imported module): a service's public module that another may use.
ALLOWED = {("desk", "services.escalation.lifecycle")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def known_modules() -> dict[str, Path]:
    return {module_name(p): p for top in ("services", "schemas") for p in sorted((ROOT / top).rglob("*.py"))}


def layer_of(module: str) -> tuple[str, str]:
    """(layer, owner): the layer of a module and, for a service, which service."""
    parts = module.split(".")
    if parts[0] == "schemas":
        return "schemas", "schemas"
    if parts[:2] == ["services", "cli"]:
        return "entry", "cli"
    if len(parts) > 1 and parts[1] in SERVICES:
        return "service", parts[1]
    return "common", "common"  # services.common, and the bare `services` namespace


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The modules of ours an import node (or a string constant) refers to."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([base] if base else [])])
        # `from services.escalation import lifecycle` names a module; `from x import name`, an attribute.
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
        return [node.value]
    return []


def violations(module: str, source: str, known: set[str], is_package: bool = False) -> list[str]:
    """Every import of `module` (whose text is `source`) that runs upward or sideways."""
    layer, owner = layer_of(module)
    found = []
    for node in ast.walk(ast.parse(source)):
        for target in dict.fromkeys(_targets(node, module, is_package, known)):
            if target.split(".")[0] not in ("services", "schemas"):
                continue  # the standard library or a dependency
            their_layer, their_owner = layer_of(target)
            if layer == "entry" or (owner, target) in ALLOWED:
                continue
            upward = RANK[their_layer] > RANK[layer]
            sideways = their_layer == "service" and layer == "service" and their_owner != owner
            if upward or sideways:
                line = getattr(node, "lineno", "?")
                found.append(f"{module}:{line} ({layer}) imports {target} ({their_layer})")
    return found


def test_every_import_runs_down_the_layers() -> None:
    known = known_modules()
    found = [
        v
        for name, path in known.items()
        for v in violations(name, path.read_text(encoding="utf-8"), set(known), path.name == "__init__.py")
    ]
    assert not found, "\n".join(found)


def test_the_allowed_exceptions_exist() -> None:
    """An exception for a module that is gone would allow its next namesake silently."""
    known = known_modules()
    assert {target for _, target in ALLOWED} <= set(known)


def test_the_check_refuses_upward_and_sideways_imports() -> None:
    known = set(known_modules())
    bad = {
        # The five upward imports the issue found, and their kind.
        "services.common.runner": "from services.scoring.worker import build\n",
        "services.common.cli": "def worker():\n    from services.ingest.replay import replay\n",
        "services.common.stream": "import services.cli.main\n",
        "schemas.docs": "from services.common.topics import TOPIC_DOCS\n",
        "schemas.export": "from services.common import json\n",
        # Sideways: another service's internals, also relatively, inside a function, typed only, by name.
        "services.desk.operator": "from services.escalation.core import EscalationCore, Incident\n",
        "services.desk.console": "from ..scoring import sentiment\n",
        "services.ingest.api": "def brief():\n    from services.notifier.briefing import build_briefing\n",
        "services.scoring.core": "if TYPE_CHECKING:\n    import services.desk\n",
        "services.notifier.worker": "importlib.import_module('services.escalation.report')\n",
        "services.escalation.worker": "from services import desk\n",
    }
    for module, source in bad.items():
        assert violations(module, source, known), (module, source)
    good = {
        "services.desk.operator": "from services.escalation.lifecycle import Lifecycle\n",
        "services.desk.console": "from services.escalation import lifecycle\nfrom . import readmodel\n",
        "services.cli.runner": "from services.scoring.worker import build\nfrom services.desk import app\n",
        "services.scoring.worker": "from schemas.topics import Topics\nfrom services.common import json\n",
        "services.common.kafka": "from schemas.topics import Topics\nimport aiokafka\n",
        "schemas.docs": "from schemas import EVENT_MODELS\nfrom .topics import TOPIC_DOCS\n",
    }
    for module, source in good.items():
        assert not violations(module, source, known), (module, violations(module, source, known))
    # The exception is the desk's alone: the same import from another service is sideways.
    assert violations(
        "services.notifier.worker", "from services.escalation.lifecycle import Lifecycle\n", known
    )
