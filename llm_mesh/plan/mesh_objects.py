"""The mesh-wide Istio objects the mesh's install declares: the ingress Gateway, its rate limit, the default
Telemetry."""

from __future__ import annotations

from llm_mesh.mesh.base import ObjectMeta
from llm_mesh.mesh.networking import (
    EnvoyConfigObjectMatch,
    EnvoyConfigObjectPatch,
    EnvoyFilter,
    EnvoyFilterSpec,
    FilterChainMatch,
    FilterMatch,
    Gateway,
    GatewaySpec,
    ListenerMatch,
    Patch,
    Port,
    ProxySelector,
    Server,
    ServerTLSSettings,
    SubFilterMatch,
)
from llm_mesh.mesh.telemetry import AccessLogging, ProviderRef, Telemetry, TelemetrySpec, Tracing
from llm_mesh.plan.config import GatewayConfig, ObservabilityConfig
from llm_mesh.plan.istio_values import TRACING_PROVIDER, serving_port
from llm_mesh.plan.observability import span_tags
from llm_mesh.plan.topology import GATEWAY_NAME, GATEWAY_SELECTOR, INGRESS_NAMESPACE, ISTIO_NAMESPACE


def gateway_object(gateway: GatewayConfig) -> Gateway:
    """One server, on the port the load balancer publishes (istio_values.serving_port)."""
    number, name = serving_port(gateway)
    hosts = [f"*.{gateway.domain}"]
    if gateway.tls_credential_name:
        server = Server(
            name=name,
            port=Port(number=number, name=name, protocol="HTTPS"),
            hosts=hosts,
            tls=ServerTLSSettings(mode="SIMPLE", credential_name=gateway.tls_credential_name),
        )
    else:
        server = Server(name=name, port=Port(number=number, name=name, protocol="HTTP"), hosts=hosts)
    return Gateway(
        metadata=ObjectMeta(name=GATEWAY_NAME, namespace=INGRESS_NAMESPACE),
        spec=GatewaySpec(selector=GATEWAY_SELECTOR, servers=[server]),
    )


def gateway_rate_limit_object(gateway: GatewayConfig) -> EnvoyFilter | None:
    """Envoy's local rate limit on the gateway pods, before the router: a token bucket per pod, refilled each
    second, 429 when empty. Enabled and enforced for every request (Envoy's default for both is 0%)."""
    limit = gateway.rate_limit
    if limit is None:
        return None
    every_request = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    config = {
        "stat_prefix": "gateway_rate_limit",
        "token_bucket": {
            "max_tokens": limit.burst_per_pod,
            "tokens_per_fill": limit.requests_per_second_per_pod,
            "fill_interval": "1s",
        },
        "filter_enabled": {**every_request, "runtime_key": "gateway_rate_limit_enabled"},
        "filter_enforced": {**every_request, "runtime_key": "gateway_rate_limit_enforced"},
        "response_headers_to_add": [
            {
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                "header": {"key": "x-llm-mesh-rate-limited", "value": "true"},
            }
        ],
    }
    http_filter = EnvoyConfigObjectPatch(
        apply_to="HTTP_FILTER",
        match=EnvoyConfigObjectMatch(
            context="GATEWAY",
            listener=ListenerMatch(
                filter_chain=FilterChainMatch(
                    filter=FilterMatch(
                        name="envoy.filters.network.http_connection_manager",
                        sub_filter=SubFilterMatch(name="envoy.filters.http.router"),
                    )
                )
            ),
        ),
        patch=Patch(
            operation="INSERT_BEFORE",
            value={
                "name": "envoy.filters.http.local_ratelimit",
                "typed_config": {
                    "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                    "type_url": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                    "value": config,
                },
            },
        ),
    )
    return EnvoyFilter(
        metadata=ObjectMeta(name="gateway-rate-limit", namespace=INGRESS_NAMESPACE),
        spec=EnvoyFilterSpec(workload_selector=ProxySelector(labels=GATEWAY_SELECTOR), config_patches=[http_filter]),
    )


def telemetry_object(observability: ObservabilityConfig, environment: str) -> Telemetry:
    return Telemetry(
        metadata=ObjectMeta(name="mesh-default", namespace=ISTIO_NAMESPACE),
        spec=TelemetrySpec(
            tracing=[
                Tracing(
                    providers=[ProviderRef(name=TRACING_PROVIDER)],
                    random_sampling_percentage=observability.tracing_sampling_percent,
                    custom_tags=span_tags(environment),
                )
            ],
            access_logging=[
                AccessLogging(providers=[ProviderRef(name="envoy")], disabled=not observability.access_logs)
            ],
        ),
    )
