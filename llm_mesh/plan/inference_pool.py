"""Inference-aware routing, for models with routing.balancing: inference-pool (the Gateway API Inference Extension).

The request path: client -> the ingress gateway's pods (the same load balancer, TLS, rate limit and JWT as every
other model) -> the Gateway API `Gateway` those pods also serve -> the model's HTTPRoute -> an InferencePool per
track -> the gateway asks that pool's endpoint picker (ext_proc, gRPC) which pod serves the request -> the pod.

Decided here: the Gateway's listeners, the HTTPRoute (weighted pools, mirror), the pools, and the names and ports
each pool's endpoint picker answers on. The picker's Deployment is declared by components/endpoint_picker.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_mesh.mesh.base import ObjectMeta, WorkloadSelector
from llm_mesh.mesh.gateway_api import (
    INFERENCE_GROUP,
    AllowedRoutes,
    BackendObjectReference,
    EndpointPickerRef,
    Fraction,
    Gateway,
    GatewaySpec,
    GatewaySpecAddress,
    GatewayTLSConfig,
    HTTPBackendRef,
    HTTPPathMatch,
    HTTPRequestMirrorFilter,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteMatch,
    HTTPRouteRule,
    HTTPRouteSpec,
    HTTPRouteTimeouts,
    InferencePool,
    InferencePoolSpec,
    Listener,
    NamespaceSelector,
    ParentReference,
    Port,
    RouteNamespaces,
    SecretObjectReference,
)
from llm_mesh.plan import queries
from llm_mesh.plan.config import GatewayConfig, RoutingConfig, StackConfig
from llm_mesh.plan.topology import (
    GATEWAY_RELEASE,
    INGRESS_NAMESPACE,
    MERGED_METRICS_PORT,
    SERVER_PORT,
    ModelNames,
    model_names,
    principal,
    serving_port,
)

# The Gateway API Gateway beside Istio's own `llm-gateway`, served by the same pods.
POOL_GATEWAY_NAME = "llm-inference"
GATEWAY_CLASS = "istio"
# The endpoint picker's ports (the Inference Extension's defaults): ext_proc, its gRPC health service, metrics.
PICKER_PORT = 9002
PICKER_HEALTH_PORT = 9003
PICKER_METRICS_PORT = 9090
# How often a picker reads each server's gauges: well inside its staleness threshold (2 s) at a fifth of its default.
METRICS_REFRESH = "200ms"
# The gRPC method the gateway calls on the picker: Envoy's external processing stream.
EXT_PROC_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
# Each namespace's own name, as Kubernetes labels every namespace (1.22+): what a listener admits routes from.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def gateway_service_host() -> str:
    """The Service of the ingress gateway's chart (named after its release), which the Gateway API Gateway reuses."""
    return f"{GATEWAY_RELEASE}.{INGRESS_NAMESPACE}.svc.cluster.local"


@dataclass(frozen=True)
class PoolNames:
    """One track's InferencePool of a model and the endpoint picker that chooses within it."""

    names: ModelNames
    track: str

    @property
    def pool(self) -> str:
        return f"{self.names.model.name}-{self.track}"

    @property
    def picker(self) -> str:
        """The picker's Deployment, Service and service account."""
        return f"{self.pool}-epp"

    @property
    def namespace(self) -> str:
        return self.names.namespace

    @property
    def picker_labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": self.picker,
            "app.kubernetes.io/component": "endpoint-picker",
            "app.kubernetes.io/part-of": "llm-mesh",
        }

    @property
    def picker_principal(self) -> str:
        return principal(self.namespace, self.picker)

    @property
    def picker_host(self) -> str:
        return f"{self.picker}.{self.namespace}.svc.cluster.local"


def pooled_names(config: StackConfig) -> list[ModelNames]:
    return [names for names in model_names(config) if names.model.pooled]


