"""networking.istio.io: VirtualService, DestinationRule, Gateway (v1), EnvoyFilter (v1alpha3), with the rules Istio
enforces or misbehaves on."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from llm_mesh.mesh.base import Duration, IstioModel, IstioObject, Percentage, duration_seconds

NETWORKING = "networking.istio.io/v1"

# Envoy's retry conditions (x-envoy-retry-on and x-envoy-retry-grpc-on) that Istio passes through.
RETRY_CONDITIONS = frozenset(
    {
        "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
        "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
        "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
    }
)  # fmt: skip
# Conditions under which the upstream never saw the request, so a retry cannot run a generation twice.
CONNECTION_LEVEL_RETRIES = frozenset({"connect-failure", "refused-stream", "reset-before-request"})


class StringMatch(IstioModel):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("a string match sets exactly one of exact, prefix, regex")
        return self


class PortSelector(IstioModel):
    number: int = Field(ge=1, le=65535)


class Destination(IstioModel):
    host: str = Field(min_length=1)
    subset: str | None = None
    port: PortSelector | None = None


class HTTPMatchRequest(IstioModel):
    name: str | None = None
    uri: StringMatch | None = None
    method: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    # Where the request must come from: `mesh` (sidecars) or gateways the VirtualService is bound to.
    gateways: list[str] | None = None


class HTTPRouteDestination(IstioModel):
    destination: Destination
    weight: int | None = Field(default=None, ge=0, le=100)


class HTTPRetry(IstioModel):
    attempts: int = Field(ge=0)
    per_try_timeout: Duration | None = None
    retry_on: str | None = None

    @model_validator(mode="after")
    def _known_conditions(self) -> HTTPRetry:
        unknown = sorted(set(self.conditions) - RETRY_CONDITIONS)
        if unknown:
            raise ValueError(f"unknown retryOn condition(s) {unknown}; Envoy knows {sorted(RETRY_CONDITIONS)}")
        return self

    @property
    def conditions(self) -> list[str]:
        return [c.strip() for c in (self.retry_on or "").split(",") if c.strip()]


class Percent(IstioModel):
    value: Percentage


class HTTPRoute(IstioModel):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] = Field(min_length=1)
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    mirror: Destination | None = None
    mirror_percentage: Percent | None = None

    @model_validator(mode="after")
    def _weights_and_mirror(self) -> HTTPRoute:
        weights = [d.weight for d in self.route]
        if len(self.route) > 1 or any(w is not None for w in weights):
            if any(w is None for w in weights) or sum(w or 0 for w in weights) != 100:
                raise ValueError(f"route {self.name!r}: destination weights {weights} must all be set and sum to 100")
        if self.mirror_percentage is not None and self.mirror is None:
            raise ValueError(f"route {self.name!r}: mirrorPercentage without a mirror")
        if self.timeout and self.retries and self.retries.per_try_timeout:
            if duration_seconds(self.retries.per_try_timeout) > duration_seconds(self.timeout):
                raise ValueError(f"route {self.name!r}: perTryTimeout exceeds the route timeout; no retry could run")
        return self


class VirtualServiceSpec(IstioModel):
    hosts: list[str] = Field(min_length=1)
    gateways: list[str] | None = None
    http: list[HTTPRoute] = Field(min_length=1)
    export_to: list[str] | None = None

    @model_validator(mode="after")
    def _route_names_unique(self) -> VirtualServiceSpec:
        names = [r.name for r in self.http if r.name]
        if len(names) != len(set(names)):
            raise ValueError(f"route names must be unique: {names}")
        # A match limited to a gateway the VirtualService is not bound to never matches there (Istio's default
        # binding is `mesh` alone).
        bound = set(self.gateways or ["mesh"])
        for route in self.http:
            for match in route.match or []:
                unbound = sorted(set(match.gateways or []) - bound)
                if unbound:
                    raise ValueError(f"route {route.name!r}: match gateways {unbound} are not among {sorted(bound)}")
        return self


class VirtualService(IstioObject):
    api_version: ClassVar[str] = NETWORKING
    kind: ClassVar[str] = "VirtualService"
    spec: VirtualServiceSpec


class ClientTLSSettings(IstioModel):
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]
    # What the Inference Extension's chart sets for a picker outside the mesh; under STRICT, LM0105 reports it.
    insecure_skip_verify: bool | None = None


class TCPSettings(IstioModel):
    max_connections: int | None = Field(default=None, ge=1)
    connect_timeout: Duration | None = None


class HTTPSettings(IstioModel):
    http1_max_pending_requests: int | None = Field(default=None, ge=1)
    http2_max_requests: int | None = Field(default=None, ge=1)
    max_requests_per_connection: int | None = Field(default=None, ge=0)
    max_retries: int | None = Field(default=None, ge=0)
    idle_timeout: Duration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None


class ConnectionPoolSettings(IstioModel):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(IstioModel):
    consecutive_5xx_errors: int | None = Field(default=None, ge=0, alias="consecutive5xxErrors")
    consecutive_gateway_errors: int | None = Field(default=None, ge=0)
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: int | None = Field(default=None, ge=0, le=100)
    min_health_percent: int | None = Field(default=None, ge=0, le=100)


class PortTrafficPolicy(IstioModel):
    port: PortSelector
    tls: ClientTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None


class LoadBalancerSettings(IstioModel):
    simple: Literal["UNSPECIFIED", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"]


class TrafficPolicy(IstioModel):
    tls: ClientTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    load_balancer: LoadBalancerSettings | None = None
    port_level_settings: list[PortTrafficPolicy] | None = None


class Subset(IstioModel):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    labels: dict[str, str] = Field(min_length=1)
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(IstioModel):
    host: str = Field(min_length=1)
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] | None = None
    export_to: list[str] | None = None

    @model_validator(mode="after")
    def _subset_names_unique(self) -> DestinationRuleSpec:
        names = [s.name for s in self.subsets or []]
        if len(names) != len(set(names)):
            raise ValueError(f"subset names must be unique: {names}")
        return self


class DestinationRule(IstioObject):
    api_version: ClassVar[str] = NETWORKING
    kind: ClassVar[str] = "DestinationRule"
    spec: DestinationRuleSpec

    def tls_modes(self) -> list[str]:
        """Every TLS mode this rule sets, at any level (policy, ports, subsets)."""
        policies = [self.spec.traffic_policy] + [s.traffic_policy for s in self.spec.subsets or []]
        modes: list[str] = []
        for policy in filter(None, policies):
            if policy.tls:
                modes.append(policy.tls.mode)
            modes.extend(p.tls.mode for p in policy.port_level_settings or [] if p.tls)
        return modes


class Port(IstioModel):
    number: int = Field(ge=1, le=65535)
    name: str
    protocol: Literal["HTTP", "HTTPS", "HTTP2", "GRPC", "TLS", "TCP"]


class ServerTLSSettings(IstioModel):
    mode: Literal["SIMPLE", "MUTUAL", "PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"] | None = None
    credential_name: str | None = None
    https_redirect: bool | None = None


class Server(IstioModel):
    port: Port
    hosts: list[str] = Field(min_length=1)
    tls: ServerTLSSettings | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _https_needs_tls(self) -> Server:
        if self.port.protocol == "HTTPS" and (self.tls is None or self.tls.mode is None):
            raise ValueError(f"server on port {self.port.number}: HTTPS needs tls with a mode")
        if self.tls is not None and self.tls.mode in ("SIMPLE", "MUTUAL") and not self.tls.credential_name:
            if not self.tls.https_redirect:
                raise ValueError(f"server on port {self.port.number}: tls mode {self.tls.mode} needs a credentialName")
        return self


class GatewaySpec(IstioModel):
    selector: dict[str, str] = Field(min_length=1)
    servers: list[Server] = Field(min_length=1)


class Gateway(IstioObject):
    api_version: ClassVar[str] = NETWORKING
    kind: ClassVar[str] = "Gateway"
    spec: GatewaySpec


class ServiceEntryPort(IstioModel):
    number: int = Field(ge=1, le=65535)
    name: str
    protocol: Literal["HTTP", "HTTPS", "HTTP2", "GRPC", "TLS", "TCP"]


class ServiceEntrySpec(IstioModel):
    hosts: list[str] = Field(min_length=1)
    ports: list[ServiceEntryPort] = Field(min_length=1)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"]
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"]
    export_to: list[str] | None = None


class ServiceEntry(IstioObject):
    """Puts an outside host in the mesh's registry, which REGISTRY_ONLY egress requires."""

    api_version: ClassVar[str] = NETWORKING
    kind: ClassVar[str] = "ServiceEntry"
    spec: ServiceEntrySpec


