"""The stack config's `istio`, `gateway`, `routing` and `security` sections: the mesh and who may call through it."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from llm_mesh.mesh.networking import RETRY_CONDITIONS
from llm_mesh.plan.config.fields import CIDR, ConfigModel, Duration, max_not_below_min

IstioChart = Literal["base", "cni", "istiod", "gateway"]
_PRINCIPAL = re.compile(r"^[a-z0-9.-]+/ns/[a-z0-9]([-a-z0-9]*[a-z0-9])?/sa/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _retry_on(value: str) -> str:
    unknown = sorted({c.strip() for c in value.split(",")} - RETRY_CONDITIONS)
    if unknown:
        raise ValueError(f"unknown retry condition(s) {unknown}; use Envoy's, e.g. 'connect-failure,refused-stream'")
    return value


class IstioConfig(ConfigModel):
    version: str = Field(default="1.31.1", pattern=r"^1\.\d+\.\d+$")
    # During a control-plane upgrade: the version whose istiod keeps serving not-yet-restarted workloads.
    previous_version: str | None = Field(default=None, pattern=r"^1\.\d+\.\d+$")
    chart_repository: str = "https://blob.istio.io/istio-release/charts"
    # Helm values merged over llm-mesh's own, per chart (e.g. {istiod: {pilot: {resources: ...}}}).
    values: dict[IstioChart, dict[str, Any]] = {}

    @property
    def revision(self) -> str:
        return revision_of(self.version)

    @property
    def previous_revision(self) -> str | None:
        return revision_of(self.previous_version) if self.previous_version else None

    @field_validator("previous_version")
    @classmethod
    def _previous_is_another_minor(cls, previous: str | None, info: ValidationInfo) -> str | None:
        current = info.data.get("version")
        if previous and current and revision_of(previous) == revision_of(current):
            raise ValueError(f"same revision as version {current!r}; a side-by-side upgrade needs another minor")
        return previous


def revision_of(version: str) -> str:
    """Istio revision name for a version: one control plane per minor ('1.31.1' -> '1-31')."""
    return "-".join(version.split(".")[:2])


class GatewayRateLimit(ConfigModel):
    # Envoy's local rate limit: each gateway pod keeps its own token bucket, so the gateway as a whole admits up
    # to this times its replicas. Requests over it get 429 before they reach a model.
    requests_per_second_per_pod: int = Field(ge=1)
    # Requests a pod admits at once after a quiet spell (the bucket's size); at least one second's worth.
    burst_per_pod: int = Field(ge=1)

    @field_validator("burst_per_pod")
    @classmethod
    def _burst_holds_a_second(cls, burst: int, info: ValidationInfo) -> int:
        rate = info.data.get("requests_per_second_per_pod")
        if rate is not None and burst < rate:
            raise ValueError(f"below requestsPerSecondPerPod ({rate}): the bucket could never hold a second's refill")
        return burst


class GatewayConfig(ConfigModel):
    # Each model is reachable at <model>.<domain> through the ingress gateway.
    domain: str = Field(default="llm.internal", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    # internal: a load balancer on the VPC only; public: an internet-facing one (prod then needs security.jwt
    # or sourceRanges, so that inference is never anonymous).
    exposure: Literal["internal", "public"] = "internal"
    # Client networks the load balancer admits (loadBalancerSourceRanges); empty: any (not in prod when public).
    source_ranges: list[Annotated[str, Field(pattern=CIDR)]] = []
    # Requests per second a gateway pod admits (required in prod when public); none: no limit.
    rate_limit: GatewayRateLimit | None = None
    # Kubernetes TLS secret in the gateway's namespace; none: plain HTTP on port 80 (not in prod).
    tls_credential_name: str | None = None
    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=5, ge=1)

    _max_not_below_min = max_not_below_min("Replicas")


class RoutingConfig(ConfigModel):
    # Long generations stream for minutes; the route timeout bounds a whole request.
    timeout: Duration = "600s"
    retry_attempts: int = Field(default=2, ge=0, le=10)
    # Connection-level failures only: a completion is expensive and not idempotent.
    retry_on: Annotated[str, AfterValidator(_retry_on)] = "connect-failure,refused-stream"
    canary_header: str = Field(default="x-llm-mesh-canary", pattern=r"^[a-z0-9-]+$")
    max_connections: int = Field(default=1024, ge=1)
    http1_max_pending_requests: int = Field(default=256, ge=1)
    max_requests_per_connection: int = Field(default=1000, ge=0)
    consecutive_5xx_errors: int = Field(default=5, ge=1, alias="consecutive5xxErrors")
    outlier_interval: Duration = "30s"
    base_ejection_time: Duration = "60s"
    max_ejection_percent: int = Field(default=50, ge=0, le=100)


class JwtConfig(ConfigModel):
    issuer: str = Field(min_length=1)
    jwks_uri: str = Field(pattern=r"^https://")
    audiences: list[str] = []


def _principal(value: str) -> str:
    if not _PRINCIPAL.match(value):
        raise ValueError("a principal looks like 'cluster.local/ns/<namespace>/sa/<service-account>' (no wildcards)")
    return value


class SecurityConfig(ConfigModel):
    # In-mesh principals allowed to call the inference API, besides the ingress gateway.
    callers: list[Annotated[str, AfterValidator(_principal)]] = []
    # false: the models are served inside the mesh only (to `callers`), not routed through the ingress gateway.
    allow_gateway: bool = True
    # Requests through the gateway must carry a JWT from this issuer.
    jwt: JwtConfig | None = None
