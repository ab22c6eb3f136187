"""What changes between two engine documents, property by property, with the replacements first.

A document is an offline preview, a `pulumi preview --json --show-sames` or a `pulumi stack export`. Each is
read as the state it declares (a preview's new states, deletes left out; an export's resources), and two such
states are compared by URN: created, deleted, updated, and replaced where a changed property is one its provider
cannot change in place (a GKE node pool's accelerators, a Deployment's selector) or the engine itself says so.
Secrets stay `[secret]`; a changed one is said to have changed when the documents carry fingerprints of them.
A value one document knows and the other leaves to the deployment shows as `(known after deploy)` and is not
counted as a change. Long or multi-line strings show as a line diff, JSON text as the paths that change inside it.
List elements are aligned before they are compared: one removed is one line, not every later one shifted. A
preview that ended with an error is refused (its steps stop there); of an update of a resource whose provider the
table does not cover (aws...), the report says that whether it replaces is not known offline.
The summary counts as Pulumi's does: the stack resource is one of the resources, default providers are not.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from llm_mesh.engine.readers import DocumentError
from llm_mesh.engine.values import SECRET_TEXT, UNKNOWN, display
from llm_mesh.words import count

Kind = Literal["create", "delete", "update", "replace"]
STACK_TYPE = "pulumi:pulumi:Stack"
UNKNOWN_TEXT = "(known after deploy)"
# A string longer than this (a sha256 digest fits), or with a newline, shows as a line diff rather than
# `before → after` on one line.
WIDTH = 80
# Unchanged lines kept around each changed one in a line diff.
CONTEXT = 1
# Between a property holding JSON text and a path inside that text (`dashboardJson » mosaicLayout.tiles[3]`);
# not `→`, which reads as before → after.
INSIDE_TEXT = " » "

# Properties a provider cannot change in place: a change deletes and creates the resource. Prefixes of dotted
# paths as Pulumi names them (camelCase; a list of blocks in the plural). Every gcp and kubernetes type the
# three stacks declare was checked against its provider's source:
# - gcp: `ForceNew` in hashicorp/terraform-provider-google v7.9.0's resource schemas, which pulumi-gcp 10
#   bridges (tpgiamresource/resource_iam_member.go for the IAM members, which have no update at all). Types with
#   only `project` here (alert policy, dashboard, log metric) change everything else in place; a node pool's
#   machine type and disk size and type too, since provider 5.x (GKE then recreates the nodes, one by one).
# - kubernetes: pulumi/pulumi-kubernetes provider/pkg/provider/diff.go (`forceNew`, with the provider's
#   defaults: ConfigMaps and Secrets immutable) and helm_release.go (a release's name and namespace). Every other
#   type the stacks use (Istio resources, HPA, NetworkPolicy, ServiceAccount, PDB...) has only its identity,
#   KUBERNETES_IDENTITY below.
REPLACED_BY: dict[str, tuple[str, ...]] = {
    "gcp:container/cluster:Cluster": (
        "name", "project", "location", "network", "subnetwork", "description", "initialNodeCount", "nodePools",
        "networkingMode", "datapathProvider", "defaultMaxPodsPerNode", "clusterIpv4Cidr", "enableAutopilot",
        "enableKubernetesAlpha", "enableTpu", "confidentialNodes", "masterAuth.clientCertificateConfig",
        "privateClusterConfig.enablePrivateNodes", "privateClusterConfig.masterIpv4CidrBlock",
        "privateClusterConfig.privateEndpointSubnetwork", "ipAllocationPolicy.clusterIpv4CidrBlock",
        "ipAllocationPolicy.servicesIpv4CidrBlock", "ipAllocationPolicy.clusterSecondaryRangeName",
        "ipAllocationPolicy.servicesSecondaryRangeName", "ipAllocationPolicy.podCidrOverprovisionConfig",
    ),
    "gcp:container/nodePool:NodePool": (
        "name", "namePrefix", "project", "location", "cluster", "initialNodeCount", "maxPodsPerNode",
        "placementPolicy", "queuedProvisioning", "networkConfig.createPodRange", "networkConfig.podRange",
        "networkConfig.podIpv4CidrBlock", "networkConfig.podCidrOverprovisionConfig",
        "networkConfig.additionalNodeNetworkConfigs", "networkConfig.additionalPodNetworkConfigs",
        "nodeConfig.guestAccelerators", "nodeConfig.spot", "nodeConfig.preemptible", "nodeConfig.serviceAccount",
        "nodeConfig.oauthScopes", "nodeConfig.reservationAffinity", "nodeConfig.shieldedInstanceConfig",
        "nodeConfig.metadata", "nodeConfig.localSsdCount", "nodeConfig.minCpuPlatform", "nodeConfig.bootDiskKmsKey",
        "nodeConfig.advancedMachineFeatures", "nodeConfig.nodeGroup", "nodeConfig.soleTenantConfig",
        "nodeConfig.ephemeralStorageLocalSsdConfig", "nodeConfig.localNvmeSsdBlockConfig",
        "nodeConfig.secondaryBootDisks", "nodeConfig.hostMaintenancePolicy", "nodeConfig.maxRunDuration",
        "nodeConfig.flexStart", "nodeConfig.enableConfidentialStorage", "nodeConfig.localSsdEncryptionMode",
        "nodeConfig.confidentialNodes.confidentialInstanceType",
    ),
    "gcp:artifactregistry/repository:Repository": (
        "project", "location", "repositoryId", "format", "mode", "kmsKeyName", "remoteRepositoryConfig",
    ),
    "gcp:compute/firewall:Firewall": ("name", "project", "direction", "params"),
    "gcp:compute/router:Router": ("name", "network", "region", "project", "encryptedInterconnectRouter", "params"),
    "gcp:compute/routerNat:RouterNat": (
        "name", "router", "region", "project", "type", "endpointTypes", "initialNatIps",
    ),
    "gcp:logging/metric:Metric": ("project",),
    "gcp:kms/keyRing:KeyRing": ("name", "project", "location"),
    "gcp:kms/cryptoKey:CryptoKey": ("name", "keyRing", "purpose", "skipInitialVersionCreation", "importOnly"),
    "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember": ("cryptoKeyId", "role", "member", "condition"),
    "gcp:monitoring/alertPolicy:AlertPolicy": ("project",),
    # A channel of another type is another channel; taken as a replacement (the safe reading).
    "gcp:monitoring/notificationChannel:NotificationChannel": ("project", "type"),
    "gcp:monitoring/customService:CustomService": ("serviceId", "project"),
    "gcp:monitoring/dashboard:Dashboard": ("project",),
    "gcp:monitoring/slo:Slo": ("service", "sloId", "project"),
    "gcp:projects/iAMMember:IAMMember": ("role", "member", "condition", "project"),
    "gcp:serviceaccount/account:Account": ("accountId", "project"),
    "gcp:serviceaccount/iAMMember:IAMMember": ("role", "member", "condition", "serviceAccountId"),
    "gcp:storage/bucket:Bucket": (
        "name", "project", "location", "enableObjectRetention", "customPlacementConfig.dataLocations",
        "hierarchicalNamespace",
    ),
    "gcp:storage/bucketIAMMember:BucketIAMMember": ("role", "member", "condition", "bucket"),
    "gcp:storage/transferJob:TransferJob": (
        "project", "transferSpec.sourceAgentPoolName", "transferSpec.sinkAgentPoolName",
    ),
    "kubernetes:apps/v1:Deployment": ("spec.selector",),
    "kubernetes:apps/v1:DaemonSet": ("spec.selector",),
    "kubernetes:apps/v1:StatefulSet": (
        "spec.selector", "spec.serviceName", "spec.volumeClaimTemplates", "spec.podManagementPolicy",
        "spec.revisionHistoryLimit",
    ),
    "kubernetes:batch/v1:Job": ("spec.template", "spec.selector", "spec.completions", "spec.parallelism"),
    "kubernetes:core/v1:ConfigMap": ("data", "binaryData"),
    "kubernetes:core/v1:PersistentVolumeClaim": (
        "spec.accessModes", "spec.selector", "spec.storageClassName", "spec.volumeName",
    ),
    "kubernetes:core/v1:Secret": ("type", "data", "stringData"),
    "kubernetes:core/v1:Service": ("spec.clusterIP",),
    "kubernetes:helm.sh/v3:Release": ("name", "namespace"),
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": ("roleRef",),
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": ("roleRef",),
    "kubernetes:storage.k8s.io/v1:StorageClass": ("parameters", "provisioner"),
}  # fmt: skip
KUBERNETES_PROVIDER = "pulumi:providers:kubernetes"
# Any Kubernetes object: its name and namespace are its identity.
KUBERNETES_IDENTITY = ("metadata.name", "metadata.namespace")
# The providers REPLACED_BY speaks for; of any other (aws, azure...) it cannot tell whether an update replaces.
KNOWN_PACKAGES = frozenset(t.split(":", 1)[0] for t in REPLACED_BY) | {"kubernetes"}
# The preview steps by which the engine says a resource is replaced.
REPLACING_STEPS = ("replace", "create-replacement", "delete-replaced")
# The first error of a failed preview is quoted up to this many characters.
ERROR_WIDTH = 120
# An added or removed list element with at most this many values is shown value by value under its headline.
ELEMENT_LINES = 12

# In a list of objects, the first of these an element has names it (a tile by its title, an env var by its
# name): elements are matched by it, so that one removed is one line rather than every later one shifted.
IDENTITY_KEYS = ("name", "metadata.name", "widget.title", "key", "path")


@dataclass(frozen=True)
class State:
    urn: str
    type: str
    parent: str
    inputs: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)  # path -> fingerprint
    # What the engine itself said about this resource in a preview (replaceReasons), when it did.
    engine_replaces: tuple[str, ...] = ()
    # The engine's own verdict in a real preview: "replace" (a replacing step or replaceReasons), "update" (an
    # update step), or "" when it gave none (an offline preview, an export).
    engine_verdict: str = ""
    # A custom resource (one a provider manages), as the document says; components and the stack are not.
    custom: bool = False

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


@dataclass(frozen=True)
class PropertyChange:
    path: str
    old: Any
    new: Any
    replaces: bool
    # A whole list element added or removed (`tiles[5]: removed (...)`), rather than one value at a path.
    element: bool = False


@dataclass(frozen=True)
class Change:
    kind: Kind
    before: State | None
    after: State | None
    properties: tuple[PropertyChange, ...] = ()
    # False for an update of a resource whose provider neither the engine nor REPLACED_BY speaks for (aws...):
    # whether it replaces is not known offline.
    replace_known: bool = True

    @property
    def package(self) -> str:
        return _package(self.state.type)

    @property
    def state(self) -> State:
        state = self.after or self.before
        assert state is not None
        return state


@dataclass
class Diff:
    changes: list[Change]
    unchanged: int
    # Property values one document knows and the other leaves to the deployment: not counted as changes.
    known_after_deploy: int = 0
    # The resources the update leaves as they are (the stack's own resource aside).
    unchanged_states: list[State] = field(default_factory=list)

    def counts(self) -> dict[Kind, int]:
        counts: dict[Kind, int] = {"create": 0, "update": 0, "replace": 0, "delete": 0}
        for change in self.changes:
            counts[change.kind] += 1
        return counts

    def summary(self) -> str:
        """Pulumi's summary line, with the same signs and counts (the stack resource is one of them)."""
        counts = self.counts()
        signs: tuple[tuple[str, Kind], ...] = (("+", "create"), ("~", "update"), ("+-", "replace"), ("-", "delete"))
        parts = [f"{sign} {counts[kind]} to {kind}" for sign, kind in signs if counts[kind]]
        return "Resources: " + ", ".join([*parts, f"{self.unchanged} unchanged"])