# EnvoyFilter has no networking.istio.io/v1 version: v1alpha3 is the one Istio serves.
NETWORKING_V1ALPHA3 = "networking.istio.io/v1alpha3"


class SubFilterMatch(IstioModel):
    name: str


class FilterMatch(IstioModel):
    name: str
    sub_filter: SubFilterMatch | None = None


class FilterChainMatch(IstioModel):
    filter: FilterMatch


class ListenerMatch(IstioModel):
    filter_chain: FilterChainMatch


class EnvoyConfigObjectMatch(IstioModel):
    context: Literal["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"]
    listener: ListenerMatch


class Patch(IstioModel):
    operation: Literal["MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"]
    # Envoy's own configuration, in Envoy's field names (snake_case): Istio passes it through unread.
    value: dict[str, Any]


class EnvoyConfigObjectPatch(IstioModel):
    apply_to: Literal["LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION",
                      "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER"]  # fmt: skip
    match: EnvoyConfigObjectMatch
    patch: Patch


class ProxySelector(IstioModel):
    """networking's WorkloadSelector: `labels`, where security's and telemetry's say `matchLabels`."""

    labels: dict[str, str] = Field(min_length=1)


class EnvoyFilterSpec(IstioModel):
    workload_selector: ProxySelector
    config_patches: list[EnvoyConfigObjectPatch] = Field(min_length=1)


class EnvoyFilter(IstioObject):
    """Patches the proxies of the selected workloads only: never mesh-wide (no selector is refused)."""

    api_version: ClassVar[str] = NETWORKING_V1ALPHA3
    kind: ClassVar[str] = "EnvoyFilter"
    spec: EnvoyFilterSpec
