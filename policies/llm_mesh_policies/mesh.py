"""Istio rules: STRICT mTLS, TLS to in-mesh hosts, deny by default, positive ALLOW rules, injection."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from llm_mesh_policies.common import (
    NAMESPACE_TYPE,
    ROOT_NAMESPACE,
    WORKLOAD_TYPES,
    Skip,
    conclude,
    helm_chart,
    injection_enabled,
    is_in_mesh_host,
    istio_kind,
    labels_of,
    metadata,
    namespace_named,
    namespace_of,
    outside_mesh,
    read_each,
    resource_rule,
    spec,
    stack_rule,
)

WEAK_TLS = ("DISABLE", "SIMPLE")


@dataclass(frozen=True)
class _PeerAuth:
    namespace: str
    namespace_wide: bool
    mode: str
    port_modes: tuple[tuple[str, str], ...]


def _peer_auth(resource: PolicyResource) -> _PeerAuth | None:
    if not istio_kind(resource.resource_type, "security", "PeerAuthentication"):
        return None
    body = spec(resource.props)
    ports = body.get("portLevelMtls") or {}
    return _PeerAuth(
        namespace=namespace_of(resource.props),
        namespace_wide=not body.get("selector"),
        mode=str((body.get("mtls") or {}).get("mode") or "UNSET"),
        port_modes=tuple((str(port), str((ports[port] or {}).get("mode") or "UNSET")) for port in ports),
    )


def _root(config: Mapping[str, Any]) -> str:
    return str(config.get("rootNamespace") or ROOT_NAMESPACE)


def _mesh_wide_strict(policies: list[_PeerAuth], config: Mapping[str, Any]) -> bool:
    if config.get("meshWideMtlsManagedElsewhere"):
        return True
    return any(p.namespace == _root(config) and p.namespace_wide and p.mode == "STRICT" for p in policies)


def _inherits_strict(policy: _PeerAuth, policies: list[_PeerAuth], mesh_strict: bool) -> bool:
    """UNSET inherits: a workload policy from its namespace's, a namespace policy from the mesh's."""
    parent = "UNSET"
    if not policy.namespace_wide:
        parent = next((p.mode for p in policies if p.namespace_wide and p.namespace == policy.namespace), "UNSET")
    return parent == "STRICT" or (parent == "UNSET" and mesh_strict)


def _validate_peer_authentications(args: StackValidationArgs, report_violation: ReportViolation, skip: Skip) -> None:
    reading = read_each(args.resources, _peer_auth)
    reading.skip_unknown(skip)
    policies = [p for _, p in reading.found]
    mesh_strict = _mesh_wide_strict(policies, args.get_config())
    for resource, policy in reading.found:
        if policy.mode == "UNSET":
            if not _inherits_strict(policy, policies, mesh_strict):
                conclude(
                    "mtls.mode is UNSET and inherits no STRICT policy; set mode: STRICT",
                    resource.urn,
                    reading,
                    report_violation,
                    skip,
                )
        elif policy.mode != "STRICT":
            report_violation(f"mtls.mode is {policy.mode}; every PeerAuthentication must be STRICT", resource.urn)
        for port, port_mode in policy.port_modes:
            if port_mode not in ("STRICT", "UNSET"):
                report_violation(
                    f"portLevelMtls[{port}].mode is {port_mode}: it weakens STRICT on that port", resource.urn
                )


peer_authentication_strict = stack_rule(
    name="istio-peer-authentication-strict",
    description="Every PeerAuthentication is STRICT (UNSET only where it inherits STRICT); no port-level exception weakens it.",
    validate=_validate_peer_authentications,
    remediation="Set spec.mtls.mode: STRICT and remove portLevelMtls entries that are PERMISSIVE or DISABLE.",
    config={"rootNamespace": {"type": "string"}, "meshWideMtlsManagedElsewhere": {"type": "boolean"}},
)


def _validate_mesh_wide(args: StackValidationArgs, report_violation: ReportViolation, skip: Skip) -> None:
    config = args.get_config()
    reading = read_each(args.resources, _peer_auth)
    if not _mesh_wide_strict([p for _, p in reading.found], config):
        message = f"no PeerAuthentication in {_root(config)} without a selector and with mode STRICT"
        conclude(message, "", reading, report_violation, skip)


mesh_wide_strict_mtls = stack_rule(
    name="istio-mesh-wide-strict-mtls",
    description="The mesh has a mesh-wide STRICT PeerAuthentication in Istio's root namespace.",
    validate=_validate_mesh_wide,
    remediation="Declare PeerAuthentication 'default' in istio-system with spec.mtls.mode: STRICT and no selector.",
    config={
        "rootNamespace": {"type": "string"},
        # An application-only stack whose cluster's mesh-wide policy is declared by another stack.
        "meshWideMtlsManagedElsewhere": {"type": "boolean"},
    },
)


def _tls_settings(policy: Mapping[str, Any], where: str) -> Iterator[tuple[str, str]]:
    if policy.get("tls"):
        yield where, str(policy["tls"].get("mode"))
    for i, port in enumerate(policy.get("portLevelSettings") or []):
        if port.get("tls"):
            yield f"{where}.portLevelSettings[{i}]", str(port["tls"].get("mode"))


def _weak_tls(resource: PolicyResource) -> tuple[str, list[tuple[str, str]]] | None:
    """A DestinationRule's host and the places where it sets a TLS mode that bypasses mutual TLS."""
    if not istio_kind(resource.resource_type, "networking", "DestinationRule"):
        return None
    body = spec(resource.props)
    settings = list(_tls_settings(body.get("trafficPolicy") or {}, "trafficPolicy"))
    for i, subset in enumerate(body.get("subsets") or []):
        settings += _tls_settings(subset.get("trafficPolicy") or {}, f"subsets[{i}].trafficPolicy")
    return str(body.get("host") or ""), [(where, mode) for where, mode in settings if mode in WEAK_TLS]