def pools_of(names: ModelNames) -> list[PoolNames]:
    """A pool per track the route splits over (a canary at weight 0 keeps its pool and its place in the route: see
    route_weights). The mirror has none: Istio 1.31 sends a mirrored request past the picker, and builds
    no backend for a pool that only a RequestMirror names (the copy would be dropped); it gets a Service instead."""
    return [PoolNames(names, track) for track in names.tracks if track != "mirror"]


def mirror_service(names: ModelNames) -> str | None:
    """The Service of the mirror track's pods, which the route's RequestMirror copies requests to."""
    return f"{names.service}-mirror" if names.model.mirror is not None else None


def all_pools(config: StackConfig) -> list[PoolNames]:
    return [pool for names in pooled_names(config) for pool in pools_of(names)]


def inference_gateway(config: StackConfig) -> Gateway | None:
    """A listener per pooled model, on the serving port of the ingress gateway's Service, for that model's host
    only: Istio's own Gateway keeps `*.<domain>` for the other models, and the more specific name wins."""
    pooled = pooled_names(config)
    if not pooled:
        return None
    return Gateway(
        metadata=ObjectMeta(name=POOL_GATEWAY_NAME, namespace=INGRESS_NAMESPACE),
        spec=GatewaySpec(
            gateway_class_name=GATEWAY_CLASS,
            # Program the chart's gateway pods instead of deploying new ones: one load balancer, one set of
            # source ranges, rate limit and JWT rules for every model.
            addresses=[GatewaySpecAddress(type="Hostname", value=gateway_service_host())],
            listeners=[_listener(names, config.gateway) for names in pooled],
        ),
    )


def _listener(names: ModelNames, gateway: GatewayConfig) -> Listener:
    number, _ = serving_port(gateway)
    tls = (
        GatewayTLSConfig(mode="Terminate", certificate_refs=[SecretObjectReference(name=gateway.tls_credential_name)])
        if gateway.tls_credential_name
        else None
    )
    return Listener(
        name=names.model.name,
        hostname=names.external_host,
        port=number,
        protocol="HTTPS" if tls else "HTTP",
        tls=tls,
        # Routes from the model's namespace only: no other namespace's HTTPRoute can claim the model's host.
        allowed_routes=AllowedRoutes(
            namespaces=RouteNamespaces(
                from_="Selector", selector=NamespaceSelector(match_labels={NAMESPACE_NAME_LABEL: names.namespace})
            )
        ),
    )


def _pool_ref(pool: PoolNames, weight: int | None = None) -> HTTPBackendRef:
    return HTTPBackendRef(group=INFERENCE_GROUP, kind="InferencePool", name=pool.pool, weight=weight)


def route_weights(names: ModelNames) -> dict[str, int]:
    """The tracks the route names, by weight: the mesh route's split, canary first and stable last.

    A canary at weight 0 stays in the route at weight 0: Istio builds a pool's shadow Service for any pool an accepted
    route names (whatever its weight), and routes no request to a weight-0 backend, so the first step finds the
    canary's backend ready instead of missing for the seconds istiod takes. Stable last: an Istio without the fix of
    istio/istio#61594 runs the last backend's picker for the whole rule, and stable takes most of the traffic.
    """
    model = names.model
    if model.canary is None:
        return {"stable": 100}
    return {"canary": model.canary_weight, "stable": 100 - model.canary_weight}


def http_route(names: ModelNames, routing: RoutingConfig) -> HTTPRoute:
    """Every request for the model's host, split over its pools by weight, copied to the mirror's Service."""
    model = names.model
    weights = route_weights(names)
    refs = [
        _pool_ref(PoolNames(names, track), weight if len(weights) > 1 else None) for track, weight in weights.items()
    ]
    filters = None
    mirror_to = mirror_service(names)
    if model.mirror is not None and mirror_to is not None:
        target = BackendObjectReference(group="", kind="Service", name=mirror_to, port=SERVER_PORT)
        mirror = HTTPRequestMirrorFilter(backend_ref=target, **_share(model.mirror.percentage))
        filters = [HTTPRouteFilter(type="RequestMirror", request_mirror=mirror)]
    rule = HTTPRouteRule(
        matches=[HTTPRouteMatch(path=HTTPPathMatch(type="PathPrefix", value="/"))],
        filters=filters,
        backend_refs=refs,
        # The whole request, streaming included, as the mesh route bounds it.
        timeouts=HTTPRouteTimeouts(request=routing.timeout),
    )
    return HTTPRoute(
        metadata=ObjectMeta(name=names.service, namespace=names.namespace),
        spec=HTTPRouteSpec(
            parent_refs=[
                ParentReference(
                    group="gateway.networking.k8s.io",
                    kind="Gateway",
                    namespace=INGRESS_NAMESPACE,
                    name=POOL_GATEWAY_NAME,
                    section_name=names.model.name,
                )
            ],
            hostnames=[names.external_host],
            rules=[rule],
        ),
    )


