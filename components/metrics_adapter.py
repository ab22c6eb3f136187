"""MetricsAdapter: the Custom Metrics Stackdriver Adapter, which serves Cloud Monitoring (and managed Prometheus)
series to the HorizontalPodAutoscaler as `external.metrics.k8s.io`.

Without it an HPA on an external metric finds nothing and holds its count. The adapter reads Cloud Monitoring
as its own Google service account (monitoring.viewer and nothing else), bound by Workload Identity. It is an
extension of the Kubernetes API server, called by the API server itself, which cannot present a mesh
certificate: it runs outside the mesh, in a namespace of its own without injection, which refuses every
connection but the API server's port. Manifest after GoogleCloudPlatform/k8s-stackdriver's
`deploy/production/adapter_new_resource_model.yaml`, less its `external-metrics-reader` ClusterRole: Kubernetes'
own `system:controller:horizontal-pod-autoscaler` role already lets the autoscaler get and list external metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.shared.iam import workload_account
from components.shared.network_policies import admit_ingress, deny_ingress
from components.shared.pods import image_skips, pod_security, pull_policy, restricted, scanner_skips
from llm_mesh.plan.config import StackConfig
from llm_mesh.plan.gcp_names import service_account_id
from llm_mesh.plan.network_peers import Admit, PodIngress
from llm_mesh.plan.pod_security import namespace_labels
from llm_mesh.plan.topology import OUTSIDE_MESH_ANNOTATION, POOL_LABEL

meta = k8s.meta.v1
core = k8s.core.v1
rbac = k8s.rbac.v1
NAMESPACE = "custom-metrics"
NAME = "custom-metrics-stackdriver-adapter"
# The API server reaches extension servers on 443, which GKE's private-cluster firewall admits from the control plane.
PORT = 443
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "llm-mesh"}
ADAPTER_REPLICAS = 2
# Where the adapter writes the self-signed serving certificate it makes at start (by default under its working
# directory, on the image's read-only root).
CERT_DIR = "/var/run/serving-cert"
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
        account = workload_account(
            name,
            f"{name}-monitoring-viewer",
            args.project,
            service_account_id(args.cluster_name, "metrics"),
            f"Reads Cloud Monitoring for {args.cluster_name}'s autoscalers",
            "roles/monitoring.viewer",
            (NAMESPACE, NAME),
            child,
        )
        namespace = core.Namespace(
            f"{name}-ns",
            metadata=meta.ObjectMetaArgs(
                name=NAMESPACE, labels={"istio-injection": "disabled", **namespace_labels(NAMESPACE)}
            ),
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
        # The API server's address differs by GKE version and control plane networking: 443 from anywhere.
        deny_ingress(f"{name}-default-deny", NAMESPACE, in_ns)
        admit_ingress(f"{name}-api-server", PodIngress("api-server", NAMESPACE, LABELS, [Admit(PORT)]), in_ns)
        server = _deployment(name, args, in_ns)
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta.ObjectMetaArgs(name=NAME, namespace=NAMESPACE),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=meta.LabelSelectorArgs(match_labels=LABELS),
                unhealthy_pod_eviction_policy="AlwaysAllow",
            ),
            opts=in_ns,
        )
        service = core.Service(
            f"{name}-svc",
            metadata=meta.ObjectMetaArgs(name=NAME, namespace=NAMESPACE, labels=LABELS),
            spec=core.ServiceSpecArgs(
                selector=LABELS, ports=[core.ServicePortArgs(name="https", port=PORT, target_port=PORT)]
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


def _deployment(name: str, args: MetricsAdapterArgs, opts: pulumi.ResourceOptions) -> k8s.apps.v1.Deployment:
    # The generic API server's health endpoints, which its authorization admits without credentials.
    def probe(path: str, failures: int) -> core.ProbeArgs:
        return core.ProbeArgs(
            http_get=core.HTTPGetActionArgs(path=path, port="https", scheme="HTTPS"),
            period_seconds=10,
            failure_threshold=failures,
        )

    container = core.ContainerArgs(
        name="adapter",
        image=args.image,
        image_pull_policy=pull_policy(args.image),
        command=[
            "/adapter",
            "--use-new-resource-model=true",
            "--fallback-for-container-metrics=true",
            f"--cert-dir={CERT_DIR}",
        ],
        ports=[core.ContainerPortArgs(name="https", container_port=PORT)],
        resources=core.ResourceRequirementsArgs(
            requests={"cpu": "250m", "memory": "400Mi"}, limits={"cpu": "250m", "memory": "400Mi"}
        ),
        readiness_probe=probe("/readyz", 3),
        liveness_probe=probe("/livez", 6),
        volume_mounts=[core.VolumeMountArgs(name="serving-cert", mount_path=CERT_DIR)],
        security_context=restricted(run_as_non_root=True, read_only_root=True),
    )
    skips = {
        "CKV_K8S_38": "an aggregated API server: it calls the Kubernetes API with this token (delegated "
        "authentication and authorization, pods and nodes)",
        **image_skips(args.image),
    }
    return k8s.apps.v1.Deployment(
        f"{name}-server",
        metadata=meta.ObjectMetaArgs(name=NAME, namespace=NAMESPACE, labels=LABELS, annotations=scanner_skips(skips)),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            # Two, spread over the system nodes and held by a budget: with one, a system-node drain stalls every
            # autoscaler of the cluster until the adapter is back.
            replicas=ADAPTER_REPLICAS,
            selector=meta.LabelSelectorArgs(match_labels=LABELS),
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(
                    labels=LABELS,
                    annotations={
                        "sidecar.istio.io/inject": "false",
                        OUTSIDE_MESH_ANNOTATION: "an aggregated API server, called by the Kubernetes API server",
                    },
                ),
                spec=core.PodSpecArgs(
                    service_account_name=NAME,
                    automount_service_account_token=True,
                    # A static binary that runs as any user; binding 443 needs no capability once the pod's
                    # network namespace counts 443 as unprivileged (a namespaced, safe sysctl).
                    security_context=pod_security(sysctls={"net.ipv4.ip_unprivileged_port_start": str(PORT)}),
                    node_selector={POOL_LABEL: "system"},
                    topology_spread_constraints=[
                        core.TopologySpreadConstraintArgs(
                            max_skew=1,
                            topology_key="kubernetes.io/hostname",
                            when_unsatisfiable="ScheduleAnyway",
                            label_selector=meta.LabelSelectorArgs(match_labels=LABELS),
                        )
                    ],
                    containers=[container],
                    volumes=[core.VolumeArgs(name="serving-cert", empty_dir=core.EmptyDirVolumeSourceArgs())],
                ),
            ),
        ),
        opts=opts,
    )