def states(document: Any) -> dict[str, State]:
    """The state a document declares, by URN (default providers left out, as Pulumi's own counts leave them)."""
    if not isinstance(document, dict):
        raise DocumentError(f"a JSON object was expected, found {type(document).__name__}")
    failed = preview_error(document)
    if failed is not None:
        raise DocumentError(
            f"the preview ended with an error ({failed}): its steps are incomplete; fix the error and preview again"
        )
    left_out = unchanged_left_out(document)
    if left_out:
        raise DocumentError(
            f"this preview lists only the changes ({count(left_out, 'unchanged resource')} left out): "
            "write it with `pulumi preview --json --show-sames`"
        )
    fingerprints = (document.get("offline") or {}).get("secretFingerprints") or {}
    found: dict[str, State] = {}
    if isinstance(document.get("steps"), list):
        # A replacement is several steps for one URN (create-replacement, replace, delete-replaced): the verdict
        # and the reasons of any of them hold for the resource.
        verdicts: dict[str, str] = {}
        reasons: dict[str, tuple[str, ...]] = {}
        for i, step in enumerate(document["steps"]):
            if not isinstance(step, dict):
                raise DocumentError(
                    f"steps[{i}] is {type(step).__name__}; an object with `op` and `newState` was expected"
                )
            urn, op = str(step.get("urn")), step.get("op")
            given = tuple(str(r) for r in step.get("replaceReasons") or ())
            reasons[urn] = tuple(dict.fromkeys(reasons.get(urn, ()) + given))
            if op in REPLACING_STEPS or given:
                verdicts[urn] = "replace"
            elif op == "update":
                verdicts.setdefault(urn, "update")
            new = step.get("newState")
            if op in ("delete", "delete-replaced") or not isinstance(new, dict):
                continue
            found[urn] = _state(new, fingerprints, ())
        found = {
            urn: replace(s, engine_replaces=reasons.get(urn, ()), engine_verdict=verdicts.get(urn, ""))
            for urn, s in found.items()
        }
    elif isinstance(document.get("deployment"), dict):
        for resource in document["deployment"].get("resources") or []:
            if isinstance(resource, dict):
                found[str(resource.get("urn"))] = _state(resource, fingerprints, ())
    else:
        raise DocumentError(
            "neither `pulumi preview --json` (steps[]) nor `pulumi stack export` (deployment.resources[])"
            "; write one with `llm-mesh preview --json`, `pulumi preview --json --show-sames` or `pulumi stack export`"
        )
    # Default providers, which a preview lists only when they change, are not compared.
    return {
        urn: s
        for urn, s in found.items()
        if not (s.type.startswith("pulumi:providers:") and s.name.startswith("default"))
    }


