"""Who can reach the ingress gateway, on which ports, and how fast. Read from the gateway chart's Service values
and the Istio objects that select its pods, as GKE's load balancer and Envoy would apply them. Codes:
  LM0113 inference on a public load balancer with no end-user authentication and no source ranges
  LM0122 a public load balancer that admits any address (no loadBalancerSourceRanges, or a /0 among them)
  LM0123 a load balancer publishing a port no Gateway server listens on (the chart's status port 15021)
  LM0124 a public gateway with no request rate limit (Envoy's local rate limit, enabled and enforced)
Each is an error in prod and a warning elsewhere (LM0123 on an internal load balancer: a warning).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from llm_mesh.checks.findings import Finding
from llm_mesh.checks.kube_objects import HELM_RELEASE
from llm_mesh.engine.readers import EngineResource
from llm_mesh.plan.istio_values import INTERNAL_LB_ANNOTATION as INTERNAL_LB

# The gateway chart's service.ports when the values give none: status, http2, https (manifests/charts/gateway).
CHART_DEFAULT_PORTS = (15021, 80, 443)
LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
# Envoy's FractionalPercent denominators.
DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}


@dataclass(frozen=True)
class GatewayService:
    """The load balancer the gateway chart makes, as its values declare it."""

    name: str
    namespace: str
    values: Mapping[str, Any]

    @property
    def service(self) -> Mapping[str, Any]:
        return self.values.get("service") or {}

    @property
    def public(self) -> bool:
        internal = (self.service.get("annotations") or {}).get(INTERNAL_LB) == "Internal"
        return self.service.get("type", "LoadBalancer") == "LoadBalancer" and not internal

    @property
    def source_ranges(self) -> list[str]:
        return [str(r) for r in self.service.get("loadBalancerSourceRanges") or []]

    @property
    def open_to_all(self) -> bool:
        return not self.source_ranges or any(r.endswith("/0") for r in self.source_ranges)

    @property
    def ports(self) -> list[int]:
        ports = self.service.get("ports")
        return list(CHART_DEFAULT_PORTS) if ports is None else [int(p.get("port", 0)) for p in ports]

    @property
    def pod_labels(self) -> Mapping[str, str]:
        return self.values.get("labels") or {}


def gateway_exposure_findings(resources: list[EngineResource], environment: str) -> list[Finding]:
    severity: Literal["error", "warning"] = "error" if environment == "prod" else "warning"
    findings = []
    for service in _gateway_services(resources):
        gateways = [g for g in _istio(resources, "networking", "Gateway") if _namespace(g) == service.namespace]
        bound = _bound(resources)
        served = [g for g in gateways if f"{service.namespace}/{_name(g)}" in bound]
        listened = {
            int((s.get("port") or {}).get("number", 0)) for g in gateways for s in _spec(g).get("servers") or []
        }
        release = f"Release/{service.namespace}/{service.name}"
        extra = sorted(set(service.ports) - listened)
        if extra:
            findings.append(
                Finding(
                    "LM0123", severity if service.public else "warning", release,
                    f"the load balancer publishes port(s) {extra}, where no Gateway server listens (15021 is "
                    "Envoy's status port: it answers anyone who finds the address)",
                    "publish only the Gateway servers' ports in the chart's service.ports",
                )
            )  # fmt: skip
        if not service.public or not served:
            continue
        for gateway in served:
            key = f"Gateway/{service.namespace}/{_name(gateway)}"
            if service.open_to_all and not _end_users_authenticated(resources, service.namespace):
                findings.append(
                    Finding(
                        "LM0113", severity, key,
                        "inference is served on a public load balancer to anyone: no end-user authentication, no "
                        "source ranges",
                        "set security.jwt or gateway.sourceRanges, or gateway.exposure: internal",
                    )
                )  # fmt: skip
        if service.open_to_all:
            findings.append(
                Finding(
                    "LM0122", severity, release,
                    "the public load balancer admits any address"
                    + (f" ({', '.join(service.source_ranges)})" if service.source_ranges else ""),
                    "list the client networks in gateway.sourceRanges, or put an L7 load balancer with Cloud Armor "
                    "in front of exposure: internal",
                )
            )  # fmt: skip
        if not _rate_limited(resources, service):
            findings.append(
                Finding(
                    "LM0124", severity, release,
                    "nothing limits the request rate at the public gateway: one client can queue every GPU",
                    "set gateway.rateLimit, Envoy's local rate limit on each gateway pod",
                )
            )  # fmt: skip
    return findings


def _gateway_services(resources: list[EngineResource]) -> Iterator[GatewayService]:
    for r in resources:
        if r.type == HELM_RELEASE and r.inputs.get("chart") == "gateway":
            namespace = str(r.inputs.get("namespace", "default"))
            yield GatewayService(str(r.inputs.get("name") or r.name), namespace, r.inputs.get("values") or {})


def _istio(resources: list[EngineResource], group: str, kind: str) -> list[EngineResource]:
    return [r for r in resources if r.type.startswith(f"kubernetes:{group}.istio.io/") and r.type.endswith(f":{kind}")]


def _spec(r: EngineResource) -> Mapping[str, Any]:
    return r.inputs.get("spec") or {}


def _name(r: EngineResource) -> str:
    return str((r.inputs.get("metadata") or {}).get("name", ""))


def _namespace(r: EngineResource) -> str:
    return str((r.inputs.get("metadata") or {}).get("namespace", "default"))


def _bound(resources: list[EngineResource]) -> set[str]:
    return {str(g) for r in _istio(resources, "networking", "VirtualService") for g in _spec(r).get("gateways") or []}


def _rate_limited(resources: list[EngineResource], service: GatewayService) -> bool:
    """An EnvoyFilter in the gateway's namespace whose selector picks its pods inserts Envoy's local rate limit
    with a token bucket, enabled and enforced for every request (Envoy's defaults for both are 0%)."""
    for envoy_filter in _istio(resources, "networking", "EnvoyFilter"):
        selector = (_spec(envoy_filter).get("workloadSelector") or {}).get("labels") or {}
        if _namespace(envoy_filter) != service.namespace or not selector:
            continue
        if not selector.items() <= dict(service.pod_labels).items():
            continue
        for patch in _spec(envoy_filter).get("configPatches") or []:
            config = _local_rate_limit(patch)
            if (
                config is not None
                and config.get("token_bucket")
                and all(_fraction(config.get(key)) == 1 for key in ("filter_enabled", "filter_enforced"))
            ):
                return True
    return False


def _local_rate_limit(patch: Mapping[str, Any]) -> Mapping[str, Any] | None:
    value = (patch.get("patch") or {}).get("value") or {}
    if patch.get("applyTo") != "HTTP_FILTER" or value.get("name") != LOCAL_RATE_LIMIT:
        return None
    typed = value.get("typed_config") or {}
    return typed.get("value") or {} if typed.get("@type") == TYPED_STRUCT else typed


def _fraction(flag: Any) -> float:
    """A RuntimeFractionalPercent's default: the share of requests it applies to (absent: none)."""
    default = (flag or {}).get("default_value") or {}
    return int(default.get("numerator", 0)) / DENOMINATORS.get(str(default.get("denominator", "HUNDRED")), 100)


def _end_users_authenticated(resources: list[EngineResource], namespace: str) -> bool:
    def in_namespace(kind: str) -> list[Mapping[str, Any]]:
        return [
            r.inputs.get("spec") or {}
            for r in resources
            if r.type.startswith("kubernetes:security.istio.io/")
            and r.type.endswith(f":{kind}")
            and (r.inputs.get("metadata") or {}).get("namespace") == namespace
        ]

    tokens_checked = any(spec.get("jwtRules") for spec in in_namespace("RequestAuthentication"))
    required = False
    for spec in in_namespace("AuthorizationPolicy"):
        sources = [f.get("source") or {} for rule in spec.get("rules") or [] for f in rule.get("from") or []]
        if spec.get("action") == "DENY" and any("*" in (s.get("notRequestPrincipals") or []) for s in sources):
            required = True
        rules = spec.get("rules") or []
        if (
            spec.get("action", "ALLOW") == "ALLOW"
            and rules
            and all(
                any((f.get("source") or {}).get("requestPrincipals") for f in rule.get("from") or []) for rule in rules
            )
        ):
            required = True
    return tokens_checked and required
