"""IstioMesh: Istio from its official Helm charts, revision-tagged, with the ingress gateway and mesh config."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.manifests import declare
from llm_mesh.mesh.base import ObjectMeta
from llm_mesh.mesh.networking import Gateway, GatewaySpec, Port, Server, ServerTLSSettings
from llm_mesh.mesh.telemetry import AccessLogging, ProviderRef, Telemetry, TelemetrySpec, Tracing
from llm_mesh.plan import inference
from llm_mesh.plan.config import GatewayConfig, IstioChart, IstioConfig, ObservabilityConfig, StackConfig
from llm_mesh.plan.observability import access_log_format, span_tags
from llm_mesh.plan.topology import (
    GATEWAY_NAME,
    GATEWAY_RELEASE,
    GATEWAY_SELECTOR,
    INGRESS_NAMESPACE,
    ISTIO_NAMESPACE,
    application_namespaces,
)

TRACING_PROVIDER = "otel-tracing"
# istiod patches its validating webhook's failurePolicy to Fail once it serves; rendering Fail from the start
# keeps a second `pulumi up` free of drift (istio/istio#57643, pulumi-kubernetes#2210).
WEBHOOK_VALUES = {"base": {"validationFailurePolicy": "Fail"}}


@dataclass(frozen=True)
class IstioMeshArgs:
    istio: IstioConfig
    gateway: GatewayConfig
    observability: ObservabilityConfig
    # The namespaces that get sidecars: the applications' and the trace collector's.
    application_namespaces: list[str]
    # How long a request through the gateway may still be running when a gateway pod is told to stop.
    drain_seconds: int
    # The project whose Cloud Trace each access log line links to, and the environment every span names.
    project: str
    environment: str

    @classmethod
    def from_config(cls, config: StackConfig) -> IstioMeshArgs:
        namespaces = [*application_namespaces(config), config.observability.collector_namespace]
        return cls(
            config.istio,
            config.gateway,
            config.observability,
            list(dict.fromkeys(namespaces)),
            inference.grace_period_seconds(config.routing),
            config.gcp.project,
            config.environment,
        )


def mesh_config(observability: ObservabilityConfig, project: str) -> dict[str, Any]:
    """istiod's meshConfig: JSON access logs to stdout, OpenTelemetry traces to the stack's collector, proxies up
    before apps, registry-only egress."""
    config: dict[str, Any] = {
        "defaultConfig": {"holdApplicationUntilProxyStarts": True},
        # Best effort, not a security boundary: a workload can still reach IPs it resolves itself.
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "enableTracing": True,
        "defaultProviders": {"tracing": [TRACING_PROVIDER]},
        "extensionProviders": [
            {
                "name": TRACING_PROVIDER,
                "opentelemetry": {
                    "service": observability.otel_collector_host,
                    "port": observability.otel_collector_port,
                },
            }
        ],
    }
    if observability.access_logs:
        # One JSON object per line: GKE's logging agent stores it as the entry's jsonPayload, which log queries,
        # log-based metrics and the trace link read field by field.
        config["accessLogFile"] = "/dev/stdout"
        config["accessLogEncoding"] = "JSON"
        config["accessLogFormat"] = json.dumps(access_log_format(project))
    return config


# GKE provisions an internal passthrough Network Load Balancer for a Service with this annotation.
INTERNAL_LB_ANNOTATION = "networking.gke.io/load-balancer-type"


def istiod_values(revision: str, observability: ObservabilityConfig, project: str) -> dict[str, Any]:
    return {
        "revision": revision,
        "global": {"platform": "gke"},
        "pilot": {
            "cni": {"enabled": True},
            "autoscaleMin": 2,
            # Native sidecars (GKE 1.29+): the proxy starts before init containers such as the GCS FUSE mount.
            "env": {"ENABLE_NATIVE_SIDECARS": "true"},
        },
        "meshConfig": mesh_config(observability, project),
        **WEBHOOK_VALUES,
    }


def gateway_values(revision: str, gateway: GatewayConfig, drain_seconds: int) -> dict[str, Any]:
    # A gateway pod that stops (its autoscaler scaling down, a node upgrade) carries generations that stream for
    # up to the route timeout: it drains that long (the chart's default is 30 s, the proxy's 5 s) and exits as
    # soon as no connection is left. The gateway is a standalone proxy, so its own drain settings apply.
    drain = {
        "terminationDrainDuration": f"{drain_seconds}s",
        "proxyMetadata": {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true"},
    }
    return {
        "revision": revision,
        "labels": GATEWAY_SELECTOR,
        "autoscaling": {
            "enabled": True,
            "minReplicas": gateway.min_replicas,
            "maxReplicas": gateway.max_replicas,
            "targetCPUUtilizationPercentage": 80,
            # One quiet minute does not take a gateway pod away: each removal drains for minutes.
            "autoscaleBehavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
        },
        "terminationGracePeriodSeconds": drain_seconds,
        "podAnnotations": {"proxy.istio.io/config": json.dumps(drain, sort_keys=True)},
        "podDisruptionBudget": {"minAvailable": 1},
        "service": gateway_service(gateway),
    }


def gateway_service(gateway: GatewayConfig) -> dict[str, Any]:
    """The gateway's load balancer: on the VPC only unless exposure is public, and limited to sourceRanges."""
    service: dict[str, Any] = {"type": "LoadBalancer"}
    if gateway.exposure == "internal":
        service["annotations"] = {INTERNAL_LB_ANNOTATION: "Internal"}
    if gateway.source_ranges:
        service["loadBalancerSourceRanges"] = list(gateway.source_ranges)
    return service


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