def _share(percentage: float) -> dict[str, object]:
    """The config's percentage as the filter's: a whole percent, or a fraction in ten-thousandths."""
    if float(percentage).is_integer():
        return {"percent": int(percentage)}
    return {"fraction": Fraction(numerator=round(percentage * 100), denominator=10_000)}


def inference_pool(pool: PoolNames) -> InferencePool:
    """The track's server pods, on the server's port, chosen by the track's picker; with the picker down the gateway
    refuses requests (FailClose) rather than sending them to a replica it did not choose."""
    return InferencePool(
        metadata=ObjectMeta(name=pool.pool, namespace=pool.namespace),
        spec=InferencePoolSpec(
            selector=WorkloadSelector(match_labels=pool.names.labels(pool.track)),
            target_ports=[Port(number=SERVER_PORT)],
            endpoint_picker_ref=EndpointPickerRef(
                group="", kind="Service", name=pool.picker, port=Port(number=PICKER_PORT), failure_mode="FailClose"
            ),
        ),
    )


# The picker's default scorers (the Inference Extension's chart, v1.0.2): queue depth, KV-cache use, and prefix-cache
# affinity (requests sharing a prompt prefix go where its KV blocks are likely cached).
PICKER_CONFIG = """apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: kv-cache-utilization-scorer
  - pluginRef: prefix-cache-scorer
"""


def picker_args(pool: PoolNames) -> list[str]:
    """The picker's command line, each flag for a reason the runtime gives:

    - plaintext gRPC: the pod's sidecar terminates the gateway's mTLS (the picker's own serving is a self-signed
      certificate that a gateway could only skip verifying);
    - the servers' metrics from the sidecar agent's merged endpoint, which is outside mTLS as managed Prometheus
      reads it (the server's own port admits mTLS only, and a pod-IP request through the picker's sidecar would
      find no route under REGISTRY_ONLY);
    - those metrics five times a second, not the picker's default twenty: the agent's endpoint renders the proxy's
      statistics with the server's on every read, and each server is read by every picker of its pool (two);
    - vLLM's KV-cache gauge by its current name (the picker's default, vllm:gpu_cache_usage_perc, is the name
      vLLM retired), and no LoRA gauge (the stack serves no adapters; vLLM writes none).
    """
    return [
        f"--pool-name={pool.pool}",
        f"--pool-namespace={pool.namespace}",
        f"--pool-group={INFERENCE_GROUP}",
        f"--grpc-port={PICKER_PORT}",
        f"--grpc-health-port={PICKER_HEALTH_PORT}",
        f"--metrics-port={PICKER_METRICS_PORT}",
        "--secure-serving=false",
        f"--model-server-metrics-port={MERGED_METRICS_PORT}",
        "--model-server-metrics-path=/stats/prometheus",
        "--model-server-metrics-scheme=http",
        f"--refresh-metrics-interval={METRICS_REFRESH}",
        f"--total-queued-requests-metric={queries.VLLM_WAITING}",
        f"--kv-cache-usage-percentage-metric={queries.VLLM_KV_CACHE}",
        "--lora-info-metric=",
        "--enable-pprof=false",
        "--zap-encoder=json",
        f"--config-text={PICKER_CONFIG}",
    ]
