"""Reading what the Pulumi engine writes: `pulumi preview --json`, `pulumi stack export` (v3), or our offline preview.

Every consumer (render, validate, policy) works on the resources these readers return, so a document from
the real CLI and one from the offline engine are handled by the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_mesh.offline.values import display


@dataclass(frozen=True)
class EngineResource:
    urn: str
    type: str
    custom: bool
    inputs: dict[str, Any]
    parent: str = ""
    protect: bool = False
    provider: str = ""
    dependencies: list[str] = field(default_factory=list)
    retain_on_delete: bool = False

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    @property
    def stack(self) -> str:
        return self.urn.split("::", 1)[0].rsplit(":", 1)[-1]


class DocumentError(ValueError):
    """Not a document this project can read, and why."""


def read_document(data: dict[str, Any]) -> list[EngineResource]:
    """Resources of a preview (`steps[].newState`; deletes are left out) or of an export (version 3)."""
    if isinstance(data.get("steps"), list):
        states = [step["newState"] for step in data["steps"] if step.get("newState") and step.get("op") != "delete"]
    elif isinstance(data.get("deployment"), dict):
        if data.get("version") != 3:
            raise DocumentError(f"stack export version {data.get('version')!r}; this reader knows version 3")
        states = data["deployment"].get("resources") or []
    else:
        raise DocumentError(
            "neither `pulumi preview --json` (steps[]) nor `pulumi stack export` (deployment.resources[])"
        )
    return [_resource(state) for state in states]


def load_document(path: Path) -> list[EngineResource]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DocumentError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise DocumentError(f"{path}: a JSON object was expected")
    try:
        return read_document(data)
    except DocumentError as exc:
        raise DocumentError(f"{path}: {exc}") from None


def _resource(state: dict[str, Any]) -> EngineResource:
    inputs = display({k: v for k, v in (state.get("inputs") or {}).items() if k != "__defaults"})
    return EngineResource(
        urn=state["urn"],
        type=state["type"],
        custom=bool(state.get("custom")),
        inputs=inputs,
        parent=state.get("parent", ""),
        protect=bool(state.get("protect")),
        provider=state.get("provider", ""),
        dependencies=list(state.get("dependencies") or []),
        retain_on_delete=bool(state.get("retainOnDelete")),
    )
