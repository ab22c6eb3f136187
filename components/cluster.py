"""GpuCluster: a hardened, private GKE cluster with a system pool and GPU pools from config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.shared.iam import service_account_member
from llm_mesh.plan.config import ClusterConfig, GpuPool, StackConfig
from llm_mesh.plan.gcp_names import cluster_name, service_account_id
from llm_mesh.plan.placement import COMPUTE_CLASS_LABEL, ComputeClassPlan, compute_classes
from llm_mesh.plan.topology import POOL_LABEL

# What GKE nodes need to report logs and metrics and pull images; nothing else (GKE hardening guide).
NODE_ROLES = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
)
# A new primary version of the Secrets key every 90 days; old versions stay to decrypt what they encrypted.
SECRETS_KEY_ROTATION_DAYS = 90
# istiod's webhooks listen on 15017; GKE's own firewall rule lets the control plane reach only 443 and 10250.
ISTIO_WEBHOOK_PORT = "15017"


@dataclass(frozen=True)
class GpuClusterArgs:
    project: str
    region: str
    zones: list[str]
    cluster_name: str
    cluster: ClusterConfig
    gpu_pools: list[GpuPool]
    # Pulumi `protect` on the cluster: a stray `pulumi destroy` must not take prod's GPUs down.
    protect: bool
    # Pools a model prefers in order, as GKE ComputeClasses (see llm_mesh.plan.placement).
    compute_classes: list[ComputeClassPlan] = field(default_factory=list)
    # Kubernetes Secrets encrypted with a KMS key of the stack's own (CIS GKE 5.3.1).
    secrets_encryption: bool = False

    @classmethod
    def from_config(cls, config: StackConfig, stack: str) -> GpuClusterArgs:
        return cls(
            project=config.gcp.project,
            region=config.gcp.region,
            zones=list(config.gcp.zones),
            cluster_name=cluster_name(config, stack),
            cluster=config.cluster,
            gpu_pools=list(config.gpu_pools),
            protect=config.environment == "prod",
            compute_classes=compute_classes(config),
            secrets_encryption=config.secrets_encrypted,
        )

    @property
    def location(self) -> str:
        if self.cluster.regional:
            return self.region
        return self.zones[0] if self.zones else f"{self.region}-a"


class GpuCluster(pulumi.ComponentResource):
    """The cluster, its node service account, its pools, and a Kubernetes provider for what follows."""

    cluster: gcp.container.Cluster
    provider: k8s.Provider
    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:cluster:GpuCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        node_account = gcp.serviceaccount.Account(
            f"{name}-nodes",
            project=args.project,
            account_id=service_account_id(args.cluster_name, "nodes"),
            display_name=f"GKE nodes of {args.cluster_name}",
            opts=child,
        )
        for role in NODE_ROLES:
            gcp.projects.IAMMember(
                f"{name}-nodes-{role.split('/')[1]}",
                project=args.project,
                role=role,
                member=service_account_member(node_account.email),
                opts=child,
            )

        secrets_key = _secrets_key(name, args, child) if args.secrets_encryption else None
        self.cluster = _cluster(
            f"{name}-gke",
            args,
            node_account.email,
            secrets_key,
            pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=args.protect)),
        )
        network = _network(name, args, child)
        pool_opts = pulumi.ResourceOptions(parent=self, depends_on=[self.cluster])
        system_pool = _system_pool(f"{name}-system", args, self.cluster.name, node_account.email, pool_opts)
        # GPU pools can wait long for capacity (spot, reservations): give creation room to finish.
        gpu_opts = pulumi.ResourceOptions.merge(
            pool_opts, pulumi.ResourceOptions(custom_timeouts=pulumi.CustomTimeouts(create="60m", update="60m"))
        )
        pool_classes = {pool: plan.name for plan in args.compute_classes for pool in plan.pools}
        self.gpu_pools = {
            pool.name: _gpu_pool(
                f"{name}-{pool.name}",
                args,
                pool,
                pool_classes.get(pool.name),
                self.cluster.name,
                node_account.email,
                gpu_opts,
            )
            for pool in args.gpu_pools
        }

        self.kubeconfig = pulumi.Output.secret(_kubeconfig_of(self.cluster, args.cluster.dns_endpoint))
        # Workloads need schedulable nodes; the provider waits for the system pool so its users do too.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # The cluster's own path, known before the cluster exists. Without it, pulumi-kubernetes replaces the
            # provider, and with it every object it manages, whenever the kubeconfig's server changes (IP to DNS
            # endpoint) or is unknown in a preview.
            cluster_identifier=cluster_path(args),
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[system_pool, *network]),
        )
        for plan in args.compute_classes:
            _compute_class(f"{name}-class-{plan.name}", plan, self.gpu_pools, self.provider, self)
        self.cluster_name = self.cluster.name
        self.endpoint = self.cluster.endpoint
        self.register_outputs(
            {"clusterName": self.cluster.name, "endpoint": self.cluster.endpoint, "kubeconfig": self.kubeconfig}
        )


def node_tag(args: GpuClusterArgs) -> str:
    """The network tag on every node of this cluster, which its firewall rules target."""
    return f"{args.cluster_name}-node"


def _network(name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """What private nodes need from the VPC: the control plane reaching Istio's webhooks, and egress."""
    cfg = args.cluster
    created: list[pulumi.Resource] = [
        gcp.compute.Firewall(
            f"{name}-istio-webhooks",
            project=args.project,
            network=cfg.network,
            description="GKE control plane to istiod's admission webhooks",
            direction="INGRESS",
            source_ranges=[cfg.master_ipv4_cidr_block],
            target_tags=[node_tag(args)],
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[ISTIO_WEBHOOK_PORT])],
            opts=opts,
        )
    ]
    if cfg.cloud_nat:
        router = gcp.compute.Router(
            f"{name}-router", project=args.project, region=args.region, network=cfg.network, opts=opts
        )
        created.append(
            gcp.compute.RouterNat(
                f"{name}-nat",
                project=args.project,
                region=args.region,
                router=router.name,
                nat_ip_allocate_option="AUTO_ONLY",
                source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
                log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
                opts=opts,
            )
        )
    return created


