"""What changes between two engine documents, property by property, with the replacements first.

A document is an offline preview, a `pulumi preview --json` or a `pulumi stack export`. Each is read as the
state it declares (a preview's new states, deletes left out; an export's resources), and two such states are
compared by URN: created, deleted, updated, and replaced where a changed property is one its provider cannot
change in place (a GKE node pool's machine type, a Deployment's selector) or the engine itself says so.
Secrets stay `[secret]`; a changed one is said to have changed when the documents carry fingerprints of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from llm_mesh.engine.readers import DocumentError
from llm_mesh.engine.values import SECRET_TEXT, display

Kind = Literal["create", "delete", "update", "replace"]
STACK_TYPE = "pulumi:pulumi:Stack"

# Properties a provider cannot change in place: a change deletes and creates the resource (pulumi-gcp's
# ForceNew fields; Kubernetes' immutable fields). Prefixes of dotted paths.
REPLACED_BY: dict[str, tuple[str, ...]] = {
    "gcp:container/nodePool:NodePool": (
        "name", "project", "location", "cluster", "initialNodeCount",
        "nodeConfig.machineType", "nodeConfig.diskSizeGb", "nodeConfig.diskType", "nodeConfig.guestAccelerators",
        "nodeConfig.spot", "nodeConfig.preemptible", "nodeConfig.serviceAccount", "nodeConfig.oauthScopes",
        "nodeConfig.reservationAffinity", "nodeConfig.shieldedInstanceConfig", "nodeConfig.metadata",
        "nodeConfig.localSsdCount", "nodeConfig.minCpuPlatform",
    ),
    "gcp:container/cluster:Cluster": (
        "name", "project", "location", "network", "subnetwork", "privateClusterConfig.enablePrivateNodes",
        "privateClusterConfig.masterIpv4CidrBlock", "ipAllocationPolicy",
    ),
    "gcp:storage/bucket:Bucket": ("name", "project", "location"),
    "gcp:serviceaccount/account:Account": ("accountId", "project"),
    "gcp:compute/router:Router": ("name", "network", "region", "project"),
    "kubernetes:apps/v1:Deployment": ("metadata.name", "metadata.namespace", "spec.selector"),
    "kubernetes:apps/v1:StatefulSet": (
        "metadata.name", "metadata.namespace", "spec.selector", "spec.serviceName", "spec.volumeClaimTemplates",
    ),
    "kubernetes:apps/v1:DaemonSet": ("metadata.name", "metadata.namespace", "spec.selector"),
    "kubernetes:batch/v1:Job": ("metadata.name", "metadata.namespace", "spec.template", "spec.selector"),
    "kubernetes:core/v1:Service": ("metadata.name", "metadata.namespace", "spec.clusterIP"),
    "kubernetes:policy/v1:PodDisruptionBudget": ("metadata.name", "metadata.namespace"),
}  # fmt: skip
# Any Kubernetes object: its name and namespace are its identity.
KUBERNETES_IDENTITY = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class State:
    urn: str
    type: str
    parent: str
    inputs: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)  # path -> fingerprint
    # What the engine itself said about this resource in a preview (replaceReasons), when it did.
    engine_replaces: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


@dataclass(frozen=True)
class PropertyChange:
    path: str
    old: Any
    new: Any
    replaces: bool


@dataclass(frozen=True)
class Change:
    kind: Kind
    before: State | None
    after: State | None
    properties: tuple[PropertyChange, ...] = ()

    @property
    def state(self) -> State:
        state = self.after or self.before
        assert state is not None
        return state


@dataclass
class Diff:
    changes: list[Change]
    unchanged: int

    def counts(self) -> dict[Kind, int]:
        counts: dict[Kind, int] = {"create": 0, "update": 0, "replace": 0, "delete": 0}
        for change in self.changes:
            counts[change.kind] += 1
        return counts

    def summary(self) -> str:
        """Pulumi's summary line, with the same signs."""
        counts = self.counts()
        signs: tuple[tuple[str, Kind], ...] = (("+", "create"), ("~", "update"), ("+-", "replace"), ("-", "delete"))
        parts = [f"{sign} {counts[kind]} to {kind}" for sign, kind in signs if counts[kind]]
        return "Resources: " + ", ".join([*parts, f"{self.unchanged} unchanged"])