def _validate_destination_rules(args: StackValidationArgs, report_violation: ReportViolation, skip: Skip) -> None:
    namespaces = read_each(args.resources, lambda r: namespace_named(r.resource_type, r.props))
    known = {namespace for _, namespace in namespaces.found}
    reading = read_each(args.resources, _weak_tls)
    reading.skip_unknown(skip)
    for resource, (host, weak) in reading.found:
        in_mesh = is_in_mesh_host(host, known)
        # `<name>.<namespace>` is in the mesh when the stack has that namespace: one whose name is unknown may be it.
        undecided = not in_mesh and len(host.split(".")) == 2 and bool(namespaces.unknown)
        for where, mode in weak if in_mesh or undecided else []:
            message = f"{where}.tls.mode is {mode} for in-mesh host {host}: it bypasses mutual TLS"
            if in_mesh:
                report_violation(message, resource.urn)
            else:
                namespace = host.split(".")[1]
                skip(
                    resource.urn,
                    f"{message}, if {namespaces.names()} (unknown during preview) is namespace {namespace}",
                )


# A stack rule: whether `<name>.<namespace>` is in the mesh depends on the namespaces the stack declares.
destination_rule_tls = stack_rule(
    name="istio-destination-rule-tls",
    description="No DestinationRule sets TLS mode DISABLE or SIMPLE (also per port or subset) for an in-mesh host.",
    validate=_validate_destination_rules,
    remediation="Use tls.mode ISTIO_MUTUAL (or leave tls unset) for hosts inside the mesh.",
)


def _workload_namespace(resource: PolicyResource) -> str | None:
    """The namespace of a workload that belongs in the mesh (those outside it on purpose say so and are left out)."""
    if resource.resource_type not in WORKLOAD_TYPES or outside_mesh(resource.resource_type, resource.props):
        return None
    return namespace_of(resource.props)


def _workload_namespaces(args: StackValidationArgs, skip: Skip) -> dict[str, PolicyResource]:
    """Each namespace that runs workloads, with its first workload by URN; workloads whose namespace is unknown
    are left out (and said so)."""
    reading = read_each(args.resources, _workload_namespace)
    reading.skip_unknown(skip)
    found: dict[str, PolicyResource] = {}
    for resource, namespace in sorted(reading.found, key=lambda found: found[0].urn):
        found.setdefault(namespace, resource)
    return found


def _allow_nothing_namespace(resource: PolicyResource) -> str | None:
    """The namespace an allow-nothing AuthorizationPolicy (ALLOW, no rules, no selector) covers."""
    if not istio_kind(resource.resource_type, "security", "AuthorizationPolicy"):
        return None
    body = spec(resource.props)
    allow_nothing = body.get("action", "ALLOW") == "ALLOW" and not body.get("rules") and not body.get("selector")
    return namespace_of(resource.props) if allow_nothing else None


def _validate_allow_nothing(args: StackValidationArgs, report_violation: ReportViolation, skip: Skip) -> None:
    policies = read_each(args.resources, _allow_nothing_namespace)
    covered = {namespace for _, namespace in policies.found}
    for namespace, workload in sorted(_workload_namespaces(args, skip).items()):
        if namespace not in covered:
            message = f"namespace {namespace} runs workloads but has no allow-nothing AuthorizationPolicy"
            conclude(message, workload.urn, policies, report_violation, skip)


