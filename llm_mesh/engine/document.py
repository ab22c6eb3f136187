"""The recording as a `pulumi preview --json` document, and the facts a reader wants from it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from llm_mesh.engine.run import STACK_TYPE, Recording, Registration
from llm_mesh.engine.values import computed_refs, display, secret_fingerprints
from llm_mesh.mesh.base import duration_seconds


def preview_document(recording: Recording) -> dict[str, Any]:
    """One `create` step per resource, as on a new stack, in the order `ordered` gives."""
    steps = [_step(r) for r in ordered(recording.resources)]
    return {
        "steps": steps,
        "diagnostics": [
            {"severity": d.severity, "message": d.message, **({"urn": d.urn} if d.urn else {})}
            for d in recording.diagnostics
        ],
        "changeSummary": dict(Counter(step["op"] for step in steps)),
        # As in the engine's own: the stack's config, which says the environment whatever the stack is called.
        **({"config": recording.config} if recording.config else {}),
        # Not in the engine's own output: says how this document was made and what it could not know.
        "offline": {
            "engine": "llm-mesh offline preview (Pulumi SDK mock runtime)",
            "stack": recording.stack,
            "knownAfterDeploy": sorted(known_after_deploy(recording)),
            # Secrets are written [secret]; these say, without showing them, which changed between two previews.
            "secretFingerprints": {
                r.urn: found for r in recording.resources if (found := secret_fingerprints(r.inputs))
            },
        },
    }


def ordered(resources: list[Registration]) -> list[Registration]:
    """Parents before children, siblings by type and name: the same program gives the same document."""
    children: dict[str, list[Registration]] = {}
    for r in resources:
        children.setdefault(r.parent, []).append(r)
    result: list[Registration] = []

    def visit(parent: str) -> None:
        for child in sorted(children.get(parent, []), key=lambda r: (r.type, r.name)):
            result.append(child)
            visit(child.urn)

    visit("")
    return result


def known_after_deploy(recording: Recording) -> set[str]:
    """The provider-computed values (`resource.property`) that inputs or stack outputs are built from."""
    refs: set[str] = set()
    for r in recording.resources:
        refs |= computed_refs(r.inputs) | computed_refs(r.outputs)
    return refs


def _step(r: Registration) -> dict[str, Any]:
    state: dict[str, Any] = {"urn": r.urn, "custom": r.custom, "type": r.type}
    if r.type != STACK_TYPE:
        state["inputs"] = display(r.inputs)
    if r.parent:
        state["parent"] = r.parent
    state["protect"] = r.protect
    if r.retain_on_delete:
        state["retainOnDelete"] = True
    if r.provider:
        state["provider"] = r.provider
    if r.dependencies:
        state["dependencies"] = sorted(r.dependencies)
    if r.property_dependencies:
        state["propertyDependencies"] = {k: sorted(v) for k, v in sorted(r.property_dependencies.items()) if v}
    if r.custom_timeouts:
        # The engine's state keeps timeouts as seconds (resource.CustomTimeouts), not as the program's strings.
        state["customTimeouts"] = {op: duration_seconds(text) for op, text in r.custom_timeouts.items()}
    if r.outputs:
        state["outputs"] = display(r.outputs)
    step: dict[str, Any] = {"op": "create", "urn": r.urn}
    if r.provider:
        step["provider"] = r.provider
    step["newState"] = state
    return step