def merged(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Helm's own rule for values files: maps merge key by key, anything else is replaced."""
    result = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


class IstioMesh(pulumi.ComponentResource):
    """Charts base, istio-cni, istiod (one per revision), gateway; namespaces; the Gateway and Telemetry objects."""

    def __init__(self, name: str, args: IstioMeshArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:mesh:IstioMesh", name, None, opts)
        istio = args.istio
        revision = istio.revision
        child = pulumi.ResourceOptions(parent=self)
        repository = k8s.helm.v3.RepositoryOptsArgs(repo=istio.chart_repository)

        def namespace(ns: str, labels: dict[str, str]) -> k8s.core.v1.Namespace:
            return k8s.core.v1.Namespace(
                f"{name}-ns-{ns}", metadata=k8s.meta.v1.ObjectMetaArgs(name=ns, labels=labels), opts=child
            )

        def release(
            release_name: str,
            chart: IstioChart,
            ns: str,
            values: dict[str, Any],
            after: list[pulumi.Resource],
            version: str = istio.version,
        ) -> k8s.helm.v3.Release:
            return k8s.helm.v3.Release(
                f"{name}-{release_name}",
                name=release_name,
                chart=chart,
                version=version,
                namespace=ns,
                repository_opts=repository,
                values=merged(values, istio.values.get(chart, {})),
                max_history=5,
                timeout=600,
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )

        system = namespace(ISTIO_NAMESPACE, {})
        ingress = namespace(INGRESS_NAMESPACE, {"istio.io/rev": revision})
        # Revision labels, not istio-injection=enabled: which control plane injects is chosen per namespace.
        self.namespaces = {ns: namespace(ns, {"istio.io/rev": revision}) for ns in args.application_namespaces}

        base = release("istio-base", "base", ISTIO_NAMESPACE, {"defaultRevision": revision, **WEBHOOK_VALUES}, [system])
        cni = release(
            "istio-cni", "cni", ISTIO_NAMESPACE, {"revision": revision, "global": {"platform": "gke"}}, [base]
        )
        self.istiod = release(
            f"istiod-{revision}",
            "istiod",
            ISTIO_NAMESPACE,
            istiod_values(revision, args.observability, args.project),
            [base, cni],
        )
        if istio.previous_version and istio.previous_revision:
            previous = istio.previous_revision
            values = istiod_values(previous, args.observability, args.project)
            release(f"istiod-{previous}", "istiod", ISTIO_NAMESPACE, values, [base, cni], istio.previous_version)
        self.gateway_release = release(
            GATEWAY_RELEASE,
            "gateway",
            INGRESS_NAMESPACE,
            gateway_values(revision, args.gateway, args.drain_seconds),
            [ingress, self.istiod],
        )
        # Istio's objects are validated by istiod's webhook: declare them once it runs.
        after_istiod = pulumi.ResourceOptions(parent=self, depends_on=[self.istiod])
        declare(gateway_object(args.gateway), after_istiod)
        declare(telemetry_object(args.observability, args.environment), after_istiod)
        self.register_outputs({"revision": revision})
