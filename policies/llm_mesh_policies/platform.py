"""Platform rules: GPU workloads, pinned images in prod, hardened GKE, model buckets, protected state."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
)

from llm_mesh_policies.common import (
    BUCKET_TYPE,
    CLUSTER_TYPE,
    GPU,
    HELM_RELEASE_TYPE,
    NODE_POOL_TYPE,
    WORKLOAD_TYPES,
    containers,
    environment,
    pod_spec,
    quantity,
    resource_rule,
)

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
BINARY_AUTHORIZATION_ENFORCED = (
    "PROJECT_SINGLETON_POLICY_ENFORCE",
    "POLICY_BINDINGS_AND_PROJECT_SINGLETON_POLICY_ENFORCE",
)
# GKE's release registry publishes each build under a new `-gke.N` tag and never moves one (as llm_mesh.plan.config).
GKE_RELEASE = re.compile(r"^gcr\.io/gke-release/[a-z0-9/_-]+:v[0-9.]+-gke\.[0-9]+$")


def image_pinned(image: str) -> bool:
    return bool(DIGEST.search(image) or GKE_RELEASE.match(image))


RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")


def _tolerates_gpu(pod: Mapping[str, Any]) -> bool:
    for toleration in pod.get("tolerations") or []:
        if toleration.get("key") != GPU or toleration.get("effect") not in (None, "", "NoSchedule"):
            continue
        if toleration.get("operator") == "Exists" or toleration.get("value") == "present":
            return True
    return False


def same_quantity(a: Any, b: Any) -> bool:
    """Equal amounts (`1`, sent as 1.0, equals "1"); text that is no quantity only equals the same text."""
    amount_a, amount_b = quantity(a), quantity(b)
    if amount_a is None or amount_b is None:
        return str(a) == str(b)
    return amount_a == amount_b


def shown(value: Any) -> str:
    """A quantity as the program wrote it: the engine's 1.0 for a `1` is shown as 1."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _validate_gpu(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in WORKLOAD_TYPES:
        return
    pod = pod_spec(args.resource_type, args.props)
    gpu_containers = 0
    for container in containers(pod):
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        if GPU not in requests and GPU not in limits:
            continue
        gpu_containers += 1
        name = container.get("name")
        if GPU not in limits:
            report_violation(
                f"container {name} requests {GPU} without a limit; GPUs are requested through limits", args.urn
            )
        elif GPU in requests and not same_quantity(requests[GPU], limits[GPU]):
            report_violation(
                f"container {name}: {GPU} request {shown(requests[GPU])} differs from its limit {shown(limits[GPU])}",
                args.urn,
            )
    if gpu_containers and not _tolerates_gpu(pod):
        report_violation(f"the pod uses GPUs but does not tolerate GKE's {GPU}=present:NoSchedule taint", args.urn)


gpu_workload_limits = resource_rule(
    name="gpu-workload-limits",
    description="GPU workloads set nvidia.com/gpu limits (equal to requests) and tolerate the GPU node taint.",
    validate=_validate_gpu,
    remediation="Set resources.limits['nvidia.com/gpu'] (= requests) and tolerate key nvidia.com/gpu, operator Exists, effect NoSchedule.",
)