def preview_error(document: dict[str, Any]) -> str | None:
    """The first error a `pulumi preview --json` ended with, on one line, or None. Such a preview lists only the
    steps made before the error: every resource after it would read as deleted. llm-mesh's own offline preview
    (`offline`) records the whole program before it writes its diagnostics, so its steps are complete."""
    diagnostics = document.get("diagnostics")
    # A preview that failed before its first step may have no steps at all.
    if "offline" in document or "deployment" in document or not isinstance(diagnostics, list):
        return None
    for diagnostic in diagnostics:
        if isinstance(diagnostic, dict) and diagnostic.get("severity") == "error":
            message = " ".join(str(diagnostic.get("message") or "").split()) or "no message"
            return message if len(message) <= ERROR_WIDTH else message[: ERROR_WIDTH - 3] + "..."
    return None


def unchanged_left_out(document: dict[str, Any]) -> int:
    """How many unchanged resources a preview counts (`changeSummary.same`) but does not list: a plain
    `pulumi preview --json` writes `same` steps only with --show-sames, and without them every unchanged
    resource would read as deleted."""
    steps, summary = document.get("steps"), document.get("changeSummary")
    if not isinstance(steps, list) or not isinstance(summary, dict):
        return 0
    same = summary.get("same")
    if not isinstance(same, int) or any(isinstance(step, dict) and step.get("op") == "same" for step in steps):
        return 0
    return same


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
        custom=raw.get("custom") is True,
    )