namespace_allow_nothing = stack_rule(
    name="istio-namespace-allow-nothing",
    description="Every application namespace has an allow-nothing AuthorizationPolicy (deny by default).",
    validate=_validate_allow_nothing,
    remediation="Declare an AuthorizationPolicy with an empty spec ({}) in the namespace.",
)


def _wildcard(values: list[str]) -> bool:
    return any("*" in value for value in values)


def _validate_allow(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if not istio_kind(args.resource_type, "security", "AuthorizationPolicy"):
        return
    body = spec(args.props)
    if body.get("action", "ALLOW") != "ALLOW":
        return
    for i, rule in enumerate(body.get("rules") or []):
        if not rule:
            report_violation(f"rules[{i}] is empty: it allows every request", args.urn)
            continue
        sources = [entry.get("source") or {} for entry in rule.get("from") or []]
        if not sources or any(not (s.get("principals") or s.get("namespaces")) for s in sources):
            report_violation(f"rules[{i}] names no source identity (principals or namespaces)", args.urn)
        for source in sources:
            for key in ("principals", "namespaces"):
                if _wildcard(list(source.get(key) or [])):
                    report_violation(
                        f"rules[{i}] allows a wildcard {key[:-1]}: {list(source.get(key) or [])}", args.urn
                    )
        operations = [entry.get("operation") or {} for entry in rule.get("to") or []]
        if not operations or any(not (o.get("methods") and o.get("paths")) for o in operations):
            report_violation(f"rules[{i}] does not name both methods and paths", args.urn)


authorization_positive_allow = resource_rule(
    name="istio-authorization-positive-allow",
    description="ALLOW AuthorizationPolicies match positively: no empty rule, no wildcard principal or namespace, a source identity on every rule, methods and paths named.",
    validate=_validate_allow,
    remediation="List the callers' principals and the methods and paths they need; deny everything else.",
)


def _declared_namespace(resource: PolicyResource) -> tuple[str, dict[str, str]] | None:
    if resource.resource_type != NAMESPACE_TYPE:
        return None
    return str(metadata(resource.props).get("name") or ""), labels_of(resource.props)


def _istio_revision(resource: PolicyResource) -> str | None:
    """The revision istiod's Helm chart installs (values.revision), which namespaces name in istio.io/rev."""
    if helm_chart(resource.resource_type, resource.props) != "istiod":
        return None
    return str((resource.props.get("values") or {}).get("revision") or "") or None


def injection_fix(labels: Mapping[str, str], revision: str | None) -> str:
    """What to change on a namespace's labels so that its pods get sidecars."""
    label = f"istio.io/rev={revision}" if revision else "istio.io/rev=<revision> (or istio-injection=enabled)"
    if labels.get("istio-injection") == "disabled":
        return "remove the label istio-injection=disabled" + ("" if labels.get("istio.io/rev") else f" and add {label}")
    return f"add the label {label}"


def _validate_injection(args: StackValidationArgs, report_violation: ReportViolation, skip: Skip) -> None:
    external = set(args.get_config().get("injectedNamespaces") or [])
    namespaces = read_each(args.resources, _declared_namespace)
    declared = {name: (resource, labels) for resource, (name, labels) in namespaces.found}
    revisions = sorted({revision for _, revision in read_each(args.resources, _istio_revision).found})
    revision = revisions[0] if len(revisions) == 1 else None
    for namespace, workload in sorted(_workload_namespaces(args, skip).items()):
        if namespace in external:
            continue
        if namespace not in declared:
            message = (
                f"namespace {namespace} runs workloads ({workload.name}) but the stack does not declare it: declare "
                f"Namespace {namespace} and {injection_fix({}, revision)}, or list it in injectedNamespaces"
            )
            conclude(message, workload.urn, namespaces, report_violation, skip)
            continue
        resource, labels = declared[namespace]
        if not injection_enabled(labels):
            # On the Namespace: that is the resource to change.
            report_violation(
                f"namespace {namespace} runs workloads without sidecar injection or ambient mode: "
                f"{injection_fix(labels, revision)}",
                resource.urn,
            )


namespace_injection = stack_rule(
    name="istio-namespace-injection",
    description="Every namespace that runs workloads has sidecar injection (istio.io/rev or istio-injection=enabled) or ambient mode.",
    validate=_validate_injection,
    remediation="Label the namespace istio.io/rev=<revision> (or list a namespace managed elsewhere in injectedNamespaces).",
    config={"injectedNamespaces": {"type": "array", "items": {"type": "string"}}},
)

MESH_POLICIES = [
    peer_authentication_strict,
    mesh_wide_strict_mtls,
    destination_rule_tls,
    namespace_allow_nothing,
    authorization_positive_allow,
    namespace_injection,
]