def states(document: Any) -> dict[str, State]:
    """The state a document declares, by URN (the stack resource itself left out)."""
    if not isinstance(document, dict):
        raise DocumentError(f"a JSON object was expected, found {type(document).__name__}")
    fingerprints = (document.get("offline") or {}).get("secretFingerprints") or {}
    found: dict[str, State] = {}
    if isinstance(document.get("steps"), list):
        for i, step in enumerate(document["steps"]):
            if not isinstance(step, dict):
                raise DocumentError(
                    f"steps[{i}] is {type(step).__name__}; an object with `op` and `newState` was expected"
                )
            new = step.get("newState")
            if step.get("op") == "delete" or not isinstance(new, dict):
                continue
            found[str(step.get("urn"))] = _state(new, fingerprints, tuple(step.get("replaceReasons") or ()))
    elif isinstance(document.get("deployment"), dict):
        for resource in document["deployment"].get("resources") or []:
            if isinstance(resource, dict):
                found[str(resource.get("urn"))] = _state(resource, fingerprints, ())
    else:
        raise DocumentError(
            "neither `pulumi preview --json` (steps[]) nor `pulumi stack export` (deployment.resources[])"
        )
    # The stack itself, and default providers, which a preview lists only when they change, are not compared.
    return {
        urn: s
        for urn, s in found.items()
        if s.type != STACK_TYPE and not (s.type.startswith("pulumi:providers:") and s.name.startswith("default"))
    }


def stack_of(states: dict[str, State]) -> str | None:
    """The stack every URN names (`urn:pulumi:STACK::...`), or None when there are none or several."""
    stacks = {urn.split("::", 1)[0].removeprefix("urn:pulumi:") for urn in states}
    return stacks.pop() if len(stacks) == 1 else None


def restacked(states: dict[str, State], old: str, new: str) -> dict[str, State]:
    """The same states with URNs (their own and their parents') moved from stack `old` to `new`, so that two
    stacks' documents are matched by project, type and name."""

    def move(urn: str) -> str:
        prefix = f"urn:pulumi:{old}::"
        return f"urn:pulumi:{new}::" + urn.removeprefix(prefix) if urn.startswith(prefix) else urn

    return {move(urn): replace(s, urn=move(s.urn), parent=move(s.parent)) for urn, s in states.items()}


def _state(raw: dict[str, Any], fingerprints: dict[str, Any], replaces: tuple[str, ...]) -> State:
    urn = str(raw.get("urn", ""))
    return State(
        urn=urn,
        type=str(raw.get("type", "")),
        parent=str(raw.get("parent", "")),
        inputs=_without_internal(display(raw.get("inputs") or {})),
        secrets=dict(fingerprints.get(urn) or {}),
        engine_replaces=replaces,
    )


