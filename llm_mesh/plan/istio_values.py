"""The Helm values llm-mesh gives Istio's charts: base, istio-cni, istiod (with its meshConfig) and the gateway."""

from __future__ import annotations

import json
from typing import Any

from llm_mesh.plan.config import GatewayConfig, ObservabilityConfig
from llm_mesh.plan.observability import access_log_format
from llm_mesh.plan.topology import GATEWAY_SELECTOR, SAFE_TO_EVICT, serving_port

TRACING_PROVIDER = "otel-tracing"
# istiod patches its validating webhook's failurePolicy to Fail once it serves; rendering Fail from the start
# keeps a second `pulumi up` free of drift (istio/istio#57643, pulumi-kubernetes#2210).
WEBHOOK_VALUES = {"base": {"validationFailurePolicy": "Fail"}}


def base_values(revision: str) -> dict[str, Any]:
    """The base chart: Istio's CRDs, and the webhook of the revision that serves namespaces labelled `default`."""
    return {"defaultRevision": revision, **WEBHOOK_VALUES}


def cni_values(revision: str, hub: str) -> dict[str, Any]:
    return {"revision": revision, "global": {"platform": "gke", "hub": hub}}


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


# istiod's switch for InferencePool backends of HTTPRoutes (the Gateway API Inference Extension); off by default.
INFERENCE_EXTENSION_FLAG = "ENABLE_GATEWAY_API_INFERENCE_EXTENSION"


def istiod_values(
    revision: str, observability: ObservabilityConfig, project: str, hub: str, inference_pools: bool = False
) -> dict[str, Any]:
    """istiod, and through its injection templates every proxy's image, the gateway's included, from `hub`; with
    `inference_pools`, routing to InferencePools through their endpoint pickers."""
    env = {"ENABLE_NATIVE_SIDECARS": "true"}
    if inference_pools:
        env[INFERENCE_EXTENSION_FLAG] = "true"
    return {
        "revision": revision,
        "global": {"platform": "gke", "hub": hub},
        "pilot": {
            "cni": {"enabled": True},
            "autoscaleMin": 2,
            # Native sidecars (GKE 1.29+): the proxy starts before init containers such as the GCS FUSE mount.
            "env": env,
        },
        "meshConfig": mesh_config(observability, project),
        **WEBHOOK_VALUES,
    }


# Istio adds the inference extension's ext_proc filter only to gateway pods carrying the name of a Gateway API
# Gateway that has an InferencePool attached (pilot's listener builder): a manual deployment must label its pods.
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


def gateway_values(
    revision: str, gateway: GatewayConfig, drain_seconds: int, inference_gateway: str | None = None
) -> dict[str, Any]:
    # A gateway pod that stops (its autoscaler scaling down, a node upgrade) carries generations that stream for
    # up to the route timeout: it drains that long (the chart's default is 30 s, the proxy's 5 s) and exits as
    # soon as no connection is left. The gateway is a standalone proxy, so its own drain settings apply.
    drain = {
        "terminationDrainDuration": f"{drain_seconds}s",
        "proxyMetadata": {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true"},
    }
    return {
        "revision": revision,
        # Extra keys label the pods (the chart's Service selects on app and istio only).
        "labels": {**GATEWAY_SELECTOR, **({GATEWAY_NAME_LABEL: inference_gateway} if inference_gateway else {})},
        "autoscaling": {
            "enabled": True,
            "minReplicas": gateway.min_replicas,
            "maxReplicas": gateway.max_replicas,
            "targetCPUUtilizationPercentage": 80,
            # One quiet minute does not take a gateway pod away: each removal drains for minutes.
            "autoscaleBehavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
        },
        "terminationGracePeriodSeconds": drain_seconds,
        "podAnnotations": {
            "proxy.istio.io/config": json.dumps(drain, sort_keys=True),
            # The cluster autoscaler gives an evicted pod at most 10 minutes, less than the drain above: it does
            # not take a gateway pod's node away (a node upgrade still drains it with its whole grace period).
            SAFE_TO_EVICT: "false",
        },
        # One node or one zone lost takes one gateway pod, not both (when capacity allows: never blocks).
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": GATEWAY_SELECTOR},
            }
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ],
        "podDisruptionBudget": {"minAvailable": 1},
        "service": gateway_service(gateway),
    }


def gateway_service(gateway: GatewayConfig) -> dict[str, Any]:
    """The gateway's load balancer: on the VPC only unless exposure is public, limited to sourceRanges, and
    publishing the serving port alone (the chart's default adds 80 and the status port 15021)."""
    number, name = serving_port(gateway)
    service: dict[str, Any] = {
        "type": "LoadBalancer",
        "ports": [{"name": name, "port": number, "protocol": "TCP", "targetPort": number}],
    }
    if gateway.exposure == "internal":
        service["annotations"] = {INTERNAL_LB_ANNOTATION: "Internal"}
    if gateway.source_ranges:
        service["loadBalancerSourceRanges"] = list(gateway.source_ranges)
    return service


def merged(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Helm's own rule for values files: maps merge key by key, anything else is replaced."""
    result = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result
