"""Whether an update can be applied: a physical name created while another resource still holds it.

Pulumi creates new resources and replacements before it deletes the old ones. So when one update deletes a
resource and creates another, under another URN, with the same physical name (a Kubernetes object's kind,
namespace and name; a Google Cloud resource's name in its project and location), the create comes first and
the API answers AlreadyExists. pulumi-kubernetes no longer upserts on create (since pulumi/pulumi-kubernetes
#4278), and its old upsert lost data (the later delete removed the object just "created"). A replacement under
the same URN is not one of these: the provider deletes a named object before it creates it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_mesh.ops.diff import KUBERNETES_PROVIDER, Diff, State

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
# Where a Google Cloud resource's name is unique, beside its type and project.
GCP_SCOPES = ("location", "region", "zone", "bucket", "dataset", "service")


@dataclass(frozen=True)
class NameConflict:
    name: str  # the physical name, as a reader says it
    created: State  # created or replaced in this update
    held_by: State  # another resource with that name: deleted later in the same update, or kept
    deleted: bool = True

    def message(self) -> str:
        api = "Kubernetes" if self.created.type.startswith("kubernetes:") else "the API"
        if self.deleted:
            held = "holds until it is deleted later in the same update"
            why = "(Pulumi creates before it deletes); give the new object a name of its own, or split the change into two updates"
        else:
            held = "holds and keeps"
            why = "(two resources cannot have one name); give each a name of its own"
        return (
            f"{self.created.type} {self.created.name} creates {self.name}, which {self.held_by.type} "
            f"{self.held_by.name} {held}: {api} answers AlreadyExists {why}"
        )


def physical_name(state: State) -> str | None:
    """The name the cloud or the cluster knows the resource by, when the document states it."""
    inputs: dict[str, Any] = state.inputs or {}
    if state.type.startswith("kubernetes:") and state.type != HELM_RELEASE:
        metadata = inputs.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            return None
        kind = inputs.get("kind") or state.type.rsplit(":", 1)[-1]
        namespace = metadata.get("namespace")
        return f"{kind} {namespace}/{metadata['name']}" if namespace else f"{kind} {metadata['name']}"
    if state.type.startswith("gcp:") and isinstance(inputs.get("name"), str):
        scope = [str(inputs[key]) for key in ("project", *GCP_SCOPES) if isinstance(inputs.get(key), str)]
        return f"{state.type.rsplit(':', 1)[-1]} {'/'.join([*scope, inputs['name']])}"
    return None


def name_conflicts(result: Diff) -> list[NameConflict]:
    freed: dict[str, State] = {}
    for change in result.changes:
        old = physical_name(change.before) if change.before else None
        new = physical_name(change.after) if change.after else None
        if old and change.before and (change.kind == "delete" or (change.kind == "replace" and old != new)):
            freed[old] = change.before
    kept: dict[str, list[State]] = {}
    for state in after_states(result):
        if name := physical_name(state):
            kept.setdefault(name, []).append(state)
    conflicts = []
    for change in result.changes:
        if change.kind in ("create", "replace") and change.after:
            name = physical_name(change.after)
            if not name:
                continue
            holder = freed.get(name)
            if holder is not None and holder.urn != change.after.urn:
                conflicts.append(NameConflict(name, change.after, holder))
            others = [s for s in kept.get(name, []) if s.urn != change.after.urn]
            if others and not any(
                {c.created.urn, c.held_by.urn} == {change.after.urn, others[0].urn} for c in conflicts
            ):
                conflicts.append(NameConflict(name, change.after, others[0], deleted=False))
    return conflicts


@dataclass(frozen=True)
class ProviderReplacement:
    provider: State

    def message(self) -> str:
        return (
            f"{self.provider.type} {self.provider.name} is replaced (its kubeconfig changes and no unchanged "
            "clusterIdentifier says the cluster is the same): Pulumi would create every Kubernetes object it "
            "manages again, and Kubernetes answers AlreadyExists to each; deploy the clusterIdentifier on its "
            "own first, then the kubeconfig change"
        )


def provider_replacements(result: Diff) -> list[ProviderReplacement]:
    return [
        ProviderReplacement(change.after)
        for change in result.changes
        if change.kind == "replace" and change.after is not None and change.after.type == KUBERNETES_PROVIDER
    ]


def cannot_apply(result: Diff) -> list[NameConflict | ProviderReplacement]:
    """Every reason the update would fail half-way, as the engine and the API would meet it."""
    return [*provider_replacements(result), *name_conflicts(result)]


def after_states(result: Diff) -> list[State]:
    """Every resource the update leaves: the changed ones as they will be, and the unchanged ones."""
    return [change.after for change in result.changes if change.after] + list(result.unchanged_states)
