"""MetricsAdapter: the Custom Metrics Stackdriver Adapter, which serves Cloud Monitoring (and managed Prometheus)
series to the HorizontalPodAutoscaler as `external.metrics.k8s.io`.

Without it an HPA on an external metric finds nothing and holds its count. The adapter reads Cloud Monitoring
as its own Google service account (monitoring.viewer and nothing else), bound by Workload Identity. It is an
extension of the Kubernetes API server, called by the API server itself, which cannot present a mesh
certificate: it runs outside the mesh, in a namespace of its own without injection. Manifest after
GoogleCloudPlatform/k8s-stackdriver's `deploy/production/adapter_new_resource_model.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.iam import service_account_member
from components.pods import restricted
from llm_mesh.plan.config import StackConfig
from llm_mesh.plan.gcp_names import service_account_id
from llm_mesh.plan.topology import OUTSIDE_MESH_ANNOTATION, POOL_LABEL

meta = k8s.meta.v1
core = k8s.core.v1
rbac = k8s.rbac.v1
NAMESPACE = "custom-metrics"
NAME = "custom-metrics-stackdriver-adapter"
# The API server reaches extension servers on 443, which GKE's private-cluster firewall admits from the control plane.
PORT = 443
API_SERVICES = (
    ("custom.metrics.k8s.io", "v1beta1", 100),
    ("custom.metrics.k8s.io", "v1beta2", 200),
    ("external.metrics.k8s.io", "v1beta1", 100),
)


@dataclass(frozen=True)
class MetricsAdapterArgs:
    project: str
    cluster_name: str
    image: str

    @classmethod
    def from_config(cls, config: StackConfig, cluster_name: str) -> MetricsAdapterArgs:
        return cls(config.gcp.project, cluster_name, config.inference.metrics_adapter_image)


class MetricsAdapter(pulumi.ComponentResource):
    def __init__(self, name: str, args: MetricsAdapterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:autoscaling:MetricsAdapter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = gcp.serviceaccount.Account(
            f"{name}-gsa",
            project=args.project,
            account_id=service_account_id(args.cluster_name, "metrics"),
            display_name=f"Reads Cloud Monitoring for {args.cluster_name}'s autoscalers",
            opts=child,
        )
        gcp.projects.IAMMember(
            f"{name}-monitoring-viewer",
            project=args.project,
            role="roles/monitoring.viewer",
            member=service_account_member(account.email),
            opts=child,
        )
        gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity",
            service_account_id=account.name,
            role="roles/iam.workloadIdentityUser",
            member=f"serviceAccount:{args.project}.svc.id.goog[{NAMESPACE}/{NAME}]",
            opts=child,
        )
        namespace = core.Namespace(
            f"{name}-ns",
            metadata=meta.ObjectMetaArgs(name=NAMESPACE, labels={"istio-injection": "disabled"}),
            opts=child,
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        core.ServiceAccount(
            f"{name}-ksa",
            metadata=meta.ObjectMetaArgs(
                name=NAME, namespace=NAMESPACE, annotations={"iam.gke.io/gcp-service-account": account.email}
            ),
            opts=in_ns,
        )
        _rbac(name, in_ns)
        labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "llm-mesh"}
        server = _deployment(name, args, labels, in_ns)
        service = core.Service(
            f"{name}-svc",
            metadata=meta.ObjectMetaArgs(name=NAME, namespace=NAMESPACE, labels=labels),
            spec=core.ServiceSpecArgs(
                selector=labels, ports=[core.ServicePortArgs(name="https", port=PORT, target_port=PORT)]
            ),
            opts=in_ns,
        )
        # The API group answers only once the server behind it is ready.
        registered = pulumi.ResourceOptions(parent=self, depends_on=[server, service])
        for group, version, priority in API_SERVICES:
            k8s.apiregistration.v1.APIService(
                f"{name}-{version}-{group.split('.')[0]}",
                metadata=meta.ObjectMetaArgs(name=f"{version}.{group}"),
                spec=k8s.apiregistration.v1.APIServiceSpecArgs(
                    group=group,
                    version=version,
                    group_priority_minimum=100,
                    version_priority=priority,
                    service=k8s.apiregistration.v1.ServiceReferenceArgs(name=NAME, namespace=NAMESPACE, port=PORT),
                    # The adapter serves a self-signed certificate, as upstream deploys it.
                    insecure_skip_tls_verify=True,
                ),
                opts=registered,
            )
        self.register_outputs({"namespace": NAMESPACE})


def _rbac(name: str, opts: pulumi.ResourceOptions) -> None:
    subject = rbac.SubjectArgs(kind="ServiceAccount", name=NAME, namespace=NAMESPACE)

    def cluster_binding(resource: str, binding: str, role: str, subjects: list[rbac.SubjectArgs]) -> None:
        rbac.ClusterRoleBinding(
            f"{name}-{resource}",
            metadata=meta.ObjectMetaArgs(name=binding),
            role_ref=rbac.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
            subjects=subjects,
            opts=opts,
        )

    # Delegated authentication and authorization, as every aggregated API server needs.
    cluster_binding("auth-delegator", "custom-metrics:system:auth-delegator", "system:auth-delegator", [subject])
    rbac.RoleBinding(
        f"{name}-auth-reader",
        metadata=meta.ObjectMetaArgs(name="custom-metrics-auth-reader", namespace="kube-system"),
        role_ref=rbac.RoleRefArgs(
            api_group="rbac.authorization.k8s.io", kind="Role", name="extension-apiserver-authentication-reader"
        ),
        subjects=[subject],
        opts=opts,
    )
    rbac.ClusterRole(
        f"{name}-resource-reader-role",
        metadata=meta.ObjectMetaArgs(name="custom-metrics-resource-reader"),
        rules=[
            rbac.PolicyRuleArgs(
                api_groups=[""], resources=["pods", "nodes", "nodes/stats"], verbs=["get", "list", "watch"]
            )
        ],
        opts=opts,
    )
    cluster_binding("resource-reader", "custom-metrics-resource-reader", "custom-metrics-resource-reader", [subject])
    # The autoscaler controller reads the external metrics the adapter serves.
    rbac.ClusterRole(
        f"{name}-external-reader-role",
        metadata=meta.ObjectMetaArgs(name="external-metrics-reader"),
        rules=[
            rbac.PolicyRuleArgs(api_groups=["external.metrics.k8s.io"], resources=["*"], verbs=["list", "get", "watch"])
        ],
        opts=opts,
    )
    cluster_binding(
        "external-reader",
        "external-metrics-reader",
        "external-metrics-reader",
        [rbac.SubjectArgs(kind="ServiceAccount", name="horizontal-pod-autoscaler", namespace="kube-system")],
    )


def _deployment(
    name: str, args: MetricsAdapterArgs, labels: dict[str, str], opts: pulumi.ResourceOptions
) -> k8s.apps.v1.Deployment:
    container = core.ContainerArgs(
        name="adapter",
        image=args.image,
        command=["/adapter", "--use-new-resource-model=true", "--fallback-for-container-metrics=true"],
        ports=[core.ContainerPortArgs(name="https", container_port=PORT)],
        resources=core.ResourceRequirementsArgs(
            requests={"cpu": "250m", "memory": "400Mi"}, limits={"cpu": "250m", "memory": "400Mi"}
        ),
        # Binding 443 needs this one capability back after dropping all.
        security_context=restricted(read_only_root=True, add_capabilities=["NET_BIND_SERVICE"]),
    )
    return k8s.apps.v1.Deployment(
        f"{name}-server",
        metadata=meta.ObjectMetaArgs(name=NAME, namespace=NAMESPACE, labels=labels),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=1,
            selector=meta.LabelSelectorArgs(match_labels=labels),
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(
                    labels=labels,
                    annotations={
                        "sidecar.istio.io/inject": "false",
                        OUTSIDE_MESH_ANNOTATION: "an aggregated API server, called by the Kubernetes API server",
                    },
                ),
                spec=core.PodSpecArgs(
                    service_account_name=NAME,
                    node_selector={POOL_LABEL: "system"},
                    containers=[container],
                ),
            ),
        ),
        opts=opts,
    )
