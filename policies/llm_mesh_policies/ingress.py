"""Ingress rule: in prod, inference behind an Istio Gateway is never served to anonymous callers.

A Gateway exposes inference when a VirtualService binds to it (spec.gateways). It is not anonymous when every set
of gateway pods it selects is either behind an internal load balancer (the `gateway` Helm chart's Service) or
requires a JWT: a RequestAuthentication with jwtRules (which only rejects invalid tokens) together with an
AuthorizationPolicy that rejects requests without one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import PolicyResource, ReportViolation, ResourceValidationArgs, StackValidationArgs

from llm_mesh_policies.common import (
    ROOT_NAMESPACE,
    Reading,
    Skip,
    conclude,
    environment,
    helm_chart,
    istio_kind,
    metadata,
    namespace_of,
    plain,
    read_each,
    resource_rule,
    selects,
    spec,
    stack_rule,
)

LB_TYPE_ANNOTATION = "networking.gke.io/load-balancer-type"


@dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str
    selector: dict[str, str]


@dataclass(frozen=True)
class GatewayRelease:
    """A release of Istio's `gateway` Helm chart: where its pods run, their labels, and its Service."""

    name: str
    namespace: str
    pod_labels: dict[str, str]
    service: dict[str, Any]


@dataclass(frozen=True)
class MeshPolicy:
    """A RequestAuthentication or AuthorizationPolicy: where it applies and its spec."""

    namespace: str
    selector: dict[str, str] | None  # None: the whole namespace
    targeted: bool  # targetRef(s) instead of a selector: not modelled, so never counted as protection
    body: dict[str, Any]


@dataclass(frozen=True)
class IngressPods:
    """Pods a Gateway's configuration applies to: those of a release, or (none declared) its selector's."""

    namespace: str
    labels: dict[str, str]
    release: GatewayRelease | None


def gateway_refs(namespace: str, gateways: list[str]) -> set[tuple[str, str]]:
    """(namespace, name) of each Gateway a VirtualService in `namespace` binds to (`mesh` is the sidecars)."""
    refs = set()
    for ref in gateways:
        if ref == "mesh":
            continue
        if "/" in ref:
            gateway_namespace, name = ref.split("/", 1)
        elif "." in ref:
            # The deprecated `<name>.<namespace>.svc.cluster.local` form, which Istio still accepts.
            name, gateway_namespace = ref.split(".")[:2]
        else:
            gateway_namespace, name = namespace, ref
        refs.add((gateway_namespace, name))
    return refs


def gateway_pod_labels(release_name: str | None, values: Mapping[str, Any]) -> dict[str, str]:
    """The labels the `gateway` chart puts on its pods: `app: <name>`, `istio: <name without istio->` (the name is
    values.name or the release's), then values.labels over them."""
    name = values.get("name") or release_name
    defaults = {"app": str(name), "istio": str(name).removeprefix("istio-")} if name else {}
    return {**defaults, **{k: str(v) for k, v in (values.get("labels") or {}).items()}}


def internal_service(service: Mapping[str, Any]) -> bool:
    """The chart's Service (values.service) is not an internet-facing load balancer."""
    annotations = service.get("annotations") or {}
    return (
        annotations.get(LB_TYPE_ANNOTATION) == "Internal"
        or service.get("type") == "ClusterIP"
        or bool(service.get("loadBalancerSourceRanges"))
    )


def denies_anonymous(body: Mapping[str, Any]) -> bool:
    """A DENY policy with a rule that matches every request without a principal (and nothing narrower)."""
    if body.get("action") != "DENY":
        return False
    for rule in body.get("rules") or []:
        if rule.get("to") or rule.get("when"):
            continue  # denies anonymous requests only on some paths or conditions
        for entry in rule.get("from") or []:
            source = {k: v for k, v in (entry.get("source") or {}).items() if v}
            if set(source) == {"notRequestPrincipals"} and "*" in source["notRequestPrincipals"]:
                return True
    return False


def admits_only_principals(body: Mapping[str, Any]) -> bool:
    """An ALLOW policy whose every rule matches only requests that carry a request principal (a valid JWT)."""
    for rule in body.get("rules") or []:
        sources = [entry.get("source") or {} for entry in rule.get("from") or []]
        if not sources or not all(source.get("requestPrincipals") for source in sources):
            return False
    return True