def _validate_digests(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if environment(args.urn, args.get_config()) != "prod":
        return
    if args.resource_type == HELM_RELEASE_TYPE:
        # A chart's images follow its version (Istio's charts take a hub and tag, not digests): pin the version.
        if not args.props.get("version"):
            report_violation(
                f"Helm release {args.props.get('name')} installs chart {args.props.get('chart')} at no pinned version",
                args.urn,
            )
        return
    if args.resource_type not in WORKLOAD_TYPES:
        return
    for container in containers(pod_spec(args.resource_type, args.props)):
        image = str(container.get("image") or "")
        if not image_pinned(image):
            report_violation(f"container {container.get('name')} runs {image!r}, not pinned by digest", args.urn)


prod_images_pinned = resource_rule(
    name="prod-images-pinned-by-digest",
    description="In prod, every container image the stack declares is pinned by digest (repo@sha256:...), and every Helm chart by version.",
    validate=_validate_digests,
    remediation="Replace the tag with the image's digest: `crane digest <image>:<tag>`.",
)


def _get(props: Mapping[str, Any], path: str) -> Any:
    value: Any = props
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _validate_cluster(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != CLUSTER_TYPE:
        return
    props = args.props
    if not _get(props, "workloadIdentityConfig.workloadPool"):
        report_violation(
            "Workload Identity is off: set workloadIdentityConfig.workloadPool to <project>.svc.id.goog", args.urn
        )
    if _get(props, "privateClusterConfig.enablePrivateNodes") is not True:
        report_violation("nodes have public IPs: set privateClusterConfig.enablePrivateNodes: true", args.urn)
    if props.get("enableShieldedNodes") is False:
        report_violation("shielded nodes are off: set enableShieldedNodes: true", args.urn)
    if _get(props, "releaseChannel.channel") not in RELEASE_CHANNELS:
        report_violation(
            f"no release channel: set releaseChannel.channel to one of {', '.join(RELEASE_CHANNELS)}", args.urn
        )
    if props.get("enableLegacyAbac") is True:
        report_violation("legacy ABAC is on: set enableLegacyAbac: false", args.urn)
    if _get(props, "masterAuth.clientCertificateConfig.issueClientCertificate") is True:
        report_violation(
            "client certificates are issued: set masterAuth.clientCertificateConfig.issueClientCertificate: false",
            args.urn,
        )
    if _get(props, "masterAuth.username") or _get(props, "masterAuth.password"):
        report_violation("basic authentication is configured: remove masterAuth.username and password", args.urn)
    if _get(props, "binaryAuthorization.evaluationMode") not in BINARY_AUTHORIZATION_ENFORCED:
        report_violation(
            "Binary Authorization does not enforce: set binaryAuthorization.evaluationMode: "
            "PROJECT_SINGLETON_POLICY_ENFORCE (CIS GKE 5.10.4)",
            args.urn,
        )
    if _get(props, "nodePoolDefaults.nodeConfigDefaults.insecureKubeletReadonlyPortEnabled") != "FALSE":
        report_violation(
            "the kubelet's read-only port is not closed for new pools: set "
            "nodePoolDefaults.nodeConfigDefaults.insecureKubeletReadonlyPortEnabled: FALSE (CIS GKE 3.2.4)",
            args.urn,
        )
    _validate_control_plane_access(props, args.urn, report_violation)
    prod = environment(args.urn, args.get_config()) == "prod"
    # The provider defaults deletionProtection to true: only an explicit false is a violation.
    if prod and props.get("deletionProtection") is False:
        report_violation("deletion protection is off in prod: set deletionProtection: true", args.urn)
    if prod and _get(props, "databaseEncryption.state") != "ENCRYPTED":
        report_violation(
            "Secrets are not encrypted with a KMS key in prod: set databaseEncryption {state: ENCRYPTED, keyName} "
            "(CIS GKE 5.3.1; the stack's cluster.secretsEncryption)",
            args.urn,
        )


def _validate_control_plane_access(props: Mapping[str, Any], urn: str, report_violation: ReportViolation) -> None:
    """Who reaches the API server: over DNS, IAM alone; over a public IP, the authorized networks only."""
    dns = _get(props, "controlPlaneEndpointsConfig.dnsEndpointConfig") or {}
    if dns.get("allowExternalTraffic") is True and (
        dns.get("enableK8sTokensViaDns") is True or dns.get("enableK8sCertsViaDns") is True
    ):
        report_violation(
            "the DNS endpoint accepts Kubernetes tokens or client certificates, which IAM does not check: set "
            "controlPlaneEndpointsConfig.dnsEndpointConfig.enableK8sTokensViaDns and enableK8sCertsViaDns: false",
            urn,
        )
    if _get(props, "privateClusterConfig.enablePrivateEndpoint") is True:
        return
    # Without the block, GKE admits every address to the public IP endpoint; with it, only the blocks listed.
    authorized = props.get("masterAuthorizedNetworksConfig")
    blocks = [str(b.get("cidrBlock")) for b in (authorized or {}).get("cidrBlocks") or [] if isinstance(b, Mapping)]
    if not isinstance(authorized, Mapping) or any(block.endswith("/0") for block in blocks):
        report_violation(
            "the API server's public IP endpoint admits any address: set masterAuthorizedNetworksConfig with the "
            "networks that run kubectl, or privateClusterConfig.enablePrivateEndpoint: true (CIS GKE 5.6.3)",
            urn,
        )


gke_cluster_hardening = resource_rule(
    name="gke-cluster-hardening",
    description="The GKE cluster has Workload Identity, private nodes, shielded nodes, a release channel, Binary Authorization enforced, the kubelet read-only port closed, no legacy ABAC, client certificates or basic auth, an API server reached over IP from authorized networks only and over DNS by IAM only, and in prod deletion protection and Secrets encrypted with a KMS key.",
    validate=_validate_cluster,
    remediation="Set the named cluster fields; GpuCluster sets all of them.",
)


def _validate_node_pool(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != NODE_POOL_TYPE:
        return
    node_config = args.props.get("nodeConfig") or {}
    if _get(node_config, "shieldedInstanceConfig.enableSecureBoot") is not True:
        report_violation(
            "nodes boot without secure boot: set nodeConfig.shieldedInstanceConfig.enableSecureBoot: true", args.urn
        )
    if _get(node_config, "workloadMetadataConfig.mode") != "GKE_METADATA":
        report_violation(
            "pods can read the node's credentials: set nodeConfig.workloadMetadataConfig.mode: GKE_METADATA",
            args.urn,
        )
    if _get(node_config, "kubeletConfig.insecureKubeletReadonlyPortEnabled") != "FALSE":
        report_violation(
            "the kubelet's unauthenticated read-only port is open: set "
            "nodeConfig.kubeletConfig.insecureKubeletReadonlyPortEnabled: FALSE (CIS GKE 3.2.4)",
            args.urn,
        )


gke_node_pool_hardening = resource_rule(
    name="gke-node-pool-hardening",
    description="Node pools boot shielded with secure boot, expose only the GKE metadata server (Workload Identity) and close the kubelet's read-only port.",
    validate=_validate_node_pool,
    remediation="Set nodeConfig.shieldedInstanceConfig.enableSecureBoot and workloadMetadataConfig.mode GKE_METADATA.",
)


def _validate_bucket(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != BUCKET_TYPE:
        return
    props = args.props
    if props.get("uniformBucketLevelAccess") is not True:
        report_violation("object ACLs are allowed: set uniformBucketLevelAccess: true", args.urn)
    if props.get("publicAccessPrevention") != "enforced":
        report_violation("public access is not prevented: set publicAccessPrevention: enforced", args.urn)
    if _get(props, "versioning.enabled") is not True:
        report_violation("an overwritten model artifact is lost: set versioning.enabled: true", args.urn)


model_bucket_hardening = resource_rule(
    name="model-bucket-hardening",
    description="Model buckets have uniform bucket-level access, public access prevention enforced and versioning.",
    validate=_validate_bucket,
    remediation="Set uniformBucketLevelAccess: true, publicAccessPrevention: enforced, versioning.enabled: true.",
)

STATEFUL = (CLUSTER_TYPE, BUCKET_TYPE)


def _validate_protected(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in STATEFUL or environment(args.urn, args.get_config()) != "prod":
        return
    if not args.opts.protect:
        report_violation(f"{args.resource_type} is not protected in prod: a bad `pulumi up` could delete it", args.urn)


prod_stateful_protected = resource_rule(
    name="prod-stateful-resources-protected",
    description="In prod, stateful resources (the GKE cluster, the model bucket) carry Pulumi's protect option.",
    validate=_validate_protected,
    remediation="Declare them with pulumi.ResourceOptions(protect=True); llm-mesh does in prod.",
)

PLATFORM_POLICIES = [
    gpu_workload_limits,
    prod_images_pinned,
    gke_cluster_hardening,
    gke_node_pool_hardening,
    model_bucket_hardening,
    prod_stateful_protected,
]