def cluster_path(args: GpuClusterArgs) -> str:
    """The cluster's resource path, as GKE's API names it."""
    return f"projects/{args.project}/locations/{args.location}/clusters/{args.cluster_name}"


def _kubeconfig_of(cluster: gcp.container.Cluster, dns_endpoint: bool) -> pulumi.Output[str]:
    if dns_endpoint:
        # Google serves the DNS endpoint with a publicly trusted certificate: no CA in the kubeconfig, as
        # `gcloud container clusters get-credentials --dns-endpoint` writes it.
        server = cluster.control_plane_endpoints_config.apply(_dns_endpoint)
        return pulumi.Output.all(cluster.name, server).apply(lambda parts: kubeconfig(parts[0], parts[1], None))
    return pulumi.Output.all(cluster.name, cluster.endpoint, cluster.master_auth.cluster_ca_certificate).apply(
        lambda parts: kubeconfig(parts[0], parts[1], parts[2])
    )


def _dns_endpoint(config: gcp.container.outputs.ClusterControlPlaneEndpointsConfig | None) -> str:
    dns = config.dns_endpoint_config if config is not None else None
    if dns is None or not dns.endpoint:
        raise ValueError("GKE reported no DNS endpoint for the cluster; set cluster.dnsEndpoint: false to use its IP")
    return dns.endpoint


def kubeconfig(cluster_name: str, endpoint: str, ca_certificate: str | None) -> str:
    """A kubeconfig that authenticates with gke-gcloud-auth-plugin, as `gcloud` writes it (JSON is YAML). The
    server is the IP endpoint with the cluster's CA, or the DNS endpoint (ca_certificate None), whose certificate
    the system's trust store verifies."""
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "gke-gcloud-auth-plugin",
            "installHint": "Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin",
            "provideClusterInfo": True,
        }
    }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster_name,
                    "cluster": {"server": f"https://{endpoint}"}
                    | ({"certificate-authority-data": ca_certificate} if ca_certificate is not None else {}),
                }
            ],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
            "current-context": cluster_name,
            "users": [{"name": cluster_name, "user": user}],
        }
    )


