"""Reading what the Pulumi engine writes: `pulumi preview --json`, `pulumi stack export` (v3), or our offline preview.

Every consumer (render, validate, policy) works on the resources these readers return, so a document from
the real CLI and one from the offline engine are handled by the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from llm_mesh.engine.values import display
from llm_mesh.errors import InputError, read_problem
from llm_mesh.plan.config import NAMESPACE, Environment

ENVIRONMENTS = get_args(Environment)


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
    # The stack resource's outputs (the program exports `environment`); other resources' are not kept.
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    @property
    def stack(self) -> str:
        return self.urn.split("::", 1)[0].rsplit(":", 1)[-1]


class DocumentError(InputError):
    """Not a document this project can read, and why."""


@dataclass(frozen=True)
class EngineDocument:
    resources: list[EngineResource]
    # False for a preview that lists only what changes (`pulumi preview --json` without --show-sames):
    # rules about the whole stack cannot be judged on it.
    complete: bool
    # A `pulumi stack export`: the state of a deployed stack, every value known.
    from_export: bool = False
    # The stack's environment as the document records it (see `recorded_environment`), or None.
    environment: str | None = None


def read_engine_document(data: dict[str, Any]) -> EngineDocument:
    """Resources of a preview (`steps[].newState`; deletes are left out) or of an export (version 3)."""
    if isinstance(data.get("steps"), list):
        steps = data["steps"]
        for i, step in enumerate(steps):
            _expect_object(step, f"steps[{i}]", "an object with `op` and `newState`")
        states = [
            (f"steps[{i}].newState", step["newState"])
            for i, step in enumerate(steps)
            if step.get("newState") and step.get("op") != "delete"
        ]
        ops = {step.get("op") for step in steps}
        resources = [_resource(s, where) for where, s in states]
        # A new stack's preview creates everything; otherwise only `same` steps show unchanged ones are listed.
        complete = ops <= {"create"} or "same" in ops
        return EngineDocument(resources, complete, environment=recorded_environment(data.get("config"), resources))
    if isinstance(data.get("deployment"), dict):
        if data.get("version") != 3:
            raise DocumentError(f"stack export version {data.get('version')!r}; this reader knows version 3")
        resources = data["deployment"].get("resources") or []
        if not isinstance(resources, list):
            raise DocumentError("deployment.resources is not a list")
        deployed = [_resource(s, f"deployment.resources[{i}]") for i, s in enumerate(resources)]
        return EngineDocument(deployed, True, from_export=True, environment=recorded_environment(None, deployed))
    raise DocumentError(
        "neither `pulumi preview --json` (steps[]) nor `pulumi stack export` (deployment.resources[])"
        "; write one with `llm-mesh preview --json`, `pulumi preview --json --show-sames` or `pulumi stack export`"
    )


def recorded_environment(config: Any, resources: list[EngineResource]) -> str | None:
    """The stack's environment as a document records it: the `llm-mesh:environment` of a preview's `config` (the
    engine writes the stack's config there), else the `environment` the program exports (a deployed stack's outputs;
    a new stack's preview has none). None when it records neither, or something that is no environment."""
    configured = config.get(f"{NAMESPACE}:environment") if isinstance(config, dict) else None
    exported = {r.outputs.get("environment") for r in resources if r.type == "pulumi:pulumi:Stack"}
    for found in (configured, exported.pop() if len(exported) == 1 else None):
        if found in ENVIRONMENTS:
            return str(found)
    return None


def _expect_object(value: Any, where: str, what: str) -> None:
    if not isinstance(value, dict):
        raise DocumentError(f"{where} is {type(value).__name__} {value!r:.40}; {what} was expected")


def read_document(data: dict[str, Any]) -> list[EngineResource]:
    return read_engine_document(data).resources


def load_engine_document(path: Path) -> EngineDocument:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DocumentError(str(read_problem("engine document", path, exc))) from None
    if not isinstance(data, dict):
        raise DocumentError(f"{path}: a JSON object was expected")
    try:
        return read_engine_document(data)
    except DocumentError as exc:
        raise DocumentError(f"{path}: {exc}") from None


def load_document(path: Path) -> list[EngineResource]:
    return load_engine_document(path).resources


def _resource(state: Any, where: str = "resource") -> EngineResource:
    _expect_object(state, where, "a resource state with `urn`, `type` and `inputs`")
    for key in ("urn", "type"):
        if not isinstance(state.get(key), str):
            raise DocumentError(f"{where}.{key} is missing or not text; a resource state names its {key}")
    if not isinstance(state.get("inputs") or {}, dict):
        raise DocumentError(f"{where}.inputs is not an object")
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
        outputs=dict(state.get("outputs") or {}) if state["type"] == "pulumi:pulumi:Stack" else {},
    )