def jwt_required(
    pods: IngressPods, authentications: list[MeshPolicy], authorizations: list[MeshPolicy], root: str
) -> bool:
    """A RequestAuthentication with jwtRules and an AuthorizationPolicy requiring a request principal apply to the
    pods. ALLOW policies add up, so every one that applies must require a principal."""

    def applies(policy: MeshPolicy) -> bool:
        in_scope = policy.namespace in (pods.namespace, root) and not policy.targeted
        return in_scope and (policy.selector is None or selects(policy.selector, pods.labels))

    validated = any(applies(p) and p.body.get("jwtRules") for p in authentications)
    applying = [p.body for p in authorizations if applies(p)]
    allows = [body for body in applying if body.get("action", "ALLOW") == "ALLOW"]
    required = any(denies_anonymous(body) for body in applying) or (
        bool(allows) and all(admits_only_principals(body) for body in allows)
    )
    return validated and required


def ingress_pods(gateway: Gateway, releases: list[GatewayRelease]) -> list[IngressPods]:
    selected = [IngressPods(r.namespace, r.pod_labels, r) for r in releases if selects(gateway.selector, r.pod_labels)]
    return selected or [IngressPods(gateway.namespace, gateway.selector, None)]


def anonymous_reason(
    pods: IngressPods, authentications: list[MeshPolicy], authorizations: list[MeshPolicy], root: str
) -> str | None:
    """Why anonymous callers reach these pods, or None when they do not."""
    release = pods.release
    if (release and internal_service(release.service)) or jwt_required(pods, authentications, authorizations, root):
        return None
    where = (
        f"Helm release {release.name}'s Service is an internet-facing {release.service.get('type') or 'LoadBalancer'}"
        if release
        else "the stack declares no `gateway` Helm release running the pods it selects"
    )
    return (
        f"{where}, and no RequestAuthentication with jwtRules together with an AuthorizationPolicy requiring a "
        f"request principal covers its pods in {pods.namespace}"
    )


def anonymous_reasons(
    gateway: Gateway,
    releases: list[GatewayRelease],
    authentications: list[MeshPolicy],
    authorizations: list[MeshPolicy],
    root: str,
) -> list[str]:
    """Why anonymous callers reach the pods a Gateway configures; empty when none do."""
    reasons = (
        anonymous_reason(pods, authentications, authorizations, root) for pods in ingress_pods(gateway, releases)
    )
    return [reason for reason in reasons if reason]


# --- reading the engine's resources


def _gateway(resource: PolicyResource) -> Gateway | None:
    if not istio_kind(resource.resource_type, "networking", "Gateway"):
        return None
    selector = plain(spec(resource.props).get("selector") or {})
    return Gateway(namespace_of(resource.props), str(metadata(resource.props).get("name") or ""), selector)


def _bindings(resource: PolicyResource) -> tuple[str, set[tuple[str, str]]] | None:
    """A VirtualService's `namespace/name` and the Gateways it binds to."""
    if not istio_kind(resource.resource_type, "networking", "VirtualService"):
        return None
    namespace = namespace_of(resource.props)
    gateways = [str(g) for g in spec(resource.props).get("gateways") or []]
    return f"{namespace}/{metadata(resource.props).get('name')}", gateway_refs(namespace, gateways)


def _release(resource: PolicyResource) -> GatewayRelease | None:
    props = resource.props
    if helm_chart(resource.resource_type, props) != "gateway":
        return None
    values = props.get("values") or {}
    name = str(props.get("name") or "") or None
    labels = gateway_pod_labels(name, {"name": values.get("name"), "labels": plain(values.get("labels") or {})})
    namespace = str(props.get("namespace") or "default")
    return GatewayRelease(name or resource.name, namespace, labels, plain(values.get("service") or {}))


def _mesh_policy(kind: str) -> Callable[[PolicyResource], MeshPolicy | None]:
    def read(resource: PolicyResource) -> MeshPolicy | None:
        if not istio_kind(resource.resource_type, "security", kind):
            return None
        body = plain(spec(resource.props))
        selector = body.get("selector")
        return MeshPolicy(
            namespace=namespace_of(resource.props),
            selector=None if selector is None else dict(selector.get("matchLabels") or {}),
            targeted=bool(body.get("targetRef") or body.get("targetRefs")),
            body=body,
        )

    return read