def _secrets_key(name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions) -> SecretsKey:
    """A key ring and key of the cluster's own for application-layer Secrets encryption, and the grant GKE's service
    agent needs to use it. The key is kept (protected, retained) wherever the cluster is: destroying it would make
    every Secret of the cluster unreadable."""
    keep = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=args.protect, retain_on_delete=True))
    ring = gcp.kms.KeyRing(
        f"{name}-secrets-ring",
        name=f"{args.cluster_name}-secrets",
        project=args.project,
        location=args.region,
        opts=keep,
    )
    key = gcp.kms.CryptoKey(
        f"{name}-secrets-key",
        name="kubernetes-secrets",
        key_ring=ring.id,
        purpose="ENCRYPT_DECRYPT",
        rotation_period=f"{SECRETS_KEY_ROTATION_DAYS * 86400}s",
        opts=keep,
    )
    project = gcp.organizations.get_project_output(project_id=args.project)
    grant = gcp.kms.CryptoKeyIAMMember(
        f"{name}-secrets-key-gke",
        crypto_key_id=key.id,
        role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
        member=project.number.apply(
            lambda number: f"serviceAccount:service-{number}@container-engine-robot.iam.gserviceaccount.com"
        ),
        opts=opts,
    )
    return SecretsKey(key.id, grant)


@dataclass(frozen=True)
class SecretsKey:
    key_id: pulumi.Output[str]
    grant: pulumi.Resource


def _cluster(
    resource_name: str,
    args: GpuClusterArgs,
    node_account: pulumi.Input[str],
    secrets_key: SecretsKey | None,
    opts: pulumi.ResourceOptions,
) -> gcp.container.Cluster:
    cfg = args.cluster
    container = gcp.container
    if secrets_key is not None:  # the grant first: GKE checks it can use the key when the cluster is made
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[secrets_key.grant]))
    # nodeConfig describes the default pool, which lives only while the cluster is made: once it is removed the API
    # reports none, and the provider would replace the cluster on every `up` (terraform-provider-google#12070), and
    # also on the first `up` of a cluster made before nodeConfig was set here.
    opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["nodeConfig"]))
    return container.Cluster(
        resource_name,
        name=args.cluster_name,
        project=args.project,
        location=args.location,
        # Pools are managed as their own resources; the default pool only exists during creation, and runs as the
        # nodes' own account, not the Compute Engine default one (CIS GKE 5.2.1).
        remove_default_node_pool=True,
        initial_node_count=1,
        node_config=container.ClusterNodeConfigArgs(
            service_account=node_account,
            oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
            shielded_instance_config=container.ClusterNodeConfigShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_integrity_monitoring=True
            ),
            workload_metadata_config=container.ClusterNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
        ),
        # The kubelet's unauthenticated read-only port (10255) off on every node pool (CIS GKE 3.2.4).
        node_pool_defaults=container.ClusterNodePoolDefaultsArgs(
            node_config_defaults=container.ClusterNodePoolDefaultsNodeConfigDefaultsArgs(
                insecure_kubelet_readonly_port_enabled="FALSE"
            )
        ),
        binary_authorization=container.ClusterBinaryAuthorizationArgs(
            evaluation_mode="PROJECT_SINGLETON_POLICY_ENFORCE" if cfg.binary_authorization else "DISABLED"
        ),
        database_encryption=container.ClusterDatabaseEncryptionArgs(state="ENCRYPTED", key_name=secrets_key.key_id)
        if secrets_key is not None
        else None,
        deletion_protection=cfg.deletion_protection,
        network=cfg.network,
        subnetwork=cfg.subnetwork,
        networking_mode="VPC_NATIVE",
        ip_allocation_policy=container.ClusterIpAllocationPolicyArgs(stack_type="IPV4"),
        datapath_provider="ADVANCED_DATAPATH",
        release_channel=container.ClusterReleaseChannelArgs(channel=cfg.release_channel),
        workload_identity_config=container.ClusterWorkloadIdentityConfigArgs(
            workload_pool=f"{args.project}.svc.id.goog"
        ),
        enable_shielded_nodes=True,
        enable_legacy_abac=False,
        master_auth=container.ClusterMasterAuthArgs(
            client_certificate_config=container.ClusterMasterAuthClientCertificateConfigArgs(
                issue_client_certificate=False
            )
        ),
        private_cluster_config=container.ClusterPrivateClusterConfigArgs(
            enable_private_nodes=True,
            enable_private_endpoint=cfg.private_endpoint,
            master_ipv4_cidr_block=cfg.master_ipv4_cidr_block,
        ),
        # Off, the block is left out: the cluster keeps GKE's default (no user traffic over DNS), and an existing
        # stack's first update with clusterIdentifier changes nothing else.
        control_plane_endpoints_config=container.ClusterControlPlaneEndpointsConfigArgs(
            # IAM decides who reaches it; Kubernetes tokens and client certificates are not accepted over it.
            dns_endpoint_config=container.ClusterControlPlaneEndpointsConfigDnsEndpointConfigArgs(
                allow_external_traffic=True, enable_k8s_tokens_via_dns=False, enable_k8s_certs_via_dns=False
            )
        )
        if cfg.dns_endpoint
        else None,
        master_authorized_networks_config=container.ClusterMasterAuthorizedNetworksConfigArgs(
            cidr_blocks=[
                container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                    cidr_block=net.cidr_block, display_name=net.display_name
                )
                for net in cfg.master_authorized_networks
            ],
            gcp_public_cidrs_access_enabled=False,
        ),
        maintenance_policy=container.ClusterMaintenancePolicyArgs(
            recurring_window=container.ClusterMaintenancePolicyRecurringWindowArgs(
                start_time=cfg.maintenance_window.start_time,
                end_time=cfg.maintenance_window.end_time,
                recurrence=cfg.maintenance_window.recurrence,
            )
        ),
        addons_config=container.ClusterAddonsConfigArgs(
            gcs_fuse_csi_driver_config=container.ClusterAddonsConfigGcsFuseCsiDriverConfigArgs(enabled=True),
        ),
        monitoring_config=container.ClusterMonitoringConfigArgs(
            enable_components=["SYSTEM_COMPONENTS", "DCGM"],
            managed_prometheus=container.ClusterMonitoringConfigManagedPrometheusArgs(enabled=True),
        ),
        logging_config=container.ClusterLoggingConfigArgs(enable_components=["SYSTEM_COMPONENTS", "WORKLOADS"]),
        resource_labels={"app": "llm-mesh"},
        opts=opts,
    )