def _package(type_: str) -> str:
    """The provider package of a type (`aws` for `aws:s3/bucket:Bucket` and for `pulumi:providers:aws`)."""
    return type_.removeprefix("pulumi:providers:").split(":", 1)[0]


def replace_known(state: State) -> bool:
    """Whether an update of this resource can be told from a replacement: the engine said which, or it is not a
    provider's resource, or REPLACED_BY covers its provider."""
    return bool(state.engine_verdict) or not state.custom or _package(state.type) in KNOWN_PACKAGES


def _without_internal(value: Any) -> Any:
    """The engine's own bookkeeping (`__defaults`, `__meta`, `__inputs`) is not what anyone declared."""
    if isinstance(value, dict):
        return {k: _without_internal(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_without_internal(v) for v in value]
    return value


def diff(base: dict[str, State], head: dict[str, State]) -> Diff:
    base_stack, base = _split_stack(base)
    head_stack, head = _split_stack(head)
    changes = _stack_changes(base_stack, head_stack)
    unchanged = int(base_stack is not None and head_stack is not None)
    known_after_deploy = 0
    unchanged_states: list[State] = []
    for urn in sorted(base.keys() | head.keys()):
        before, after = base.get(urn), head.get(urn)
        if before is None:
            assert after is not None
            changes.append(Change("create", None, after))
        elif after is None:
            changes.append(Change("delete", before, None))
        else:
            found = tuple(_property_changes(before, after))
            properties = tuple(p for p in found if not known_on_one_side(p.old, p.new))
            known_after_deploy += len(found) - len(properties)
            if not properties:
                unchanged += 1
                unchanged_states.append(after)
                continue
            # The engine's verdict wins over the table: it replaces even when the table knows no reason to.
            replaced = any(p.replaces for p in properties) or after.engine_verdict == "replace"
            kind: Kind = "replace" if replaced else "update"
            changes.append(Change(kind, before, after, properties, replaced or replace_known(after)))
    return Diff(changes, unchanged, known_after_deploy, unchanged_states)


def _split_stack(states: dict[str, State]) -> tuple[State | None, dict[str, State]]:
    """The stack resource apart from the rest: it is counted as Pulumi counts it, but its name differs from one
    stack to another (llm-mesh-dev, llm-mesh-prod), so it is matched by type, not URN."""
    stack = next((s for s in states.values() if s.type == STACK_TYPE), None)
    return stack, {urn: s for urn, s in states.items() if s.type != STACK_TYPE}


def _stack_changes(before: State | None, after: State | None) -> list[Change]:
    if before is None and after is not None:
        return [Change("create", None, after)]
    if after is None and before is not None:
        return [Change("delete", before, None)]
    return []


def known_on_one_side(old: Any, new: Any) -> bool:
    """A value one side knows and the other leaves to the deployment (a preview against an export of the same
    stack). Not a change: a preview writes every provider-computed value (an email, a self-link) as unknown even
    when nothing it comes from changes, and when something does, that change is shown where it is made (the
    replaced service account), so counting these would bury the real changes under every IAM member."""
    return (old == UNKNOWN) != (new == UNKNOWN) and _ABSENT not in (old, new)


def kubernetes_provider_replaced_by(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    """What replaces a Kubernetes provider, and with it every object it manages (pulumi-kubernetes' DiffConfig):
    with its clusterIdentifier set and unchanged, nothing; a changed clusterIdentifier; otherwise a changed
    kubeconfig, context or cluster (its active cluster: a new server is taken for a new cluster). Adding the
    identifier in the same update as a new server does not spare the provider."""
    old, new = before.get("clusterIdentifier"), after.get("clusterIdentifier")
    if old is not None and old == new:
        return ()
    if old is not None and new is not None:
        return ("clusterIdentifier",)
    return ("kubeconfig", "context", "cluster")


def _property_changes(before: State, after: State) -> Iterator[PropertyChange]:
    forced = REPLACED_BY.get(after.type, ()) + (KUBERNETES_IDENTITY if after.type.startswith("kubernetes:") else ())
    if after.type == KUBERNETES_PROVIDER:
        forced = kubernetes_provider_replaced_by(before.inputs or {}, after.inputs or {})
    # When the engine names the properties that replace the resource, they are the ones.
    forced = after.engine_replaces or forced
    for pair in sorted(_pairs(before.inputs, after.inputs), key=lambda pair: _path_key(pair.path)):
        was, now = pair.old, pair.new
        if was == now == SECRET_TEXT:
            if not _secret_changed(before.secrets.get(pair.old_path), after.secrets.get(pair.path)):
                continue
        elif was == now:
            continue
        replaces = any(_under(pair.path, prefix) for prefix in forced)
        yield PropertyChange(pair.path, was, now, replaces, pair.element)


def _secret_changed(old: str | None, new: str | None) -> bool:
    """Only two fingerprints can tell: a document without one (a `pulumi stack export`, a real preview) says
    nothing about whether the secret changed."""
    return old is not None and new is not None and old != new


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


@dataclass(frozen=True)
class _Pair:
    path: str  # where the value is in the newer document (in the older one for a removed element)
    old_path: str  # where it is in the older one
    old: Any
    new: Any
    element: bool = False  # a whole list element added or removed


def _pairs(old: Any, new: Any, path: str = "", old_path: str = "") -> Iterator[_Pair]:
    """The scalars of two values side by side, by path, as _leaves names them; list elements are aligned first
    (difflib over each element's identity, IDENTITY_KEYS or its whole JSON), so that removing one element is one
    removed element, not every later one changed. Unsorted."""
    if isinstance(old, dict) and isinstance(new, dict) and old and new:
        for key in old.keys() | new.keys():
            sub, old_sub = _join(path, str(key)), _join(old_path, str(key))
            yield from _pairs(old.get(key, _ABSENT), new.get(key, _ABSENT), sub, old_sub)
    elif isinstance(old, list) and isinstance(new, list) and (old or new):
        yield from _list_pairs(old, new, path, old_path)
    else:
        before = dict(_leaves(old)) if old is not _ABSENT else {}
        after = dict(_leaves(new)) if new is not _ABSENT else {}
        for inner in before.keys() | after.keys():
            was, now = before.get(inner, _ABSENT), after.get(inner, _ABSENT)
            yield _Pair(_join(path, inner), _join(old_path, inner), was, now)


def _list_pairs(old: list[Any], new: list[Any], path: str, old_path: str) -> Iterator[_Pair]:
    matcher = difflib.SequenceMatcher(None, [_identity(v) for v in old], [_identity(v) for v in new], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        # Elements matched, or as many changed in place as there are on both sides, are compared by path (at
        # their index in the newer list); the rest were removed or added.
        paired = min(i2 - i1, j2 - j1) if op == "replace" else (i2 - i1 if op == "equal" else 0)
        for k in range(paired):
            yield from _pairs(old[i1 + k], new[j1 + k], f"{path}[{j1 + k}]", f"{old_path}[{i1 + k}]")
        for i in range(i1 + paired, i2):
            yield _Pair(f"{path}[{i}]", f"{old_path}[{i}]", old[i], _ABSENT, element=True)
        for j in range(j1 + paired, j2):
            yield _Pair(f"{path}[{j}]", f"{path}[{j}]", _ABSENT, new[j], element=True)


def _identity(value: Any) -> str:
    """What names a list element: `name=...` (IDENTITY_KEYS) for an object that has one, else its whole JSON."""
    named = _named(value)
    return f"\0{named[0]}={json.dumps(named[1], sort_keys=True)}" if named else json.dumps(value, sort_keys=True)


def _named(value: Any) -> tuple[str, Any] | None:
    if not isinstance(value, dict):
        return None
    for key in IDENTITY_KEYS:
        found: Any = value
        for part in key.split("."):
            found = found.get(part, _ABSENT) if isinstance(found, dict) else _ABSENT
        if found is not _ABSENT and found is not None and not isinstance(found, (dict, list)):
            return key, found
    return None


def _short(value: Any) -> str:
    """A list element in a few words: its identity (`widget.title=GPU memory`), else its value, cut short."""
    named = _named(value)
    text = f"{named[0]}={named[1]}" if named else shown(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= WIDTH // 2 else text[: WIDTH // 2 - 3] + "..."


def _join(path: str, inner: str) -> str:
    if not inner:
        return path
    if not path or inner.startswith("["):
        return path + inner
    return f"{path}.{inner}"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def _path_key(path: str) -> list[Any]:
    """Sort paths as people read them: list indexes by number (route[10] after route[2])."""
    parts: list[Any] = []
    for part in path.replace("[", ".[").split("."):
        parts.append((1, int(part[1:-1]), "") if part.startswith("[") else (0, 0, part))
    return parts


def shown(value: Any) -> str:
    """A value on one line: unknowns in words, newlines escaped, long values cut."""
    if value is _ABSENT:
        return "(none)"
    if value == UNKNOWN:
        return UNKNOWN_TEXT
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = text.replace("\n", "\\n")
    return text if len(text) <= WIDTH else text[: WIDTH - 3] + "..."


def readable(path: str, old: Any, new: Any, element: bool = False) -> Iterator[tuple[str, list[str]]]:
    """A property change as a person reads it: (headline, lines of a line diff under it, if any)."""
    old_json, new_json = _json_text(old), _json_text(new)
    if element:
        added = old is _ABSENT
        yield (
            f"{path}: {'added' if added else 'removed'} ({_short(new if added else old)})",
            _element_lines(new if added else old, "+" if added else "-"),
        )
    elif old_json is not None and new_json is not None:
        yield from _json_changes(path, old_json, new_json)
    elif _as_lines(old, new) and (lines := _line_diff(old, new)):
        yield f"{path}:", lines
    elif _as_lines(old, new):
        yield f"{path}: the same lines, but for line endings", []
    else:
        yield f"{path}: {shown(old)} → {shown(new)}", []


def _element_lines(element: Any, sign: str) -> list[str]:
    """A small added or removed element's values under its headline (a route's weights matter to a reviewer);
    a large one (a dashboard tile) stays one line, and --format json keeps it whole."""
    leaves = list(_leaves(element))
    if len(leaves) > ELEMENT_LINES or not isinstance(element, (dict, list)):
        return []
    return [f"{sign} {inner}: {shown(value)}" for inner, value in sorted(leaves)]


def _json_text(value: Any) -> dict[str, Any] | list[Any] | None:
    """The object or array a string holds as JSON text (a dashboard, an annotation), else None."""
    if not isinstance(value, str) or not value.lstrip().startswith(("{", "[")):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, (dict, list)) else None


def _json_changes(path: str, old: Any, new: Any) -> Iterator[tuple[str, list[str]]]:
    pairs = sorted(_pairs(old, new), key=lambda pair: _path_key(pair.path))
    changed = [pair for pair in pairs if pair.old != pair.new]
    if not changed:
        yield f"{path}: the same JSON, written differently", []
    for pair in changed:
        # An empty object or array at the top of the text is a leaf with no path of its own.
        where = f"{path}{INSIDE_TEXT}{pair.path}" if pair.path else path
        yield from readable(where, pair.old, pair.new, pair.element)


def _as_lines(old: Any, new: Any) -> bool:
    """Two texts (or a text and nothing) too long or too many lines to read side by side on one line."""
    texts = [v for v in (old, new) if v is not _ABSENT]
    if not all(isinstance(v, str) and v != UNKNOWN for v in texts):
        return False
    return any("\n" in v or len(v) > WIDTH for v in texts)


def _line_diff(old: Any, new: Any) -> list[str]:
    """The changed lines with a line of context each side, hunk headers kept, file headers dropped."""
    before = old.splitlines() if isinstance(old, str) else []
    after = new.splitlines() if isinstance(new, str) else []
    lines = list(difflib.unified_diff(before, after, lineterm="", n=CONTEXT))[2:]
    # One line each side: its hunk header (`@@ -1 +1 @@`) says nothing.
    return lines if len(before) > 1 or len(after) > 1 else lines[1:]


def _code(text: str) -> str:
    """Inline code that survives backticks in the text: a fence longer than any run of them (CommonMark)."""
    fence = "`" * (_longest_backtick_run(text) + 1)
    padded = text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" "))
    return f"{fence} {text} {fence}" if padded else f"{fence}{text}{fence}"


def _fenced(lines: list[str], indent: str) -> list[str]:
    fence = "`" * max(3, _longest_backtick_run("\n".join(lines)) + 1)
    return [f"{indent}{fence}diff", *(f"{indent}{line}" for line in lines), f"{indent}{fence}"]


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


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
    from llm_mesh.ops.transitions import cannot_apply  # it reads this module's Diff

    for blocker in cannot_apply(result):
        lines.append(f"{'**' if markdown else ''}Cannot apply:{'**' if markdown else ''} {blocker.message()}")
        lines.append("")
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
            kind = change.kind if change.replace_known else f"{change.kind}; {unknown_replace(change)}"
            lines.append(f"{'- ' if markdown else '  '}{SIGNS[change.kind]} {state.type} {state.name} ({kind})")
            for prop in change.properties:
                lines += property_lines(prop, markdown)
        lines.append("")
    if result.known_after_deploy:
        lines.append(
            f"{count(result.known_after_deploy, 'value')} known in one document and {UNKNOWN_TEXT} in the other: "
            "not counted as changes"
        )
        lines.append("")
    lines.append(result.summary())
    return "\n".join(lines)


def property_lines(prop: PropertyChange, markdown: bool) -> list[str]:
    """One changed property under its resource: a line each, and a line diff indented under a long text."""
    mark = "  [forces replacement]" if prop.replaces else ""
    lines: list[str] = []
    for headline, diff_lines in readable(prop.path, prop.old, prop.new, prop.element):
        if markdown:
            lines.append(f"    - {_code(headline + mark)}")
            lines += _fenced(diff_lines, " " * 6) if diff_lines else []
        else:
            lines.append(f"      {headline}{mark}")
            lines += [f"        {line}" for line in diff_lines]
    return lines


def unknown_replace(change: Change) -> str:
    return f"whether it replaces is not known offline for {change.package}"


def json_report(result: Diff) -> dict[str, Any]:
    """Every changed property with its whole values, as the documents hold them (unknowns as the engine's
    sentinel); `knownAfterDeploy` counts the values left out as known on one side only."""
    from llm_mesh.ops.transitions import name_conflicts, provider_replacements  # they read this module's Diff

    return {
        "cannotApply": [
            *(
                {"name": r.provider.name, "replaced": r.provider.urn, "message": r.message()}
                for r in provider_replacements(result)
            ),
            *(
                {"name": c.name, "created": c.created.urn, "heldBy": c.held_by.urn, "message": c.message()}
                for c in name_conflicts(result)
            ),
        ],
        "summary": {**result.counts(), "unchanged": result.unchanged, "knownAfterDeploy": result.known_after_deploy},
        "changes": [
            {
                "op": change.kind,
                "urn": change.state.urn,
                "type": change.state.type,
                # An update of a provider the table does not cover (aws...): it may yet replace.
                **({} if change.replace_known else {"replaceKnown": False, "note": unknown_replace(change)}),
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
