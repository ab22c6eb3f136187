"""Rules of the inference-pool path (Gateway API HTTPRoutes to InferencePools, each chosen by an endpoint picker):
pools whose pods are in the mesh, and pickers that cannot read Secrets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import PolicyResource, ReportViolation, StackValidationArgs

from llm_mesh_policies.common import (
    NAMESPACE_TYPE,
    WORKLOAD_TYPES,
    Skip,
    conclude,
    injection_enabled,
    labels_of,
    metadata,
    namespace_of,
    plain,
    pod_annotations,
    pod_spec,
    read_each,
    selects,
    spec,
    stack_rule,
)

POOL_TYPE = "kubernetes:inference.networking.k8s.io/v1:InferencePool"
ROUTE_TYPE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
SERVICE_TYPE = "kubernetes:core/v1:Service"
INFERENCE_GROUP = "inference.networking.k8s.io"
RBAC = "kubernetes:rbac.authorization.k8s.io/v1:"
READS = {"get", "list", "watch", "*"}
INJECT = "sidecar.istio.io/inject"
# Kubernetes' default ClusterRoles that read Secrets (view does not): a binding may name them without declaring them.
BUILTIN_SECRET_READERS = {"cluster-admin", "admin", "edit"}
YAML_TRUE = {"y", "yes", "true", "on"}


@dataclass(frozen=True)
class _Pool:
    namespace: str
    name: str
    selector: dict[str, str]
    picker: str  # the endpoint picker's Service, in the pool's namespace ("" when not a Service)


def _pool(resource: PolicyResource) -> _Pool | None:
    if resource.resource_type != POOL_TYPE:
        return None
    body = plain(spec(resource.props))
    ref = body.get("endpointPickerRef") or {}
    picker = str(ref.get("name") or "") if (ref.get("kind") or "Service") == "Service" and not ref.get("group") else ""
    return _Pool(
        namespace_of(resource.props),
        str(metadata(resource.props).get("name") or ""),
        {k: str(v) for k, v in ((body.get("selector") or {}).get("matchLabels") or {}).items()},
        picker,
    )


def _route_pools(resource: PolicyResource) -> list[tuple[str, str]] | None:
    """(namespace, name) of every InferencePool an HTTPRoute sends requests, or copies of them, to."""
    if resource.resource_type != ROUTE_TYPE:
        return None
    namespace = namespace_of(resource.props)
    found = []
    for rule in plain(spec(resource.props)).get("rules") or []:
        refs = list(rule.get("backendRefs") or [])
        refs += [(f.get("requestMirror") or {}).get("backendRef") or {} for f in rule.get("filters") or []]
        for ref in refs:
            if ref.get("kind") == "InferencePool" and ref.get("group") == INFERENCE_GROUP:
                found.append((str(ref.get("namespace") or namespace), str(ref.get("name") or "")))
    return found


def _namespace(resource: PolicyResource) -> tuple[str, dict[str, str]] | None:
    if resource.resource_type != NAMESPACE_TYPE:
        return None
    return str(metadata(resource.props).get("name") or ""), labels_of(resource.props)


@dataclass(frozen=True)
class _Workload:
    namespace: str
    labels: dict[str, str]
    opted_out: bool
    service_account: str


def _workload(resource: PolicyResource) -> _Workload | None:
    if resource.resource_type not in WORKLOAD_TYPES:
        return None
    template = plain(spec(resource.props).get("template") or {})
    annotations = plain(pod_annotations(resource.resource_type, resource.props))
    labels = {k: str(v) for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()}
    # As Istio's injector reads it: the pod label wins over the annotation; any value but a YAML true opts out.
    inject = labels.get(INJECT, str(annotations.get(INJECT, "")))
    return _Workload(
        namespace_of(resource.props),
        labels,
        inject != "" and inject.lower() not in YAML_TRUE,
        str(plain(pod_spec(resource.resource_type, resource.props)).get("serviceAccountName") or "default"),
    )


def _validate_pools_in_mesh(args: StackValidationArgs, report_violation: ReportViolation, skip: Skip) -> None:
    pools = read_each(args.resources, _pool)
    routes = read_each(args.resources, _route_pools)
    if not (pools.found or pools.unknown or routes.found or routes.unknown):
        return  # a stack without the path: nothing of the others to read
    namespaces = read_each(args.resources, _namespace)
    workloads = read_each(args.resources, _workload)
    for reading in (pools, routes, namespaces, workloads):
        reading.skip_unknown(skip)
    declared = {name: labels for _, (name, labels) in namespaces.found}
    by_key = {(p.namespace, p.name): (resource, p) for resource, p in pools.found}
    for route, targets in routes.found:
        for namespace, name in targets:
            if (namespace, name) not in by_key:
                message = f"routes to InferencePool {namespace}/{name}, which the stack does not declare"
                conclude(
                    f"{message}: declare it, or route to a pool of the stack", route.urn, pools, report_violation, skip
                )
    for resource, pool in pools.found:
        where = f"InferencePool {pool.namespace}/{pool.name}"
        if pool.namespace not in declared:
            message = (
                f"{where} is in namespace {pool.namespace}, which the stack does not declare: its pods' mesh "
                "membership cannot be checked; declare the namespace with istio.io/rev"
            )
            conclude(message, resource.urn, namespaces, report_violation, skip)
            continue
        if not injection_enabled(declared[pool.namespace]):
            report_violation(
                f"{where}: namespace {pool.namespace} has no sidecar injection, so the gateway would reach the pool's "
                "pods without mTLS and past every AuthorizationPolicy; label the namespace istio.io/rev=<revision>",
                resource.urn,
            )
            continue
        unmeshed = [w for _, w in workloads.found if w.namespace == pool.namespace and w.opted_out]
        if any(selects(pool.selector, w.labels) for w in unmeshed):
            report_violation(
                f"{where} selects pods that opt out of the sidecar ({INJECT}: false): the gateway "
                "would reach them without mTLS; serve the pool's pods with a sidecar",
                resource.urn,
            )


pools_in_mesh = stack_rule(
    name="inference-pool-in-mesh",
    description="Every InferencePool an HTTPRoute sends to is declared by the stack; every InferencePool is in a declared namespace with sidecar injection, selecting no pod that opts out of the sidecar.",
    validate=_validate_pools_in_mesh,
    remediation="Serve the model's pods in a namespace labelled istio.io/rev, and route only to pools the stack declares.",
)


def _role(resource: PolicyResource) -> tuple[str, str, str, bool] | None:
    """(kind, namespace, name, reads Secrets) of a Role or ClusterRole."""
    kind = resource.resource_type.removeprefix(RBAC)
    if not resource.resource_type.startswith(RBAC) or kind not in ("Role", "ClusterRole"):
        return None
    reads = False
    for rule in plain(resource.props.get("rules") or []):
        groups, resources = set(rule.get("apiGroups") or []), set(rule.get("resources") or [])
        if groups & {"", "*"} and resources & {"secrets", "*"} and set(rule.get("verbs") or []) & READS:
            reads = True
    namespace = namespace_of(resource.props) if kind == "Role" else ""
    return kind, namespace, str(metadata(resource.props).get("name") or ""), reads


@dataclass(frozen=True)
class _Binding:
    kind: str
    namespace: str
    name: str
    role: tuple[str, str, str]
    subjects: list[tuple[str, str, str]]  # (kind, namespace, name)


def _grants(subject: tuple[str, str, str], account: tuple[str, str]) -> str | None:
    """How a binding's subject takes in a service account: "" for the account itself, "group G" or "user U" for a
    name Kubernetes gives the account too; None when it does not."""
    kind, namespace, name = subject
    if kind == "ServiceAccount":
        return "" if (namespace, name) == account else None
    if kind == "User" and name == f"system:serviceaccount:{account[0]}:{account[1]}":
        return f"user {name}"
    groups = {"system:serviceaccounts", f"system:serviceaccounts:{account[0]}", "system:authenticated"}
    return f"group {name}" if kind == "Group" and name in groups else None


def _binding(resource: PolicyResource) -> _Binding | None:
    kind = resource.resource_type.removeprefix(RBAC)
    if not resource.resource_type.startswith(RBAC) or kind not in ("RoleBinding", "ClusterRoleBinding"):
        return None
    namespace = namespace_of(resource.props) if kind == "RoleBinding" else ""
    ref: Mapping[str, Any] = plain(resource.props.get("roleRef") or {})
    role_kind = str(ref.get("kind") or "")
    subjects = [
        (str(s.get("kind") or ""), str(s.get("namespace") or namespace), str(s.get("name") or ""))
        for s in plain(resource.props.get("subjects") or [])
    ]
    role = (role_kind, namespace if role_kind == "Role" else "", str(ref.get("name") or ""))
    return _Binding(kind, namespace, str(metadata(resource.props).get("name") or ""), role, subjects)


def _service_selector(resource: PolicyResource) -> tuple[str, str, dict[str, str]] | None:
    if resource.resource_type != SERVICE_TYPE:
        return None
    selector = plain(spec(resource.props).get("selector") or {})
    return namespace_of(resource.props), str(metadata(resource.props).get("name") or ""), selector


def _validate_picker_secrets(args: StackValidationArgs, report_violation: ReportViolation, skip: Skip) -> None:
    pools = read_each(args.resources, _pool)
    if not (pools.found or pools.unknown):
        return
    services = read_each(args.resources, _service_selector)
    workloads = read_each(args.resources, _workload)
    roles = read_each(args.resources, _role)
    bindings = read_each(args.resources, _binding)
    for reading in (pools, services, workloads, roles, bindings):
        reading.skip_unknown(skip)
    selectors = {(ns, name): selector for _, (ns, name, selector) in services.found}
    pickers: set[tuple[str, str]] = set()
    for _, pool in pools.found:
        selector = selectors.get((pool.namespace, pool.picker))
        if not selector:
            continue
        pickers |= {
            (w.namespace, w.service_account)
            for _, w in workloads.found
            if w.namespace == pool.namespace and selects(selector, w.labels)
        }
    declared = {(kind, ns, name): reads for _, (kind, ns, name, reads) in roles.found}
    for resource, binding in bindings.found:
        kind, _, name = binding.role
        builtin = kind == "ClusterRole" and name in BUILTIN_SECRET_READERS
        if not declared.get(binding.role, builtin):
            continue
        if binding.kind == "ClusterRoleBinding":
            scope = "cluster-wide Secrets access"
        else:
            scope = f"access to namespace {binding.namespace}'s Secrets"
        for account in sorted(pickers):
            ways = [w for w in (_grants(s, account) for s in binding.subjects) if w is not None]
            if not ways:
                continue
            through = "".join(f", through {w}" for w in ways if w)
            report_violation(
                f"{binding.kind} {binding.name} gives endpoint picker {account[0]}/{account[1]} {scope} ({kind} "
                f"{name}{through}): a picker reads pods, its InferencePool and InferenceObjectives only; bind it to a "
                "Role granting those",
                resource.urn,
            )


picker_no_secrets = stack_rule(
    name="endpoint-picker-no-secrets",
    description="No endpoint picker (the pods behind an InferencePool's endpointPickerRef Service) is bound, by its service account or a group or user name that covers it, to a role that reads Secrets (the stack's own, or cluster-admin, admin, edit), namespaced or cluster-wide.",
    validate=_validate_picker_secrets,
    remediation="Bind the picker's service account to a namespaced Role on pods, inferencepools and inferenceobjectives (get, list, watch) only.",
)

INFERENCE_POLICIES = [pools_in_mesh, picker_no_secrets]