def _node_config(
    service_account: pulumi.Input[str],
    machine_type: str,
    disk_size_gb: int,
    disk_type: str,
    labels: dict[str, str],
    guest_accelerators: list[gcp.container.NodePoolNodeConfigGuestAcceleratorArgs] | None = None,
    spot: bool = False,
    reservation_affinity: gcp.container.NodePoolNodeConfigReservationAffinityArgs | None = None,
    tags: list[str] | None = None,
    taints: list[gcp.container.NodePoolNodeConfigTaintArgs] | None = None,
) -> gcp.container.NodePoolNodeConfigArgs:
    container = gcp.container
    return container.NodePoolNodeConfigArgs(
        machine_type=machine_type,
        disk_size_gb=disk_size_gb,
        disk_type=disk_type,
        image_type="COS_CONTAINERD",
        service_account=service_account,
        oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
        labels=labels,
        metadata={"disable-legacy-endpoints": "true"},
        shielded_instance_config=container.NodePoolNodeConfigShieldedInstanceConfigArgs(
            enable_secure_boot=True, enable_integrity_monitoring=True
        ),
        workload_metadata_config=container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
        # Stated on each pool too: the cluster's default covers pools created after it, and drift shows here.
        kubelet_config=container.NodePoolNodeConfigKubeletConfigArgs(insecure_kubelet_readonly_port_enabled="FALSE"),
        gvnic=container.NodePoolNodeConfigGvnicArgs(enabled=True),
        # Image streaming: multi-GB inference images start in seconds instead of minutes.
        gcfs_config=container.NodePoolNodeConfigGcfsConfigArgs(enabled=True),
        guest_accelerators=guest_accelerators,
        # GKE taints GPU nodes with nvidia.com/gpu=present:NoSchedule itself: only our own taints are listed here.
        taints=taints,
        spot=spot,
        reservation_affinity=reservation_affinity,
        tags=tags,
    )


