"""Mesh semantics checked before a cluster sees them, in the spirit of `istioctl analyze`.

Pure functions over the objects a stack declares. Codes:
  LM0001 an Istio object our typed model rejects        LM0106 a principal no service account answers to
  LM0101 a route names a subset no DestinationRule has  LM0107 a workload in a namespace without injection
  LM0102 a subset selects no pods the stack deploys     LM0108 retries on non-idempotent failures (warning)
  LM0103 a destination or mirror host nobody serves     LM0109 retries that cannot fit in the timeout (warning)
  LM0104 two VirtualServices claim one host             LM0110 a VirtualService names a Gateway that is not there
  LM0105 a DestinationRule weakens mTLS under STRICT      (a workload that opts out with sidecar.istio.io/inject
                                                          "false" and says why in llm-mesh/outside-mesh is exempt)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TypeVar

from llm_mesh_policies.common import injection_enabled
from pydantic import ValidationError

from llm_mesh.checks.findings import Finding
from llm_mesh.checks.kube_objects import KubeObject
from llm_mesh.engine.readers import EngineResource
from llm_mesh.mesh import (
    AuthorizationPolicy,
    DestinationRule,
    Gateway,
    IstioObject,
    PeerAuthentication,
    RequestAuthentication,
    Telemetry,
    VirtualService,
)
from llm_mesh.mesh.base import duration_seconds
from llm_mesh.mesh.networking import CONNECTION_LEVEL_RETRIES, Destination, HTTPRoute
from llm_mesh.plan.topology import ISTIO_NAMESPACE, OUTSIDE_MESH_ANNOTATION, principal

TYPED = {
    cls.kind: cls
    for cls in (
        VirtualService,
        DestinationRule,
        Gateway,
        PeerAuthentication,
        AuthorizationPolicy,
        RequestAuthentication,
        Telemetry,
    )
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
T = TypeVar("T", bound=IstioObject)


@dataclass
class Inventory:
    """What the stack declares, indexed for the checks."""

    istio: list[IstioObject] = field(default_factory=list)
    services: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> selector
    workloads: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (key, namespace, pod labels)
    # Workloads that stay outside the mesh on purpose, and say why on their pod template.
    outside_mesh: set[str] = field(default_factory=set)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels
    principals: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)


def inventory(objects: list[KubeObject], releases: list[EngineResource], declared_principals: set[str]) -> Inventory:
    inv = Inventory(principals=set(declared_principals))
    for obj in objects:
        spec = obj.manifest.get("spec") or {}
        if obj.kind in TYPED and obj.is_istio:
            try:
                inv.istio.append(TYPED[obj.kind].model_validate({"metadata": obj.manifest["metadata"], "spec": spec}))
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                inv.findings.append(Finding("LM0001", "error", obj.key, f"{where}: {first['msg']}", f"correct {where}"))
        elif obj.kind == "Service":
            inv.services[_fqdn(obj.name, obj.namespace)] = dict(spec.get("selector") or {})
        elif obj.kind in WORKLOAD_KINDS:
            template = (spec.get("template") or {}).get("metadata") or {}
            inv.workloads.append((obj.key, obj.namespace, dict(template.get("labels") or {})))
            annotations = template.get("annotations") or {}
            if annotations.get("sidecar.istio.io/inject") == "false" and annotations.get(OUTSIDE_MESH_ANNOTATION):
                inv.outside_mesh.add(obj.key)
        elif obj.kind == "Namespace":
            inv.namespaces[obj.name] = dict(obj.manifest.get("metadata", {}).get("labels") or {})
        elif obj.kind == "ServiceAccount":
            inv.principals.add(principal(obj.namespace, obj.name))
    for release in releases:
        # The gateway chart runs its pods under a service account named after the release.
        if release.inputs.get("chart") == "gateway":
            inv.principals.add(
                principal(
                    str(release.inputs.get("namespace", "default")), str(release.inputs.get("name", release.name))
                )
            )
    return inv


def analyze(inv: Inventory) -> list[Finding]:
    findings = list(inv.findings)
    findings += _routing(inv)
    findings += _subset_pods(inv)
    findings += _host_conflicts(inv)
    findings += _mtls(inv)
    findings += _principals(inv)
    findings += _injection(inv)
    return findings


def _of(inv: Inventory, cls: type[T]) -> list[T]:
    return [o for o in inv.istio if isinstance(o, cls)]


def _fqdn(host: str, namespace: str) -> str:
    parts = host.split(".")
    if host.endswith(".svc.cluster.local") or "*" in host:
        return host
    if len(parts) == 1:
        return f"{host}.{namespace}.svc.cluster.local"
    if len(parts) == 2:
        return f"{host}.svc.cluster.local"
    return host


def _subsets(inv: Inventory) -> dict[str, set[str]]:
    subsets: dict[str, set[str]] = defaultdict(set)
    for rule in _of(inv, DestinationRule):
        subsets[_fqdn(rule.spec.host, rule.metadata.namespace)].update(s.name for s in rule.spec.subsets or [])
    return subsets


def _destinations(route: HTTPRoute) -> list[tuple[str, Destination]]:
    named = [("destination", d.destination) for d in route.route]
    return named + ([("mirror", route.mirror)] if route.mirror else [])


def _routing(inv: Inventory) -> list[Finding]:
    findings = []
    subsets = _subsets(inv)
    gateways = {f"{g.metadata.namespace}/{g.metadata.name}" for g in _of(inv, Gateway)}
    for vs in _of(inv, VirtualService):
        ns = vs.metadata.namespace
        for gateway in vs.spec.gateways or []:
            ref = gateway if "/" in gateway else f"{ns}/{gateway}"
            if gateway != "mesh" and ref not in gateways:
                findings.append(
                    Finding(
                        "LM0110",
                        "error",
                        vs.key,
                        f"gateway {gateway!r} is not declared",
                        "declare the Gateway or fix the reference",
                    )
                )
        for route in vs.spec.http:
            for role, destination in _destinations(route):
                host = _fqdn(destination.host, ns)
                if host not in inv.services:
                    findings.append(
                        Finding(
                            "LM0103",
                            "error",
                            vs.key,
                            f"{role} host {destination.host!r} is served by no Service of the stack",
                            "point it at a declared Service",
                        )
                    )
                elif destination.subset and destination.subset not in subsets.get(host, set()):
                    findings.append(
                        Finding(
                            "LM0101", "error", vs.key, f"route {route.name!r}: subset {destination.subset!r} of {host} is in no DestinationRule",
                            f"add subset {destination.subset!r} to the DestinationRule for {host}",
                        )
                    )  # fmt: skip
            findings += _retries(vs, route)
    return findings


def _retries(vs: VirtualService, route: HTTPRoute) -> list[Finding]:
    retries = route.retries
    if retries is None or retries.attempts == 0:
        return []
    unsafe = [c for c in retries.conditions if c not in CONNECTION_LEVEL_RETRIES]
    findings = []
    if unsafe:
        findings.append(
            Finding(
                "LM0108", "warning", vs.key, f"route {route.name!r} retries on {unsafe}: a completion may run twice on the GPUs",
                "retry only on connect-failure,refused-stream,reset-before-request",
            )
        )  # fmt: skip
    if unsafe and route.timeout and retries.per_try_timeout:
        total = retries.attempts * duration_seconds(retries.per_try_timeout)
        if total > duration_seconds(route.timeout):
            findings.append(
                Finding(
                    "LM0109", "warning", vs.key, f"route {route.name!r}: {retries.attempts} × {retries.per_try_timeout} exceeds timeout {route.timeout}",
                    "lower perTryTimeout or attempts, or raise the timeout",
                )
            )  # fmt: skip
    return findings


def _subset_pods(inv: Inventory) -> list[Finding]:
    findings = []
    for rule in _of(inv, DestinationRule):
        host = _fqdn(rule.spec.host, rule.metadata.namespace)
        selector = inv.services.get(host)
        if selector is None:
            findings.append(
                Finding(
                    "LM0103",
                    "error",
                    rule.key,
                    f"host {rule.spec.host!r} is served by no Service of the stack",
                    "point it at a declared Service",
                )
            )
            continue
        namespace = host.split(".")[1]
        for subset in rule.spec.subsets or []:
            wanted = {**selector, **subset.labels}
            if not any(ns == namespace and wanted.items() <= labels.items() for _, ns, labels in inv.workloads):
                findings.append(
                    Finding(
                        "LM0102", "error", rule.key, f"subset {subset.name!r} selects no pods the stack deploys ({wanted})",
                        "label the workload's pod template or fix the subset labels",
                    )
                )  # fmt: skip
    return findings


def _host_conflicts(inv: Inventory) -> list[Finding]:
    claims: dict[tuple[str, str], list[str]] = defaultdict(list)
    for vs in _of(inv, VirtualService):
        for gateway in vs.spec.gateways or ["mesh"]:
            for host in vs.spec.hosts:
                claims[(gateway, _fqdn(host, vs.metadata.namespace))].append(vs.key)
    return [
        Finding(
            "LM0104",
            "error",
            owners[1],
            f"host {host} on {gateway} is also claimed by {owners[0]}",
            "merge the routes into one VirtualService",
        )
        for (gateway, host), owners in sorted(claims.items())
        if len(owners) > 1
    ]


def _strict_namespaces(inv: Inventory) -> tuple[bool, set[str]]:
    mesh_wide, namespaces = False, set()
    for pa in _of(inv, PeerAuthentication):
        if pa.spec.selector is None and pa.spec.mtls and pa.spec.mtls.mode == "STRICT":
            if pa.metadata.namespace == ISTIO_NAMESPACE:
                mesh_wide = True
            namespaces.add(pa.metadata.namespace)
    return mesh_wide, namespaces


def _mtls(inv: Inventory) -> list[Finding]:
    mesh_wide, strict = _strict_namespaces(inv)
    findings = []
    for rule in _of(inv, DestinationRule):
        host = _fqdn(rule.spec.host, rule.metadata.namespace)
        in_mesh = host in inv.services
        host_namespace = host.split(".")[1] if in_mesh else ""
        weak = [m for m in rule.tls_modes() if m in ("DISABLE", "SIMPLE")]
        if in_mesh and weak and (mesh_wide or host_namespace in strict):
            findings.append(
                Finding(
                    "LM0105", "error", rule.key, f"TLS mode {weak[0]} for in-mesh host {host} under STRICT mTLS: its calls fail",
                    "use ISTIO_MUTUAL (or leave tls unset) for in-mesh hosts",
                )
            )  # fmt: skip
    return findings


def _principals(inv: Inventory) -> list[Finding]:
    findings = []
    for policy in _of(inv, AuthorizationPolicy):
        for rule in policy.spec.rules or []:
            for source in rule.from_ or []:
                for name in source.source.principals or []:
                    if name not in inv.principals:
                        findings.append(
                            Finding(
                                "LM0106", "error", policy.key, f"principal {name!r} is no service account of the stack or of the config",
                                "name a created service account or add it to security.callers",
                            )
                        )  # fmt: skip
    return findings


def _injection(inv: Inventory) -> list[Finding]:
    findings = []
    for key, namespace, _ in inv.workloads:
        if key in inv.outside_mesh:
            continue
        labels = inv.namespaces.get(namespace)
        if labels is None or not injection_enabled(labels):
            findings.append(
                Finding(
                    "LM0107", "error", key, f"namespace {namespace!r} has no sidecar injection: the workload is outside the mesh",
                    "declare the namespace with the istio.io/rev label",
                )
            )  # fmt: skip
    return findings
