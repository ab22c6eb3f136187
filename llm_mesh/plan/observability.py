"""Decisions for observability: the OpenTelemetry Collector (its config, who may send to it, where it exports),
what each span and access log line says about the model, and the Cloud Logging and Monitoring filters.

Traces: every Envoy of the mesh (the gateway, each sidecar) and each vLLM server send OTLP/gRPC to one collector in
the cluster, which exports to Cloud Trace as its own Google service account. Logs: Envoy writes one JSON line per
request to stdout, which GKE's logging agent turns into `jsonPayload`. Metrics come from managed Prometheus
(llm_mesh.plan.queries); this module names only the Cloud Monitoring filters that PromQL cannot express.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from llm_mesh.mesh.base import IstioObject, ObjectMeta, WorkloadSelector
from llm_mesh.mesh.networking import ServiceEntry, ServiceEntryPort, ServiceEntrySpec
from llm_mesh.mesh.security import (
    AuthorizationPolicy,
    AuthorizationPolicySpec,
    MutualTLS,
    Operation,
    PeerAuthentication,
    PeerAuthenticationSpec,
    Rule,
    RuleFrom,
    RuleTo,
    Source,
)
from llm_mesh.mesh.telemetry import CustomTag, EnvironmentTag, LiteralTag, Telemetry, TelemetrySpec, Tracing
from llm_mesh.plan.authz import allow_nothing, in_mesh_callers
from llm_mesh.plan.config import ObservabilityConfig, StackConfig
from llm_mesh.plan.queries import ISTIO_REQUESTS
from llm_mesh.plan.topology import GATEWAY_PRINCIPAL, MODEL_STORE, model_names, principal

OTLP_HTTP_PORT = 4318
HEALTH_PORT = 13133
CLOUD_TRACE_HOST = "cloudtrace.googleapis.com"
# The two ways OTLP exports spans: gRPC (what Envoy and vLLM use) and HTTP.
TRACE_EXPORT_PATHS = ["/opentelemetry.proto.collector.trace.v1.TraceService/Export", "/v1/traces"]
# The collector listens on its pod's address, which the downward API hands it (Istio delivers inbound traffic there).
POD_IP_ENV = "MY_POD_IP"
# Environment variables of a server pod's istio-proxy (set through its proxyMetadata), read by span tags and by the
# access log: Envoy knows nothing else about which model, track and version it fronts.
MODEL_ENV, TRACK_ENV, VERSION_ENV = "LLM_MESH_MODEL", "LLM_MESH_TRACK", "LLM_MESH_VERSION"
# Tracks whose answers reach clients (a mirror's are thrown away): what the availability SLO counts.
SERVING_TRACKS = ("stable", "canary")


def collector_labels(observability: ObservabilityConfig) -> dict[str, str]:
    return {"app.kubernetes.io/name": observability.collector_name, "app.kubernetes.io/part-of": "llm-mesh"}


def otlp_endpoint(observability: ObservabilityConfig) -> str:
    """Where vLLM sends spans: plaintext gRPC to its own sidecar, which carries it to the collector over mTLS."""
    return f"grpc://{observability.otel_collector_host}:{observability.otel_collector_port}"


def collector_config(project: str, grpc_port: int) -> dict[str, Any]:
    """The collector's configuration (otelcol-contrib): OTLP in, Cloud Trace out.

    memory_limiter first (it refuses data before the collector runs out of memory), resource detection so that
    spans say which cluster they crossed, batch last (fewer, larger export calls). Component keys as the
    collector-contrib READMEs document them for the memory_limiter, resourcedetection and googlecloud components.
    """

    def listen(port: int) -> str:
        return f"${{env:{POD_IP_ENV}}}:{port}"

    return {
        "extensions": {"health_check": {"endpoint": listen(HEALTH_PORT)}},
        "receivers": {
            "otlp": {
                "protocols": {"grpc": {"endpoint": listen(grpc_port)}, "http": {"endpoint": listen(OTLP_HTTP_PORT)}}
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
            "resourcedetection": {"detectors": ["gcp"], "timeout": "10s", "override": False},
            "batch": {},
        },
        "exporters": {"googlecloud": {"project": project}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "resourcedetection", "batch"],
                    "exporters": ["googlecloud"],
                }
            },
        },
    }


PIPELINE_KINDS = ("traces", "metrics", "logs")


def pipeline_problems(config: dict[str, Any]) -> list[str]:
    """What the collector would refuse at start, or silently ignore: a pipeline naming a component that is not
    defined, a defined receiver, processor or exporter no pipeline uses, an extension that is not defined."""
    problems = []
    service = config.get("service") or {}
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines: no pipeline")
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in pipelines.items():
        if name.split("/")[0] not in PIPELINE_KINDS:
            problems.append(f"service.pipelines.{name}: a pipeline is one of {', '.join(PIPELINE_KINDS)}[/name]")
        for section in ("receivers", "exporters"):
            if not pipeline.get(section):
                problems.append(f"service.pipelines.{name}.{section}: a pipeline needs at least one")
        for section in used:
            for component in pipeline.get(section) or []:
                used[section].add(component)
                if component not in (config.get(section) or {}):
                    problems.append(f"service.pipelines.{name}.{section}: {component!r} is not defined in {section}")
    for section, names in used.items():
        for component in config.get(section) or {}:
            if component not in names:
                problems.append(f"{section}.{component}: defined but in no pipeline")
    for extension in service.get("extensions") or []:
        if extension not in (config.get("extensions") or {}):
            problems.append(f"service.extensions: {extension!r} is not defined in extensions")
    return problems


def span_senders(config: StackConfig) -> list[str]:
    """Every proxy of the mesh reports spans (the gateway, the servers' and the store's sidecars, the configured
    callers'), and vLLM exports through its own sidecar, as its model's identity."""
    models = [names.principal for names in model_names(config)]
    store = principal(config.model_store.namespace, MODEL_STORE)
    return list(dict.fromkeys([GATEWAY_PRINCIPAL, *models, store, *in_mesh_callers(config)]))


def collector_mesh_objects(config: StackConfig) -> list[IstioObject]:
    """STRICT mTLS and deny by default in the collector's namespace, OTLP exports allowed from the mesh's own
    identities, Cloud Trace reachable under REGISTRY_ONLY egress, and no spans about the spans themselves."""
    observability = config.observability
    namespace = observability.collector_namespace
    ports = [str(observability.otel_collector_port), str(OTLP_HTTP_PORT)]
    senders = AuthorizationPolicy(
        metadata=ObjectMeta(name=f"{observability.collector_name}-senders", namespace=namespace),
        spec=AuthorizationPolicySpec(
            selector=WorkloadSelector(match_labels=collector_labels(observability)),
            action="ALLOW",
            rules=[
                Rule(
                    from_=[RuleFrom(source=Source(principals=span_senders(config)))],
                    to=[RuleTo(operation=Operation(ports=ports, methods=["POST"], paths=TRACE_EXPORT_PATHS))],
                )
            ],
        ),
    )
    return [
        PeerAuthentication(
            metadata=ObjectMeta(name="default", namespace=namespace),
            spec=PeerAuthenticationSpec(mtls=MutualTLS(mode="STRICT")),
        ),
        allow_nothing(namespace),
        senders,
        ServiceEntry(
            metadata=ObjectMeta(name="cloudtrace-googleapis", namespace=namespace),
            spec=ServiceEntrySpec(
                hosts=[CLOUD_TRACE_HOST],
                ports=[ServiceEntryPort(number=443, name="https", protocol="TLS")],
                location="MESH_EXTERNAL",
                resolution="DNS",
                export_to=["."],
            ),
        ),
        # The collector's own sidecar would trace each export it receives, and report that span to the collector.
        Telemetry(
            metadata=ObjectMeta(name="no-export-spans", namespace=namespace),
            spec=TelemetrySpec(tracing=[Tracing(disable_span_reporting=True)]),
        ),
    ]


def trace_identity(model: str, track: str, version: str) -> dict[str, str]:
    """What a server pod's proxy knows about what it fronts (as its environment)."""
    return {MODEL_ENV: model, TRACK_ENV: track, VERSION_ENV: version}


def span_tags(environment: str) -> dict[str, CustomTag]:
    """Tags on every span the mesh reports. Istio already tags each with the workload's canonical service and
    revision (here the model and the track); the version is only in the proxy's environment, and the gateway's
    proxy has none of these variables, so its spans carry no such tag."""
    from_env = {
        "llm_mesh.model": MODEL_ENV,
        "llm_mesh.track": TRACK_ENV,
        "llm_mesh.version": VERSION_ENV,
    }
    tags = {tag: CustomTag(environment=EnvironmentTag(name=variable)) for tag, variable in from_env.items()}
    return {**tags, "llm_mesh.environment": CustomTag(literal=LiteralTag(value=environment))}


def resource_attributes(identity: dict[str, str], namespace: str, environment: str) -> str:
    """OTEL_RESOURCE_ATTRIBUTES for vLLM: the same facts as the proxy's span tags, on vLLM's own spans."""
    attributes = {
        "service.namespace": namespace,
        "service.version": identity[VERSION_ENV],
        "deployment.environment.name": environment,
        "llm_mesh.model": identity[MODEL_ENV],
        "llm_mesh.track": identity[TRACK_ENV],
        "llm_mesh.version": identity[VERSION_ENV],
    }
    return ",".join(f"{key}={value}" for key, value in attributes.items())


def access_log_format(project: str) -> dict[str, str]:
    """One JSON object per request (Envoy command operators). `model`, `track` and `version` are the server
    proxy's environment ('-' on other proxies); the trace field lets Logs Explorer open the request's trace."""
    return {
        "start_time": "%START_TIME%",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "authority": "%REQ(:AUTHORITY)%",
        "protocol": "%PROTOCOL%",
        "response_code": "%RESPONSE_CODE%",
        "response_flags": "%RESPONSE_FLAGS%",
        "duration_ms": "%DURATION%",
        "upstream_service_time_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
        "bytes_received": "%BYTES_RECEIVED%",
        "bytes_sent": "%BYTES_SENT%",
        "upstream_host": "%UPSTREAM_HOST%",
        "upstream_cluster": "%UPSTREAM_CLUSTER%",
        "downstream_peer": "%DOWNSTREAM_PEER_URI_SAN%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "model": f"%ENVIRONMENT({MODEL_ENV})%",
        "track": f"%ENVIRONMENT({TRACK_ENV})%",
        "version": f"%ENVIRONMENT({VERSION_ENV})%",
        "logging.googleapis.com/trace": f"projects/{project}/traces/%TRACE_ID%",
    }


def server_errors_query(cluster: str, namespace: str) -> str:
    """Logging query: the 5xx the servers' sidecars answered (inbound only: the same sidecar also logs the
    server's own outbound calls, the weights fetch and span exports, which are not answers to clients)."""
    return "\n".join(
        [
            'resource.type="k8s_container"',
            f'resource.labels.cluster_name="{cluster}"',
            f'resource.labels.namespace_name="{namespace}"',
            'resource.labels.container_name="istio-proxy"',
            'jsonPayload.upstream_cluster=~"^inbound"',
            "jsonPayload.response_code>=500",
        ]
    )


LOG_METRIC_LABELS = {"model": "EXTRACT(jsonPayload.model)", "track": "EXTRACT(jsonPayload.track)"}


def logs_explorer_url(project: str, query: str) -> str:
    return f"https://console.cloud.google.com/logs/query;query={quote(query, safe='')}?project={project}"


def trace_explorer_url(project: str) -> str:
    return f"https://console.cloud.google.com/traces/explorer?project={project}"


def availability_filters(cluster: str, namespace: str, model: str) -> tuple[str, str]:
    """(total, bad) Cloud Monitoring filters over the servers' sidecar counter, as managed Prometheus stores it
    (`prometheus.googleapis.com/<name>/counter` on resource `prometheus_target`): a request-based SLI takes two
    of good, bad and total, CUMULATIVE counters included."""
    total = " AND ".join(
        [
            f'metric.type="prometheus.googleapis.com/{ISTIO_REQUESTS}/counter"',
            'resource.type="prometheus_target"',
            f'resource.labels.cluster="{cluster}"',
            f'resource.labels.namespace="{namespace}"',
            'metric.labels.reporter="destination"',
            f'metric.labels.destination_canonical_service="{model}"',
            f'metric.labels.destination_canonical_revision=monitoring.regex.full_match("{"|".join(SERVING_TRACKS)}")',
        ]
    )
    bad = f'{total} AND metric.labels.response_code=monitoring.regex.full_match("5[0-9][0-9]")'
    return total, bad
