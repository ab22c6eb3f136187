"""InferenceRouting: for the models with routing.balancing: inference-pool, an InferencePool and its endpoint picker
per track, and the model's HTTPRoute on the Gateway API Gateway (llm_mesh/plan/inference_pool.py decides them).

The picker runs in the model's namespace, inside the mesh: the gateway reaches it over mTLS as its own identity,
and the authorization policies admit that call alone (llm_mesh/plan/authz.py). It reads the Kubernetes API (the
pool, its pods) with a namespaced Role, and serves its own metrics to managed Prometheus behind the Kubernetes
token check its metrics server enforces (hence the cluster-scoped token and access reviews, and a reader account
whose token the collector may read, that one secret only).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.shared.manifests import declare
from components.shared.pods import (
    image_skips,
    mesh_pod_annotations,
    node_spread,
    pod_security,
    pull_policy,
    restricted,
    scanner_skips,
)
from llm_mesh.plan import inference
from llm_mesh.plan.config import RoutingConfig, StackConfig
from llm_mesh.plan.inference_pool import (
    PICKER_HEALTH_PORT,
    PICKER_METRICS_PORT,
    PICKER_PORT,
    PoolNames,
    http_route,
    inference_pool,
    mirror_service,
    picker_args,
    pooled_names,
    pools_of,
)
from llm_mesh.plan.network_peers import MANAGED_PROMETHEUS_NAMESPACE
from llm_mesh.plan.queries import PICKER_LABEL
from llm_mesh.plan.topology import MERGED_METRICS_PORT, POOL_LABEL, SAFE_TO_EVICT, SERVER_PORT, ModelNames

meta = k8s.meta.v1
core = k8s.core.v1
rbac = k8s.rbac.v1
RBAC_GROUP = "rbac.authorization.k8s.io"
PICKER_REPLICAS = 2
METRICS_READER = "endpoint-picker-metrics-reader"


@dataclass(frozen=True)
class InferenceRoutingArgs:
    models: list[ModelNames]
    routing: RoutingConfig
    image: str
    namespace: str

    @classmethod
    def from_config(cls, config: StackConfig) -> InferenceRoutingArgs:
        return cls(
            pooled_names(config), config.routing, config.inference.endpoint_picker_image, config.inference.namespace
        )


class InferenceRouting(pulumi.ComponentResource):
    def __init__(self, name: str, args: InferenceRoutingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:mesh:InferenceRouting", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        pools = [pool for names in args.models for pool in pools_of(names)]
        _shared_access(name, args.namespace, pools, child)
        for names in args.models:
            ready: list[pulumi.Resource] = []
            if mirror := mirror_service(names):
                ready.append(_mirror_service(f"{name}-{mirror}", mirror, names, child))
            for pool in pools_of(names):
                # Not the pool after its picker: a picker is ready only once it has read its pool.
                ready.append(_picker(f"{name}-{pool.pool}", pool, args.image, args.routing, child))
                ready.append(declare(inference_pool(pool), child))
            # The route names pools: it reaches the gateway once each pool and its picker are there and ready.
            declare(http_route(names, args.routing), pulumi.ResourceOptions(parent=self, depends_on=ready))
        self.register_outputs({"pools": [pool.pool for pool in pools]})


def _mirror_service(name: str, service: str, names: ModelNames, opts: pulumi.ResourceOptions) -> core.Service:
    return core.Service(
        name,
        metadata=meta.ObjectMetaArgs(name=service, namespace=names.namespace, labels=names.labels("mirror")),
        spec=core.ServiceSpecArgs(
            selector=names.labels("mirror"),
            ports=[core.ServicePortArgs(name="http", port=SERVER_PORT, target_port="http", app_protocol="http")],
        ),
        opts=opts,
    )


def _shared_access(name: str, namespace: str, pools: list[PoolNames], opts: pulumi.ResourceOptions) -> None:
    """What every picker of the namespace shares: its metrics server's token and access reviews, and the account
    managed Prometheus scrapes it as."""
    pickers = [rbac.SubjectArgs(kind="ServiceAccount", name=p.picker, namespace=namespace) for p in pools]
    reviews = "llm-mesh-endpoint-picker-reviews"
    rbac.ClusterRole(
        f"{name}-reviews",
        metadata=meta.ObjectMetaArgs(name=reviews),
        rules=[
            rbac.PolicyRuleArgs(api_groups=["authentication.k8s.io"], resources=["tokenreviews"], verbs=["create"]),
            rbac.PolicyRuleArgs(
                api_groups=["authorization.k8s.io"], resources=["subjectaccessreviews"], verbs=["create"]
            ),
        ],
        opts=opts,
    )
    rbac.ClusterRoleBinding(
        f"{name}-reviews",
        metadata=meta.ObjectMetaArgs(name=reviews),
        role_ref=rbac.RoleRefArgs(api_group=RBAC_GROUP, kind="ClusterRole", name=reviews),
        subjects=pickers,
        opts=opts,
    )
    reader = rbac.SubjectArgs(kind="ServiceAccount", name=METRICS_READER, namespace=namespace)
    core.ServiceAccount(
        f"{name}-metrics-reader",
        metadata=meta.ObjectMetaArgs(name=METRICS_READER, namespace=namespace),
        automount_service_account_token=False,
        opts=opts,
    )
    core.Secret(
        f"{name}-metrics-reader-token",
        metadata=meta.ObjectMetaArgs(
            name=METRICS_READER,
            namespace=namespace,
            annotations={"kubernetes.io/service-account.name": METRICS_READER},
        ),
        type="kubernetes.io/service-account-token",
        opts=opts,
    )
    scrape = "llm-mesh-endpoint-picker-metrics"
    rbac.ClusterRole(
        f"{name}-metrics",
        metadata=meta.ObjectMetaArgs(name=scrape),
        rules=[rbac.PolicyRuleArgs(non_resource_urls=["/metrics"], verbs=["get"])],
        opts=opts,
    )
    rbac.ClusterRoleBinding(
        f"{name}-metrics",
        metadata=meta.ObjectMetaArgs(name=scrape),
        role_ref=rbac.RoleRefArgs(api_group=RBAC_GROUP, kind="ClusterRole", name=scrape),
        subjects=[reader],
        opts=opts,
    )
    # Managed Prometheus's collector reads the PodMonitoring's bearer token: this secret, by name, and nothing else.
    rbac.Role(
        f"{name}-collector-token",
        metadata=meta.ObjectMetaArgs(name=f"{METRICS_READER}-token", namespace=namespace),
        rules=[
            rbac.PolicyRuleArgs(
                api_groups=[""], resources=["secrets"], resource_names=[METRICS_READER], verbs=["get", "list", "watch"]
            )
        ],
        opts=opts,
    )
    rbac.RoleBinding(
        f"{name}-collector-token",
        metadata=meta.ObjectMetaArgs(name=f"{METRICS_READER}-token", namespace=namespace),
        role_ref=rbac.RoleRefArgs(api_group=RBAC_GROUP, kind="Role", name=f"{METRICS_READER}-token"),
        subjects=[rbac.SubjectArgs(kind="ServiceAccount", name="collector", namespace=MANAGED_PROMETHEUS_NAMESPACE)],
        opts=opts,
    )


def _picker(
    name: str, pool: PoolNames, image: str, routing: RoutingConfig, opts: pulumi.ResourceOptions
) -> k8s.apps.v1.Deployment:
    labels = pool.picker_labels
    ns = pool.namespace
    core.ServiceAccount(f"{name}-ksa", metadata=meta.ObjectMetaArgs(name=pool.picker, namespace=ns), opts=opts)
    rbac.Role(
        f"{name}-role",
        metadata=meta.ObjectMetaArgs(name=pool.picker, namespace=ns),
        # Reads only: its pool, the pool's objectives, the pods it picks among; in its own namespace.
        rules=[
            rbac.PolicyRuleArgs(
                api_groups=["inference.networking.k8s.io"], resources=["inferencepools"], verbs=["get", "list", "watch"]
            ),
            rbac.PolicyRuleArgs(
                api_groups=["inference.networking.x-k8s.io"],
                resources=["inferenceobjectives"],
                verbs=["get", "list", "watch"],
            ),
            rbac.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=["get", "list", "watch"]),
        ],
        opts=opts,
    )
    rbac.RoleBinding(
        f"{name}-role",
        metadata=meta.ObjectMetaArgs(name=pool.picker, namespace=ns),
        role_ref=rbac.RoleRefArgs(api_group=RBAC_GROUP, kind="Role", name=pool.picker),
        subjects=[rbac.SubjectArgs(kind="ServiceAccount", name=pool.picker, namespace=ns)],
        opts=opts,
    )
    core.Service(
        f"{name}-svc",
        metadata=meta.ObjectMetaArgs(name=pool.picker, namespace=ns, labels=labels),
        spec=core.ServiceSpecArgs(
            selector=labels,
            # Istio treats a grpc- port as HTTP/2: the gateway's ext_proc stream goes through the sidecars as gRPC.
            ports=[
                core.ServicePortArgs(
                    name="grpc-ext-proc", port=PICKER_PORT, target_port=PICKER_PORT, app_protocol="grpc"
                ),
            ],
        ),
        opts=opts,
    )
    k8s.policy.v1.PodDisruptionBudget(
        f"{name}-pdb",
        metadata=meta.ObjectMetaArgs(name=pool.picker, namespace=ns),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1,
            selector=meta.LabelSelectorArgs(match_labels=labels),
            unhealthy_pod_eviction_policy="AlwaysAllow",
        ),
        opts=opts,
    )
    k8s.apiextensions.CustomResource(
        f"{name}-metrics",
        api_version="monitoring.googleapis.com/v1",
        kind="PodMonitoring",
        metadata={"name": pool.picker, "namespace": ns, "labels": labels},
        spec={
            "selector": {"matchLabels": labels},
            "endpoints": [
                {
                    "port": PICKER_METRICS_PORT,
                    "path": "/metrics",
                    "interval": "15s",
                    "authorization": {
                        "type": "Bearer",
                        "credentials": {"secret": {"name": METRICS_READER, "key": "token"}},
                    },
                }
            ],
            # The scheduler's histogram carries no pool: the picker's name says which pool it chose in.
            "targetLabels": {"fromPod": [{"from": "app.kubernetes.io/name", "to": PICKER_LABEL}]},
        },
        opts=opts,
    )
    return _deployment(name, pool, image, routing, opts)


# controller-runtime's default wait for its runnables at SIGTERM (the picker sets none); then the process exits.
PICKER_SHUTDOWN_SECONDS = 30


def picker_drain_seconds(routing: RoutingConfig) -> int:
    """How long a stopping picker keeps answering before SIGTERM: its ext_proc stream lasts as long as the request
    it picked for, and at SIGTERM the picker ends every stream within 30 s. The preStop sleep comes first, while the
    pod leaves its Service's endpoints and new streams go to the other picker."""
    return inference.DRAIN_PROPAGATION_SECONDS + inference.drain_deadline_seconds(routing)


