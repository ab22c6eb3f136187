"""Istio rules: STRICT mTLS, TLS to in-mesh hosts, deny by default, positive ALLOW rules, injection."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
    declared_namespaces,
    injection_enabled,
    is_in_mesh_host,
    istio_kind,
    metadata,
    namespace_of,
    resource_rule,
    spec,
    stack_rule,
)

WEAK_TLS = ("DISABLE", "SIMPLE")


def _peer_authentications(resources: list[PolicyResource]) -> list[PolicyResource]:
    return [r for r in resources if istio_kind(r.resource_type, "security", "PeerAuthentication")]


def _mode(props: Mapping[str, Any]) -> str:
    return str((spec(props).get("mtls") or {}).get("mode") or "UNSET")


def _namespace_wide(props: Mapping[str, Any]) -> bool:
    return not spec(props).get("selector")


def _mesh_wide_strict(resources: list[PolicyResource], config: Mapping[str, Any]) -> bool:
    if config.get("meshWideMtlsManagedElsewhere"):
        return True
    root = str(config.get("rootNamespace") or ROOT_NAMESPACE)
    return any(
        namespace_of(r.props) == root and _namespace_wide(r.props) and _mode(r.props) == "STRICT"
        for r in _peer_authentications(resources)
    )


def _validate_peer_authentications(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = args.get_config()
    policies = _peer_authentications(args.resources)
    mesh_strict = _mesh_wide_strict(args.resources, config)
    namespace_modes = {namespace_of(r.props): _mode(r.props) for r in policies if _namespace_wide(r.props)}
    for resource in policies:
        mode = _mode(resource.props)
        if mode == "UNSET":
            # UNSET inherits: a workload policy from its namespace's, a namespace policy from the mesh's.
            parent = (
                namespace_modes.get(namespace_of(resource.props), "UNSET")
                if not _namespace_wide(resource.props)
                else "UNSET"
            )
            inherits_strict = parent == "STRICT" or (parent == "UNSET" and mesh_strict)
            if not inherits_strict:
                report_violation("mtls.mode is UNSET and inherits no STRICT policy; set mode: STRICT", resource.urn)
        elif mode != "STRICT":
            report_violation(f"mtls.mode is {mode}; every PeerAuthentication must be STRICT", resource.urn)
        for port, port_mtls in (spec(resource.props).get("portLevelMtls") or {}).items():
            port_mode = (port_mtls or {}).get("mode") or "UNSET"
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


def _validate_mesh_wide(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    if not _mesh_wide_strict(args.resources, args.get_config()):
        root = args.get_config().get("rootNamespace") or ROOT_NAMESPACE
        report_violation(f"no PeerAuthentication in {root} without a selector and with mode STRICT", None)


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


def _validate_destination_rules(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    namespaces = declared_namespaces([(r.resource_type, r.props) for r in args.resources])
    for resource in args.resources:
        if not istio_kind(resource.resource_type, "networking", "DestinationRule"):
            continue
        body = spec(resource.props)
        host = str(body.get("host") or "")
        if not is_in_mesh_host(host, namespaces):
            continue
        settings = list(_tls_settings(body.get("trafficPolicy") or {}, "trafficPolicy"))
        for i, subset in enumerate(body.get("subsets") or []):
            settings += _tls_settings(subset.get("trafficPolicy") or {}, f"subsets[{i}].trafficPolicy")
        for where, mode in settings:
            if mode in WEAK_TLS:
                report_violation(
                    f"{where}.tls.mode is {mode} for in-mesh host {host}: it bypasses mutual TLS", resource.urn
                )


# A stack rule: whether `<name>.<namespace>` is in the mesh depends on the namespaces the stack declares.
destination_rule_tls = stack_rule(
    name="istio-destination-rule-tls",
    description="No DestinationRule sets TLS mode DISABLE or SIMPLE (also per port or subset) for an in-mesh host.",
    validate=_validate_destination_rules,
    remediation="Use tls.mode ISTIO_MUTUAL (or leave tls unset) for hosts inside the mesh.",
)


def _workload_namespaces(resources: list[PolicyResource]) -> dict[str, PolicyResource]:
    found: dict[str, PolicyResource] = {}
    for r in resources:
        if r.resource_type in WORKLOAD_TYPES:
            found.setdefault(namespace_of(r.props), r)
    return found


def _is_allow_nothing(props: Mapping[str, Any]) -> bool:
    body = spec(props)
    return body.get("action", "ALLOW") == "ALLOW" and not body.get("rules") and not body.get("selector")


def _validate_allow_nothing(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    covered = {
        namespace_of(r.props)
        for r in args.resources
        if istio_kind(r.resource_type, "security", "AuthorizationPolicy") and _is_allow_nothing(r.props)
    }
    for namespace, workload in sorted(_workload_namespaces(args.resources).items()):
        if namespace not in covered:
            report_violation(
                f"namespace {namespace} runs workloads but has no allow-nothing AuthorizationPolicy", workload.urn
            )


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


def _validate_injection(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    external = set(args.get_config().get("injectedNamespaces") or [])
    declared = {
        str(metadata(r.props).get("name")): dict(metadata(r.props).get("labels") or {})
        for r in args.resources
        if r.resource_type == NAMESPACE_TYPE
    }
    for namespace, workload in sorted(_workload_namespaces(args.resources).items()):
        if namespace in external:
            continue
        labels = declared.get(namespace)
        if labels is None:
            report_violation(f"namespace {namespace} runs workloads but is not declared with injection", workload.urn)
        elif not injection_enabled(labels):
            report_violation(
                f"namespace {namespace} runs workloads without sidecar injection or ambient mode", workload.urn
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