def _validate_not_anonymous(args: StackValidationArgs, report_violation: ReportViolation, skip: Skip) -> None:
    config = args.get_config()
    gateways = read_each(args.resources, _gateway)
    gateways.skip_unknown(skip)
    services = read_each(args.resources, _bindings)
    releases = read_each(args.resources, _release)
    authentications = read_each(args.resources, _mesh_policy("RequestAuthentication"))
    authorizations = read_each(args.resources, _mesh_policy("AuthorizationPolicy"))
    # What could make a gateway internal or require a JWT, had it been known.
    protection: Reading[Any] = Reading(unknown=releases.unknown + authentications.unknown + authorizations.unknown)
    for resource, gateway in gateways.found:
        if environment(resource.urn, config) != "prod":
            continue
        reasons = anonymous_reasons(
            gateway,
            [r for _, r in releases.found],
            [a for _, a in authentications.found],
            [a for _, a in authorizations.found],
            str(config.get("rootNamespace") or ROOT_NAMESPACE),
        )
        if not reasons:
            continue
        bound_by = sorted(name for _, (name, refs) in services.found if (gateway.namespace, gateway.name) in refs)
        if bound_by:
            message = (
                f"Gateway {gateway.namespace}/{gateway.name} serves inference (VirtualService "
                f"{', '.join(bound_by)}) to anonymous callers: {'; '.join(reasons)}"
            )
            conclude(message, resource.urn, protection, report_violation, skip)
        elif services.unknown:
            skip(
                resource.urn,
                f"Gateway {gateway.namespace}/{gateway.name} would serve inference to anonymous callers if "
                f"{services.names()} (unknown during preview) binds to it: {'; '.join(reasons)}",
            )


prod_inference_not_anonymous = stack_rule(
    name="prod-inference-not-anonymous",
    description="In prod, a Gateway that a VirtualService binds to is internal (its gateway Helm release's Service) or requires a JWT (RequestAuthentication and an AuthorizationPolicy requiring a request principal).",
    validate=_validate_not_anonymous,
    remediation=(
        "Make the gateway's Service internal (values.service.annotations networking.gke.io/load-balancer-type: "
        "Internal, type ClusterIP, or loadBalancerSourceRanges), or require a JWT in its namespace: a "
        "RequestAuthentication with jwtRules and an AuthorizationPolicy DENY from notRequestPrincipals: ['*']."
    ),
    config={"rootNamespace": {"type": "string"}},
)

# The gateway chart's service.ports when the values give none: Envoy's status port, 80 and 443.
CHART_DEFAULT_PORTS = (15021, 80, 443)
STATUS_PORT = 15021


def _validate_fronted(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A public gateway load balancer in prod admits named client networks only, and publishes no status port."""
    if environment(args.urn, args.get_config()) != "prod" or helm_chart(args.resource_type, args.props) != "gateway":
        return
    service = plain((args.props.get("values") or {}).get("service") or {})
    internal = (service.get("annotations") or {}).get(LB_TYPE_ANNOTATION) == "Internal"
    if service.get("type", "LoadBalancer") != "LoadBalancer" or internal:
        return
    ranges = [str(r) for r in service.get("loadBalancerSourceRanges") or []]
    if not ranges or any(r.endswith("/0") for r in ranges):
        report_violation(
            "the gateway's public load balancer admits any address: "
            + ("no values.service.loadBalancerSourceRanges" if not ranges else f"{', '.join(ranges)}"),
            args.urn,
        )
    ports = service.get("ports")
    published = list(CHART_DEFAULT_PORTS) if ports is None else [int(p.get("port", 0)) for p in ports]
    if STATUS_PORT in published:
        report_violation(
            "the gateway's public load balancer publishes Envoy's status port 15021"
            + (" (the chart's default service.ports)" if ports is None else ""),
            args.urn,
        )


prod_public_gateway_fronted = resource_rule(
    name="prod-public-gateway-fronted",
    description="In prod, the gateway chart's public load balancer admits named client networks only (loadBalancerSourceRanges, no /0) and publishes no status port (15021).",
    validate=_validate_fronted,
    remediation=(
        "Set gateway.sourceRanges (values.service.loadBalancerSourceRanges) to the client networks and "
        "values.service.ports to the serving port alone, or make the load balancer internal behind an L7 load "
        "balancer with Cloud Armor."
    ),
)

INGRESS_POLICIES = [prod_inference_not_anonymous, prod_public_gateway_fronted]