def picker_grace_period_seconds(routing: RoutingConfig) -> int:
    return picker_drain_seconds(routing) + PICKER_SHUTDOWN_SECONDS + inference.SHUTDOWN_SECONDS


def _deployment(
    name: str, pool: PoolNames, image: str, routing: RoutingConfig, opts: pulumi.ResourceOptions
) -> k8s.apps.v1.Deployment:
    labels = pool.picker_labels

    def probe(service: str, period: int) -> core.ProbeArgs:
        # The picker's gRPC health service reports serving once it has read its pool.
        return core.ProbeArgs(grpc=core.GRPCActionArgs(port=PICKER_HEALTH_PORT, service=service), period_seconds=period)

    container = core.ContainerArgs(
        name="epp",
        image=image,
        image_pull_policy=pull_policy(image),
        args=picker_args(pool),
        ports=[
            core.ContainerPortArgs(name="grpc", container_port=PICKER_PORT),
            core.ContainerPortArgs(name="grpc-health", container_port=PICKER_HEALTH_PORT),
            core.ContainerPortArgs(name="metrics", container_port=PICKER_METRICS_PORT),
        ],
        env=[
            core.EnvVarArgs(
                name="NAMESPACE",
                value_from=core.EnvVarSourceArgs(
                    field_ref=core.ObjectFieldSelectorArgs(field_path="metadata.namespace")
                ),
            )
        ],
        resources=core.ResourceRequirementsArgs(
            requests={"cpu": "500m", "memory": "512Mi"}, limits={"cpu": "2", "memory": "2Gi"}
        ),
        # Ready once it has read its pool (its health service says NOT_SERVING before); alive while it listens, so
        # that a pool deleted or not yet there does not restart it in a loop.
        readiness_probe=probe("inference-extension", 2),
        liveness_probe=core.ProbeArgs(
            tcp_socket=core.TCPSocketActionArgs(port=PICKER_HEALTH_PORT), period_seconds=10, failure_threshold=3
        ),
        lifecycle=core.LifecycleArgs(
            pre_stop=core.LifecycleHandlerArgs(sleep=core.SleepActionArgs(seconds=picker_drain_seconds(routing)))
        ),
        security_context=restricted(run_as_non_root=True, read_only_root=True),
    )
    skips = {
        "CKV_K8S_38": "the endpoint picker watches its InferencePool and the pool's pods through the Kubernetes API",
        **image_skips(image),
    }
    return k8s.apps.v1.Deployment(
        f"{name}-deployment",
        metadata=meta.ObjectMetaArgs(
            name=pool.picker, namespace=pool.namespace, labels=labels, annotations=scanner_skips(skips)
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            # Two active pickers, one per node: a drain or a restart leaves the other choosing. Each keeps its own
            # prefix-cache view (the chart's leader election would keep one ready pod, which no budget can drain).
            replicas=PICKER_REPLICAS,
            strategy=k8s.apps.v1.DeploymentStrategyArgs(
                type="RollingUpdate",
                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1),
            ),
            selector=meta.LabelSelectorArgs(match_labels=labels),
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(
                    labels=labels,
                    annotations={
                        **mesh_pod_annotations(),
                        # Its drain outlasts the 10 minutes the cluster autoscaler gives an evicted pod.
                        SAFE_TO_EVICT: "false",
                        # Its metrics server checks a Kubernetes token itself; managed Prometheus is outside the
                        # mesh and reaches it past the sidecar. The servers' merged metrics it reads are outside
                        # mTLS too (they are served by each pod's sidecar agent, not behind its proxy).
                        "traffic.sidecar.istio.io/excludeInboundPorts": str(PICKER_METRICS_PORT),
                        "traffic.sidecar.istio.io/excludeOutboundPorts": str(MERGED_METRICS_PORT),
                    },
                ),
                spec=core.PodSpecArgs(
                    service_account_name=pool.picker,
                    automount_service_account_token=True,
                    security_context=pod_security(),
                    node_selector={POOL_LABEL: "system"},
                    topology_spread_constraints=node_spread(labels),
                    termination_grace_period_seconds=picker_grace_period_seconds(routing),
                    containers=[container],
                ),
            ),
        ),
        opts=opts,
    )