def _without_internal(value: Any) -> Any:
    """The engine's own bookkeeping (`__defaults`, `__meta`, `__inputs`) is not what anyone declared."""
    if isinstance(value, dict):
        return {k: _without_internal(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_without_internal(v) for v in value]
    return value


def diff(base: dict[str, State], head: dict[str, State]) -> Diff:
    changes: list[Change] = []
    unchanged = 0
    for urn in sorted(base.keys() | head.keys()):
        before, after = base.get(urn), head.get(urn)
        if before is None:
            assert after is not None
            changes.append(Change("create", None, after))
        elif after is None:
            changes.append(Change("delete", before, None))
        else:
            properties = tuple(_property_changes(before, after))
            if not properties:
                unchanged += 1
                continue
            replaced = any(p.replaces for p in properties) or bool(after.engine_replaces)
            changes.append(Change("replace" if replaced else "update", before, after, properties))
    return Diff(changes, unchanged)


def _property_changes(before: State, after: State) -> Iterator[PropertyChange]:
    forced = REPLACED_BY.get(after.type, ()) + (KUBERNETES_IDENTITY if after.type.startswith("kubernetes:") else ())
    forced += after.engine_replaces
    old, new = dict(_leaves(before.inputs)), dict(_leaves(after.inputs))
    for path in sorted(old.keys() | new.keys(), key=_path_key):
        was, now = old.get(path, _ABSENT), new.get(path, _ABSENT)
        if was == now == SECRET_TEXT:
            if before.secrets.get(path) == after.secrets.get(path):
                continue  # the same secret, or one neither document can tell apart
        elif was == now:
            continue
        yield PropertyChange(path, was, now, any(_under(path, prefix) for prefix in forced))


class _Absent:
    def __repr__(self) -> str:
        return "(none)"


_ABSENT: Any = _Absent()


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of each scalar; an empty list or object is a leaf of its own."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def _path_key(path: str) -> list[Any]:
    """Sort paths as people read them: list indexes by number (route[10] after route[2])."""
    parts: list[Any] = []
    for part in path.replace("[", ".[").split("."):
        parts.append((1, int(part[1:-1]), "") if part.startswith("[") else (0, 0, part))
    return parts


def shown(value: Any) -> str:
    if value is _ABSENT:
        return "(none)"
    if isinstance(value, str):
        return value if len(value) <= 60 else value[:57] + "..."
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def component_of(state: State, head: dict[str, State], base: dict[str, State]) -> str:
    """The component a resource belongs to (`llm-mesh:mesh:MeshRouting route-llama`), or the stack."""
    parent = state.parent
    if not parent or parent.split("::")[-2].endswith(STACK_TYPE):
        return "(stack)"
    kind = parent.split("::")[-2].rsplit("$", 1)[-1]
    return f"{kind} {parent.rsplit('::', 1)[-1]}"


SIGNS = {"create": "+", "update": "~", "replace": "+-", "delete": "-"}


def text_report(result: Diff, base: dict[str, State], head: dict[str, State], markdown: bool = False) -> str:
    """Replacements first (what a reviewer must see first), then the rest, grouped by component."""
    lines: list[str] = []
    order = {"replace": 0, "delete": 1, "update": 2, "create": 3}
    groups: dict[str, list[Change]] = {}
    for change in sorted(result.changes, key=lambda c: (order[c.kind], c.state.urn)):
        groups.setdefault(component_of(change.state, head, base), []).append(change)
    replaced = [c for c in result.changes if c.kind == "replace"]
    if replaced:
        names = ", ".join(f"{c.state.type} {c.state.name}" for c in replaced)
        lines.append(
            f"{'**' if markdown else ''}Replaced (deleted and created again):{'**' if markdown else ''} {names}"
        )
        lines.append("")
    for component, changes in groups.items():
        lines.append(f"### {component}" if markdown else f"{component}")
        for change in changes:
            state = change.state
            lines.append(f"{'- ' if markdown else '  '}{SIGNS[change.kind]} {state.type} {state.name} ({change.kind})")
            for prop in change.properties:
                mark = "  [forces replacement]" if prop.replaces else ""
                line = f"{prop.path}: {shown(prop.old)} → {shown(prop.new)}{mark}"
                lines.append(f"    - `{line}`" if markdown else f"      {line}")
        lines.append("")
    lines.append(result.summary())
    return "\n".join(lines)


def json_report(result: Diff) -> dict[str, Any]:
    return {
        "summary": {**result.counts(), "unchanged": result.unchanged},
        "changes": [
            {
                "op": change.kind,
                "urn": change.state.urn,
                "type": change.state.type,
                "properties": [
                    {"path": p.path, "old": _plain(p.old), "new": _plain(p.new), "forcesReplacement": p.replaces}
                    for p in change.properties
                ],
            }
            for change in result.changes
        ],
    }


def _plain(value: Any) -> Any:
    return None if value is _ABSENT else value
