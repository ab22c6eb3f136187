"""gateway.networking.k8s.io/v1 Gateway and HTTPRoute (Gateway API v1.5.1, standard channel: what Istio 1.30+ requires) and
inference.networking.k8s.io/v1 InferencePool (Inference Extension v1.0.x), with the CRDs' CEL rules we rely on and
the mistakes the API admits but that would route wrongly.

Field names and limits follow the CRDs vendored in llm_mesh/plan/crds/ (which the stack installs). Istio's own networking objects
(VirtualService, Istio's Gateway...) are in networking.py; the names overlap, so import this module by name.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from llm_mesh.mesh.base import DnsLabel, IstioModel, IstioObject, WorkloadSelector, duration_seconds

GATEWAY_API = "gateway.networking.k8s.io/v1"
INFERENCE_GROUP = "inference.networking.k8s.io"
INFERENCE = f"{INFERENCE_GROUP}/v1"
# The Inference Extension's alpha group: an HTTPRoute naming a pool there finds no v1 InferencePool.
INFERENCE_ALPHA_GROUP = "inference.networking.x-k8s.io"

_GATEWAY_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_SECTION_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
_GROUP = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_KIND = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"


def _gateway_duration(value: str) -> str:
    # Stricter than Istio's durations: whole numbers only, no us/ns.
    if not _GATEWAY_DURATION.match(value):
        raise ValueError(f"{value!r} is not a Gateway API duration; write whole h, m, s or ms, e.g. '30s' or '1m30s'")
    return value


GatewayDuration = Annotated[str, AfterValidator(_gateway_duration)]
Hostname = Annotated[str, Field(min_length=1, max_length=253, pattern=_HOSTNAME)]
SectionName = Annotated[str, Field(min_length=1, max_length=253, pattern=_SECTION_NAME)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253)]
Group = Annotated[str, Field(max_length=253, pattern=_GROUP)]
Kind = Annotated[str, Field(min_length=1, max_length=63, pattern=_KIND)]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
HeaderName = Annotated[str, Field(min_length=1, max_length=256, pattern=_HEADER_NAME)]


def _duplicates(values: list[str]) -> list[str]:
    return sorted(v for v, n in Counter(values).items() if n > 1)


# --- Gateway ---------------------------------------------------------------------------------------------------------


class SecretObjectReference(IstioModel):
    group: Group | None = None
    kind: Kind | None = None
    name: ObjectName
    namespace: DnsLabel | None = None


class GatewayTLSConfig(IstioModel):
    mode: Literal["Terminate", "Passthrough"] | None = None
    certificate_refs: list[SecretObjectReference] | None = Field(default=None, max_length=64)
    options: dict[str, str] | None = Field(default=None, max_length=16)

    @model_validator(mode="after")
    def _terminate_has_certificates(self) -> GatewayTLSConfig:
        # The CRD's CEL rule; Terminate is the default mode.
        if self.mode in (None, "Terminate") and not self.certificate_refs and not self.options:
            raise ValueError("tls mode Terminate needs certificateRefs (or options) to terminate with")
        return self


class RouteGroupKind(IstioModel):
    group: Group | None = None
    kind: Kind


class NamespaceSelector(IstioModel):
    match_labels: dict[str, str] | None = None


class RouteNamespaces(IstioModel):
    from_: Literal["All", "Selector", "Same"] | None = Field(default=None, alias="from")
    selector: NamespaceSelector | None = None

    @model_validator(mode="after")
    def _selector_with_from_selector(self) -> RouteNamespaces:
        # The API reads the selector only when `from` is Selector: otherwise it is ignored, and without one a
        # `from: Selector` listener admits no route.
        if (self.from_ == "Selector") != (self.selector is not None):
            raise ValueError("allowedRoutes.namespaces: a selector goes with from: Selector, and only with it")
        return self


class AllowedRoutes(IstioModel):
    namespaces: RouteNamespaces | None = None
    kinds: list[RouteGroupKind] | None = Field(default=None, max_length=8)


class Listener(IstioModel):
    name: SectionName
    hostname: Hostname | None = None
    port: PortNumber
    protocol: Literal["HTTP", "HTTPS", "TLS", "TCP", "UDP"]
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes | None = None

    @model_validator(mode="after")
    def _tls_and_hostname_fit_protocol(self) -> Listener:
        where = f"listener {self.name!r}"
        if self.protocol in ("HTTP", "TCP", "UDP") and self.tls is not None:
            raise ValueError(f"{where}: tls must not be set for protocol {self.protocol}")
        if self.protocol in ("HTTPS", "TLS") and self.tls is None:
            raise ValueError(f"{where}: protocol {self.protocol} needs tls")
        if self.protocol == "HTTPS" and self.tls is not None and self.tls.mode == "Passthrough":
            raise ValueError(f"{where}: HTTPS terminates TLS; for Passthrough use protocol TLS")
        if self.protocol in ("TCP", "UDP") and self.hostname is not None:
            raise ValueError(f"{where}: hostname must not be set for protocol {self.protocol}")
        return self


class GatewaySpecAddress(IstioModel):
    # Istio reads a Hostname address as the Service of an existing gateway deployment to program (its "manual
    # deployment"), instead of deploying a gateway of its own.
    type: Literal["IPAddress", "Hostname"] | None = None
    value: str = Field(min_length=1, max_length=253)


class GatewaySpec(IstioModel):
    gateway_class_name: ObjectName
    addresses: list[GatewaySpecAddress] | None = Field(default=None, max_length=16)
    listeners: list[Listener] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _listeners_distinct(self) -> GatewaySpec:
        names = _duplicates([listener.name for listener in self.listeners])
        if names:
            raise ValueError(f"listener names must be unique within the Gateway: {names} repeated")
        endpoints = Counter((lst.port, lst.protocol, lst.hostname) for lst in self.listeners)
        clashes = sorted((p, proto, h or "") for (p, proto, h), n in endpoints.items() if n > 1)
        if clashes:
            raise ValueError(f"listeners repeat a port, protocol and hostname: {clashes}")
        return self


class Gateway(IstioObject):
    api_version: ClassVar[str] = GATEWAY_API
    kind: ClassVar[str] = "Gateway"
    spec: GatewaySpec


# --- HTTPRoute -------------------------------------------------------------------------------------------------------


class ParentReference(IstioModel):
    group: Group | None = None
    kind: Kind | None = None
    namespace: DnsLabel | None = None
    name: ObjectName
    section_name: SectionName | None = None
    port: PortNumber | None = None

    @property
    def parent(self) -> tuple[str, str, str, str]:
        return (
            self.group if self.group is not None else "gateway.networking.k8s.io",
            self.kind or "Gateway",
            self.namespace or "",
            self.name,
        )


class HTTPPathMatch(IstioModel):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] | None = None
    value: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _absolute_path(self) -> HTTPPathMatch:
        # Part of the CRD's CEL rules for Exact and PathPrefix (the default type).
        if self.type != "RegularExpression" and self.value is not None:
            if not self.value.startswith("/") or "//" in self.value:
                raise ValueError(f"path {self.value!r}: an Exact or PathPrefix match is an absolute path without '//'")
        return self


class HTTPHeaderMatch(IstioModel):
    type: Literal["Exact", "RegularExpression"] | None = None
    name: HeaderName
    value: str = Field(min_length=1, max_length=4096)


class HTTPQueryParamMatch(IstioModel):
    type: Literal["Exact", "RegularExpression"] | None = None
    name: HeaderName
    value: str = Field(min_length=1, max_length=1024)


class HTTPRouteMatch(IstioModel):
    path: HTTPPathMatch | None = None
    headers: list[HTTPHeaderMatch] | None = Field(default=None, max_length=16)
    query_params: list[HTTPQueryParamMatch] | None = Field(default=None, max_length=16)
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] | None = None

    @model_validator(mode="after")
    def _names_once(self) -> HTTPRouteMatch:
        # Both lists are maps keyed by name: the API server refuses a name twice.
        for field, items in (("headers", self.headers), ("queryParams", self.query_params)):
            repeated = _duplicates([i.name for i in items or []])
            if repeated:
                raise ValueError(f"match {field}: {repeated} named more than once")
        return self


class BackendObjectReference(IstioModel):
    group: Group | None = None
    kind: Kind | None = None
    name: ObjectName
    namespace: DnsLabel | None = None
    port: PortNumber | None = None

    @model_validator(mode="after")
    def _kind_group_port(self) -> BackendObjectReference:
        group, kind = self.group or "", self.kind or "Service"
        where = f"backendRef {self.name!r}"
        if group == "" and kind == "Service" and self.port is None:
            raise ValueError(f"{where}: a Service reference needs a port (the CRD's rule)")
        if kind == "InferencePool":
            if group != INFERENCE_GROUP:
                hint = " (the alpha group; v1 pools are in the v1 group)" if group == INFERENCE_ALPHA_GROUP else ""
                raise ValueError(f"{where}: an InferencePool is in group {INFERENCE_GROUP!r}, not {group!r}{hint}")
            # The pool's targetPorts decide where requests go; a port here is ignored (the Inference Extension's
            # conformance test InferencePoolHTTPRoutePortValidation routes with a mismatched one).
            if self.port is not None:
                raise ValueError(f"{where}: leave the port out of an InferencePool reference; its targetPorts decide")
        elif group == INFERENCE_GROUP:
            raise ValueError(f"{where}: group {INFERENCE_GROUP!r} serves kind InferencePool, not {kind!r}")
        return self

    @property
    def target(self) -> tuple[str, str, str, str, int | None]:
        return (self.group or "", self.kind or "Service", self.namespace or "", self.name, self.port)


class HTTPHeader(IstioModel):
    name: HeaderName
    value: str = Field(min_length=1, max_length=4096)


class HTTPHeaderFilter(IstioModel):
    set: list[HTTPHeader] | None = Field(default=None, max_length=16)
    add: list[HTTPHeader] | None = Field(default=None, max_length=16)
    remove: list[str] | None = Field(default=None, max_length=16)

    @model_validator(mode="after")
    def _names_once(self) -> HTTPHeaderFilter:
        for field, names in (
            ("set", [h.name for h in self.set or []]),
            ("add", [h.name for h in self.add or []]),
            ("remove", list(self.remove or [])),
        ):
            repeated = _duplicates(names)
            if repeated:
                raise ValueError(f"header filter {field}: {repeated} named more than once")
        return self


class Fraction(IstioModel):
    numerator: int = Field(ge=0)
    denominator: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _not_over_one(self) -> Fraction:
        if self.numerator > (self.denominator if self.denominator is not None else 100):
            raise ValueError("mirror fraction: the numerator must not exceed the denominator (default 100)")
        return self


class HTTPRequestMirrorFilter(IstioModel):
    backend_ref: BackendObjectReference
    percent: int | None = Field(default=None, ge=0, le=100)
    fraction: Fraction | None = None

    @model_validator(mode="after")
    def _one_share(self) -> HTTPRequestMirrorFilter:
        if self.percent is not None and self.fraction is not None:
            raise ValueError("a RequestMirror filter sets percent or fraction, not both")
        return self


FilterType = Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror"]
_FILTER_FIELDS: dict[str, str] = {
    "RequestHeaderModifier": "request_header_modifier",
    "ResponseHeaderModifier": "response_header_modifier",
    "RequestMirror": "request_mirror",
}


class HTTPRouteFilter(IstioModel):
    type: FilterType
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None

    @model_validator(mode="after")
    def _body_matches_type(self) -> HTTPRouteFilter:
        # The CRD's CEL rules: the field named by the type is set, and no other.
        present = sorted(t for t, field in _FILTER_FIELDS.items() if getattr(self, field) is not None)
        if present != [self.type]:
            raise ValueError(f"a {self.type} filter sets its own field only; it sets those of {present or 'none'}")
        return self


class HTTPBackendRef(BackendObjectReference):
    # Proportional, not a percentage: weight / sum of the rule's weights; 0 sends nothing.
    weight: int | None = Field(default=None, ge=0, le=1_000_000)


class HTTPRouteTimeouts(IstioModel):
    request: GatewayDuration | None = None
    backend_request: GatewayDuration | None = None

    @model_validator(mode="after")
    def _backend_within_request(self) -> HTTPRouteTimeouts:
        # The CRD's rule; a request timeout of 0s means none.
        if self.request and self.backend_request and duration_seconds(self.request) > 0:
            if duration_seconds(self.backend_request) > duration_seconds(self.request):
                raise ValueError("timeouts: backendRequest cannot be longer than request")
        return self


class HTTPRouteRule(IstioModel):
    matches: list[HTTPRouteMatch] | None = Field(default=None, max_length=64)
    filters: list[HTTPRouteFilter] | None = Field(default=None, max_length=16)
    # A rule without backends forwards nothing and answers 500 (no filter here sends a response of its own).
    backend_refs: list[HTTPBackendRef] = Field(min_length=1, max_length=16)
    timeouts: HTTPRouteTimeouts | None = None

    @model_validator(mode="after")
    def _filters_and_weights(self) -> HTTPRouteRule:
        types = [f.type for f in self.filters or []]
        repeated = _duplicates([t for t in types if t != "RequestMirror"])
        if repeated:
            raise ValueError(f"rule filters: {repeated} cannot be repeated")
        weights = [1 if b.weight is None else b.weight for b in self.backend_refs]
        if sum(weights) == 0:
            raise ValueError(f"rule backendRefs: every weight is 0 {weights}, so no request is forwarded")
        served = {b.target for b in self.backend_refs}
        for mirror in (f.request_mirror for f in self.filters or [] if f.request_mirror):
            # Every mirrored request reaches the same replicas twice, and the model servers do the work twice.
            if mirror.backend_ref.target in served:
                raise ValueError(f"RequestMirror to {mirror.backend_ref.name!r}, which this rule already routes to")
        return self


class HTTPRouteSpec(IstioModel):
    # A route without parents attaches to no Gateway or Service and serves nothing.
    parent_refs: list[ParentReference] = Field(min_length=1, max_length=32)
    hostnames: list[Hostname] | None = Field(default=None, max_length=16)
    rules: list[HTTPRouteRule] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _parents_and_matches(self) -> HTTPRouteSpec:
        # The CRD's rules: two references to one parent each name a section, and different ones.
        by_parent: dict[tuple[str, str, str, str], list[str | None]] = {}
        for ref in self.parent_refs:
            by_parent.setdefault(ref.parent, []).append(ref.section_name)
        for (_, kind, _, name), sections in by_parent.items():
            if len(sections) > 1 and (None in sections or len(set(sections)) != len(sections)):
                raise ValueError(f"parentRefs: {kind} {name!r} {len(sections)} times, each needs its own sectionName")
        if sum(len(r.matches or []) for r in self.rules) > 128:
            raise ValueError("rules: more than 128 matches in all")
        return self


class HTTPRoute(IstioObject):
    api_version: ClassVar[str] = GATEWAY_API
    kind: ClassVar[str] = "HTTPRoute"
    spec: HTTPRouteSpec


# --- InferencePool ---------------------------------------------------------------------------------------------------


class Port(IstioModel):
    number: PortNumber


class EndpointPickerRef(IstioModel):
    group: Group | None = None
    kind: Kind | None = None
    name: ObjectName
    port: Port | None = None
    # FailClose (the default) refuses requests while the picker is down; FailOpen routes them without it.
    failure_mode: Literal["FailOpen", "FailClose"] | None = None

    @model_validator(mode="after")
    def _service_has_port(self) -> EndpointPickerRef:
        if (self.kind or "Service") == "Service" and self.port is None:
            raise ValueError(f"endpointPickerRef {self.name!r}: a Service picker needs a port (the CRD's rule)")
        return self


class InferencePoolSpec(IstioModel):
    selector: WorkloadSelector
    # One port in v1.0.x; v1.1.0 raised the limit to 8.
    target_ports: list[Port] = Field(min_length=1, max_length=1)
    endpoint_picker_ref: EndpointPickerRef


class InferencePool(IstioObject):
    api_version: ClassVar[str] = INFERENCE
    kind: ClassVar[str] = "InferencePool"
    spec: InferencePoolSpec