def _system_pool(
    resource_name: str,
    args: GpuClusterArgs,
    cluster_name: pulumi.Input[str],
    service_account: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> gcp.container.NodePool:
    pool = args.cluster.system_pool
    return gcp.container.NodePool(
        resource_name,
        project=args.project,
        cluster=cluster_name,
        location=args.location,
        autoscaling=gcp.container.NodePoolAutoscalingArgs(min_node_count=pool.min_nodes, max_node_count=pool.max_nodes),
        management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
        node_config=_node_config(
            service_account,
            pool.machine_type,
            pool.disk_size_gb,
            "pd-balanced",
            {POOL_LABEL: "system"},
            tags=[node_tag(args)],
        ),
        opts=opts,
    )


def _compute_class(
    resource_name: str,
    plan: ComputeClassPlan,
    pools: dict[str, gcp.container.NodePool],
    provider: k8s.Provider,
    parent: pulumi.Resource,
) -> k8s.apiextensions.CustomResource:
    """GKE grows the pools in this order (the model's own before its overflow), and moves pods back up."""
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version="cloud.google.com/v1",
        kind="ComputeClass",
        metadata={"name": plan.name},
        spec={
            "priorities": [{"nodepools": [pools[name].name]} for name in plan.pools],
            # Only the pools this stack declares: no node pools created by GKE behind the plan's back.
            "nodePoolAutoCreation": {"enabled": False},
            "whenUnsatisfiable": "DoNotScaleUp",
            # Back to the preferred pool (on-demand) when it has room: spot nodes give 30 s notice, not a drain.
            "activeMigration": {"optimizeRulePriority": True},
        },
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=list(pools.values())),
    )


def _gpu_pool(
    resource_name: str,
    args: GpuClusterArgs,
    pool: GpuPool,
    compute_class: str | None,
    cluster_name: pulumi.Input[str],
    service_account: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> gcp.container.NodePool:
    container = gcp.container
    accelerator = container.NodePoolNodeConfigGuestAcceleratorArgs(
        type=pool.accelerator,
        count=pool.gpu_count,
        # Set explicitly: GKE 1.30+ installs a driver when unset and the provider then shows a diff forever.
        gpu_driver_installation_config=container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
            gpu_driver_version=pool.driver_version
        ),
        gpu_sharing_config=(
            container.NodePoolNodeConfigGuestAcceleratorGpuSharingConfigArgs(
                gpu_sharing_strategy=pool.sharing.strategy,
                max_shared_clients_per_gpu=pool.sharing.max_shared_clients_per_gpu,
            )
            if pool.sharing
            else None
        ),
        gpu_partition_size=pool.mig_partition_size,
    )
    reservation = pool.reservation
    return container.NodePool(
        resource_name,
        project=args.project,
        cluster=cluster_name,
        location=args.location,
        node_locations=args.zones or None,
        autoscaling=container.NodePoolAutoscalingArgs(
            total_min_node_count=pool.min_nodes,
            total_max_node_count=pool.max_nodes,
            location_policy=pool.location_policy,
        ),
        management=container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
        # GPU quota rarely has room for a surge node: replace nodes one at a time instead.
        upgrade_settings=container.NodePoolUpgradeSettingsArgs(max_surge=0, max_unavailable=1),
        node_config=_node_config(
            service_account,
            pool.machine_type,
            pool.disk_size_gb,
            pool.disk_type,
            {
                POOL_LABEL: pool.name,
                "llm-mesh/accelerator": pool.accelerator,
                **({COMPUTE_CLASS_LABEL: compute_class} if compute_class else {}),
            },
            guest_accelerators=[accelerator],
            # GKE uses a pool it did not create for a compute class only with the class's label and taint.
            taints=[
                container.NodePoolNodeConfigTaintArgs(
                    key=COMPUTE_CLASS_LABEL, value=compute_class, effect="NO_SCHEDULE"
                )
            ]
            if compute_class
            else None,
            spot=pool.spot,
            reservation_affinity=(
                container.NodePoolNodeConfigReservationAffinityArgs(
                    consume_reservation_type=reservation.consume,
                    key="compute.googleapis.com/reservation-name" if reservation.name else None,
                    values=[reservation.name] if reservation.name else None,
                )
                if reservation
                else None
            ),
            tags=[node_tag(args)],
        ),
        opts=opts,
    )
