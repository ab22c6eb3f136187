"""The mesh-wide Istio objects the mesh's install declares: the ingress Gateway and the default Telemetry."""

from __future__ import annotations

from llm_mesh.mesh.base import ObjectMeta
from llm_mesh.mesh.networking import Gateway, GatewaySpec, Port, Server, ServerTLSSettings
from llm_mesh.mesh.telemetry import AccessLogging, ProviderRef, Telemetry, TelemetrySpec, Tracing
from llm_mesh.plan.config import GatewayConfig, ObservabilityConfig
from llm_mesh.plan.istio_values import TRACING_PROVIDER
from llm_mesh.plan.observability import span_tags
from llm_mesh.plan.topology import GATEWAY_NAME, GATEWAY_SELECTOR, INGRESS_NAMESPACE, ISTIO_NAMESPACE


def gateway_object(gateway: GatewayConfig) -> Gateway:
    hosts = [f"*.{gateway.domain}"]
    if gateway.tls_credential_name:
        servers = [
            Server(
                name="https",
                port=Port(number=443, name="https", protocol="HTTPS"),
                hosts=hosts,
                tls=ServerTLSSettings(mode="SIMPLE", credential_name=gateway.tls_credential_name),
            ),
            Server(
                name="http-redirect",
                port=Port(number=80, name="http", protocol="HTTP"),
                hosts=hosts,
                tls=ServerTLSSettings(https_redirect=True),
            ),
        ]
    else:
        servers = [Server(name="http", port=Port(number=80, name="http", protocol="HTTP"), hosts=hosts)]
    return Gateway(
        metadata=ObjectMeta(name=GATEWAY_NAME, namespace=INGRESS_NAMESPACE),
        spec=GatewaySpec(selector=GATEWAY_SELECTOR, servers=servers),
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
