"""Observability: the trace pipeline in the cluster (an OpenTelemetry Collector that exports to Cloud Trace as its
own Google identity), the gateway's Envoy metrics, and in Cloud Monitoring the stack's dashboard, its alert
policies, an availability SLO per model and a log-based metric of the servers' 5xx.

The collector runs in the mesh, in a namespace of its own that IstioMesh declares with the others: every proxy
reaches it over mTLS, and only the mesh's own identities may export to it. The decisions (its config, who may
send, the dashboard, the alerts, the filters) are made in llm_mesh.plan; this component declares them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import yaml

from components.shared.iam import workload_account
from components.shared.manifests import declare
from components.shared.network_policies import admit_ingress, deny_ingress
from components.shared.pods import (
    image_skips,
    mesh_pod_annotations,
    pod_security,
    pull_policy,
    restricted,
    scanner_skips,
    zone_spread,
)
from llm_mesh.mesh.base import IstioObject
from llm_mesh.plan.alerts import AlertRule, alert_rules
from llm_mesh.plan.config import ObservabilityConfig, StackConfig
from llm_mesh.plan.dashboards import Dashboard, overview
from llm_mesh.plan.gcp_names import service_account_id
from llm_mesh.plan.network_peers import Admit, Peer, PodIngress, trace_senders
from llm_mesh.plan.observability import (
    HEALTH_PORT,
    LOG_METRIC_LABELS,
    OTLP_HTTP_PORT,
    POD_IP_ENV,
    availability_filters,
    collector_config,
    collector_labels,
    collector_mesh_objects,
    server_errors_query,
)
from llm_mesh.plan.topology import (
    GATEWAY_SELECTOR,
    INGRESS_NAMESPACE,
    MERGED_METRICS_PORT,
    METADATA_SERVER,
    POOL_LABEL,
    model_names,
)

meta = k8s.meta.v1
core = k8s.core.v1
CONFIG_DIR = "/conf"
CONFIG_FILE = "config.yaml"
# Go's soft memory limit below the container's, so that the collector collects garbage before the kernel kills it.
MEMORY_LIMIT, GO_MEMORY_LIMIT = "512Mi", "410MiB"
REPLICAS = 2
SLO_ROLLING_DAYS = 28
DASHBOARD_CONSOLE = "https://console.cloud.google.com/monitoring/dashboards/builder"


@dataclass(frozen=True)
class ObservabilityArgs:
    project: str
    stack: str
    cluster_name: str
    observability: ObservabilityConfig
    mesh_objects: list[IstioObject]
    # Pods whose proxies (or servers) export spans to the collector.
    senders: list[Peer]
    dashboard: Dashboard
    alerts: list[AlertRule]
    # (model, total filter, bad filter) of each model's availability SLO.
    availability: list[tuple[str, str, str]]
    server_errors_query: str

    @classmethod
    def from_config(cls, config: StackConfig, stack: str, cluster_name: str) -> ObservabilityArgs:
        senders = trace_senders(config)
        return cls(
            project=config.gcp.project,
            stack=stack,
            cluster_name=cluster_name,
            observability=config.observability,
            mesh_objects=collector_mesh_objects(config),
            senders=[peer for i, peer in enumerate(senders) if peer not in senders[:i]],
            dashboard=overview(config, stack, cluster_name),
            alerts=alert_rules(config, stack, cluster_name),
            availability=[
                (n.model.name, *availability_filters(cluster_name, n.namespace, n.model.name))
                for n in model_names(config)
            ],
            server_errors_query=server_errors_query(cluster_name, config.inference.namespace),
        )


class Observability(pulumi.ComponentResource):
    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:observability:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        obs = args.observability
        # Writing spans, nothing else: the collector exports traces only.
        account = workload_account(
            f"{name}-collector",
            f"{name}-collector-trace-agent",
            args.project,
            service_account_id(args.cluster_name, "otel"),
            f"Writes {args.cluster_name}'s traces to Cloud Trace",
            "roles/cloudtrace.agent",
            (obs.collector_namespace, obs.collector_name),
            child,
        )
        core.ServiceAccount(
            f"{name}-collector-ksa",
            metadata=meta.ObjectMetaArgs(
                name=obs.collector_name,
                namespace=obs.collector_namespace,
                annotations={"iam.gke.io/gcp-service-account": account.email},
            ),
            opts=child,
        )
        for obj in args.mesh_objects:
            declare(obj, child)
        deny_ingress(f"{name}-default-deny", obs.collector_namespace, child)
        ports = [obs.otel_collector_port, OTLP_HTTP_PORT]
        rule = PodIngress(
            obs.collector_name,
            obs.collector_namespace,
            collector_labels(obs),
            [Admit(port, args.senders) for port in ports],
        )
        admit_ingress(f"{name}-collector-senders", rule, child)
        _collector(f"{name}-collector", args, child)
        _gateway_metrics(f"{name}-gateway-metrics", child)
        self.dashboard = gcp.monitoring.Dashboard(
            f"{name}-dashboard", project=args.project, dashboard_json=args.dashboard.to_json(), opts=child
        )
        channels: list[pulumi.Input[str]] = list(obs.alerts.notification_channels)
        channels += [_email_channel(name, args, address, child).name for address in obs.alerts.emails]
        for alert in args.alerts:
            _alert_policy(f"{name}-alert-{alert.key}", args, alert, channels, child)
        for model, total, bad in args.availability:
            _availability_slo(f"{name}-slo-{model}", args, model, total, bad, child)
        gcp.logging.Metric(
            f"{name}-server-5xx",
            project=args.project,
            name=f"llm-mesh-{args.stack}-server-5xx",
            description=f"5xx answers of {args.cluster_name}'s inference servers, per model and track",
            filter=args.server_errors_query,
            metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
                metric_kind="DELTA",
                value_type="INT64",
                unit="1",
                labels=[
                    gcp.logging.MetricMetricDescriptorLabelArgs(key=key, value_type="STRING")
                    for key in LOG_METRIC_LABELS
                ],
            ),
            label_extractors=LOG_METRIC_LABELS,
            opts=child,
        )
        # The dashboard's id is projects/NUMBER/dashboards/ID; the console opens it by ID.
        self.dashboard_url = self.dashboard.id.apply(
            lambda id_: f"{DASHBOARD_CONSOLE}/{id_.rsplit('/', 1)[-1]}?project={args.project}"
        )
        self.register_outputs({"collector": obs.otel_collector_host, "dashboard": self.dashboard_url})


def _collector(resource_name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions) -> None:
    obs = args.observability
    labels = collector_labels(obs)
    config = yaml.safe_dump(collector_config(args.project, obs.otel_collector_port), sort_keys=False)
    config_map = core.ConfigMap(
        f"{resource_name}-config",
        metadata=meta.ObjectMetaArgs(name=f"{obs.collector_name}-config", namespace=obs.collector_namespace),
        data={CONFIG_FILE: config},
        opts=opts,
    )
    health = core.HTTPGetActionArgs(path="/", port="health")
    container = core.ContainerArgs(
        name="collector",
        image=obs.collector_image,
        image_pull_policy=pull_policy(obs.collector_image),
        args=[f"--config={CONFIG_DIR}/{CONFIG_FILE}"],
        ports=[
            core.ContainerPortArgs(name="grpc-otlp", container_port=obs.otel_collector_port),
            core.ContainerPortArgs(name="http-otlp", container_port=OTLP_HTTP_PORT),
            core.ContainerPortArgs(name="health", container_port=HEALTH_PORT),
        ],
        env=[
            core.EnvVarArgs(
                name=POD_IP_ENV,
                value_from=core.EnvVarSourceArgs(field_ref=core.ObjectFieldSelectorArgs(field_path="status.podIP")),
            ),
            core.EnvVarArgs(name="GOMEMLIMIT", value=GO_MEMORY_LIMIT),
        ],
        resources=core.ResourceRequirementsArgs(
            requests={"cpu": "100m", "memory": "256Mi"}, limits={"cpu": "1", "memory": MEMORY_LIMIT}
        ),
        readiness_probe=core.ProbeArgs(http_get=health, period_seconds=10),
        liveness_probe=core.ProbeArgs(http_get=health, period_seconds=15, failure_threshold=4),
        volume_mounts=[core.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True)],
        security_context=restricted(run_as_non_root=True, read_only_root=True),
    )
    annotations = {
        **mesh_pod_annotations(),
        # The Google exporter gets its token from GKE's metadata server (Workload Identity), past the sidecar.
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": METADATA_SERVER,
        # A changed config is a new pod template: the collector reads its config only at start.
        "llm-mesh/config-sha256": hashlib.sha256(config.encode()).hexdigest(),
    }
    k8s.apps.v1.Deployment(
        resource_name,
        metadata=meta.ObjectMetaArgs(
            name=obs.collector_name,
            namespace=obs.collector_namespace,
            labels=labels,
            annotations=scanner_skips(image_skips(obs.collector_image)) or None,
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=REPLICAS,
            selector=meta.LabelSelectorArgs(match_labels=labels),
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(labels=labels, annotations=annotations),
                spec=core.PodSpecArgs(
                    service_account_name=obs.collector_name,
                    # The collector calls no Kubernetes API; its Google token comes from the metadata server.
                    automount_service_account_token=False,
                    security_context=pod_security(),
                    node_selector={POOL_LABEL: "system"},
                    containers=[container],
                    volumes=[
                        core.VolumeArgs(
                            name="config",
                            config_map=core.ConfigMapVolumeSourceArgs(name=f"{obs.collector_name}-config"),
                        )
                    ],
                    topology_spread_constraints=zone_spread(labels),
                ),
            ),
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[config_map])),
    )
    core.Service(
        f"{resource_name}-svc",
        metadata=meta.ObjectMetaArgs(name=obs.collector_name, namespace=obs.collector_namespace, labels=labels),
        spec=core.ServiceSpecArgs(
            selector=labels,
            # Named ports (and appProtocol) tell Istio the protocol: gRPC and HTTP, routed and authorized as such.
            ports=[
                core.ServicePortArgs(
                    name="grpc-otlp", port=obs.otel_collector_port, target_port="grpc-otlp", app_protocol="grpc"
                ),
                core.ServicePortArgs(
                    name="http-otlp", port=OTLP_HTTP_PORT, target_port="http-otlp", app_protocol="http"
                ),
            ],
        ),
        opts=opts,
    )
    k8s.policy.v1.PodDisruptionBudget(
        f"{resource_name}-pdb",
        metadata=meta.ObjectMetaArgs(name=obs.collector_name, namespace=obs.collector_namespace),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1, selector=meta.LabelSelectorArgs(match_labels=labels)
        ),
        opts=opts,
    )


def _gateway_metrics(resource_name: str, opts: pulumi.ResourceOptions) -> None:
    """Managed Prometheus scrapes the ingress gateway's Envoy as it does the servers' sidecars: the requests
    refused or failed before any server saw them (no token, no ready pod) are counted only there."""
    k8s.apiextensions.CustomResource(
        resource_name,
        api_version="monitoring.googleapis.com/v1",
        kind="PodMonitoring",
        metadata={"name": "ingress-gateway", "namespace": INGRESS_NAMESPACE},
        spec={
            "selector": {"matchLabels": GATEWAY_SELECTOR},
            "endpoints": [{"port": MERGED_METRICS_PORT, "path": "/stats/prometheus", "interval": "15s"}],
        },
        opts=opts,
    )


def _email_channel(
    name: str, args: ObservabilityArgs, address: str, opts: pulumi.ResourceOptions
) -> gcp.monitoring.NotificationChannel:
    # Named after the address, not its place in the list: reordering the list replaces nothing.
    digest = hashlib.sha256(address.encode()).hexdigest()[:8]
    return gcp.monitoring.NotificationChannel(
        f"{name}-email-{digest}",
        project=args.project,
        type="email",
        display_name=f"llm-mesh {args.stack}: {address}",
        labels={"email_address": address},
        opts=opts,
    )


def _alert_policy(
    resource_name: str,
    args: ObservabilityArgs,
    alert: AlertRule,
    channels: list[pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> None:
    gcp.monitoring.AlertPolicy(
        resource_name,
        project=args.project,
        display_name=alert.display_name,
        combiner="OR",
        severity=alert.severity,
        conditions=[
            gcp.monitoring.AlertPolicyConditionArgs(
                display_name=alert.display_name,
                condition_prometheus_query_language=gcp.monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
                    query=alert.query,
                    duration=alert.duration,
                    evaluation_interval="60s",
                    # Cloud Monitoring refuses a condition on a metric never written, and on a new project nothing
                    # has been scraped yet (a canary's or a GPU's series appear only once it runs).
                    disable_metric_validation=True,
                ),
            )
        ],
        notification_channels=channels,
        documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
            content=alert.documentation, mime_type="text/markdown"
        ),
        user_labels={"llm-mesh": args.stack},
        opts=opts,
    )


def _availability_slo(
    resource_name: str, args: ObservabilityArgs, model: str, total: str, bad: str, opts: pulumi.ResourceOptions
) -> None:
    """A request-based SLI over the servers' sidecar counter: good + bad = total, bad being the 5xx."""
    service = gcp.monitoring.CustomService(
        f"{resource_name}-service",
        project=args.project,
        service_id=f"llm-mesh-{args.stack}-{model}",
        display_name=f"llm-mesh {args.stack}: {model}",
        opts=opts,
    )
    goal = args.observability.availability_goal
    gcp.monitoring.Slo(
        resource_name,
        project=args.project,
        service=service.service_id,
        slo_id="availability",
        display_name=f"{goal:.2%} of {model}'s requests answered without 5xx, rolling {SLO_ROLLING_DAYS} days",
        goal=goal,
        rolling_period_days=SLO_ROLLING_DAYS,
        request_based_sli=gcp.monitoring.SloRequestBasedSliArgs(
            good_total_ratio=gcp.monitoring.SloRequestBasedSliGoodTotalRatioArgs(
                total_service_filter=total, bad_service_filter=bad
            )
        ),
        opts=opts,
    )
