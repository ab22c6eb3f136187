"""Each rule of the policy pack: a compliant input passes, a violating one fails, as the engine presents them."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
import yaml
from llm_mesh_policies import PACK_VERSION, POLICIES
from llm_mesh_policies.common import quantity
from llm_mesh_policies.ingress import gateway_refs
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from llm_mesh.checks.policy_runner import PARTIAL, PolicyConfigError, run_policies
from llm_mesh.engine.readers import EngineResource
from tests.policies.builders import (
    ALLOW_NOTHING,
    BUCKET,
    BY_NAME,
    DIGEST,
    EXPOSED,
    EXTERNAL,
    GATEWAY,
    GPU,
    GPU_CONTAINER,
    GPU_TOLERATION,
    HARDENED,
    ISTIOD,
    LB_TYPE,
    MESH_WIDE,
    NO_JWT,
    PACK,
    STRICT,
    UNKNOWN,
    anonymous,
    authorization,
    deployment,
    dr,
    found,
    gateway_release,
    gcp,
    k8s,
    namespace,
    pa,
    request_authentication,
    urn,
    violations,
    virtual_service,
)

# --- istio-peer-authentication-strict


def test_strict_peer_authentications_pass() -> None:
    workload = pa(
        "inference",
        {"selector": {"matchLabels": {"app": "x"}}, "portLevelMtls": {"8000": {"mode": "STRICT"}}},
        "server",
    )
    assert violations("istio-peer-authentication-strict", [MESH_WIDE, pa("inference", STRICT), workload]) == []


def test_unset_mode_passes_only_when_it_inherits_strict() -> None:
    assert violations("istio-peer-authentication-strict", [MESH_WIDE, pa("inference")]) == []
    assert violations("istio-peer-authentication-strict", [pa("inference")]) == [
        "mtls.mode is UNSET and inherits no STRICT policy; set mode: STRICT"
    ]


@pytest.mark.parametrize("mode", ["PERMISSIVE", "DISABLE"])
def test_weaker_modes_fail(mode: str) -> None:
    assert violations("istio-peer-authentication-strict", [MESH_WIDE, pa("inference", {"mtls": {"mode": mode}})]) == [
        f"mtls.mode is {mode}; every PeerAuthentication must be STRICT"
    ]


def test_port_level_exception_fails() -> None:
    weak = pa(
        "inference",
        {
            "selector": {"matchLabels": {"app": "x"}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {"9090": {"mode": "PERMISSIVE"}},
        },
        "server",
    )
    assert violations("istio-peer-authentication-strict", [MESH_WIDE, weak]) == [
        "portLevelMtls[9090].mode is PERMISSIVE: it weakens STRICT on that port"
    ]


# --- istio-mesh-wide-strict-mtls


def test_mesh_wide_strict_present_or_declared_elsewhere() -> None:
    assert violations("istio-mesh-wide-strict-mtls", [MESH_WIDE]) == []
    assert (
        violations(
            "istio-mesh-wide-strict-mtls",
            [],
            config={"istio-mesh-wide-strict-mtls": {"meshWideMtlsManagedElsewhere": True}},
        )
        == []
    )


@pytest.mark.parametrize(
    "resources",
    [
        [],
        [pa("inference", STRICT)],
        [pa("istio-system", {"selector": {"matchLabels": {"a": "b"}}, **STRICT})],
        [pa("istio-system", {"mtls": {"mode": "PERMISSIVE"}})],
    ],
)
def test_mesh_wide_strict_missing(resources: list[EngineResource]) -> None:
    assert violations("istio-mesh-wide-strict-mtls", resources) == [
        "no PeerAuthentication in istio-system without a selector and with mode STRICT"
    ]


# --- istio-destination-rule-tls


def test_istio_mutual_and_external_simple_pass() -> None:
    assert (
        violations(
            "istio-destination-rule-tls",
            [dr("llama.inference.svc.cluster.local", trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}})],
        )
        == []
    )
    assert (
        violations("istio-destination-rule-tls", [dr("api.openai.com", trafficPolicy={"tls": {"mode": "SIMPLE"}})])
        == []
    )


@pytest.mark.parametrize(
    ("policy", "where"),
    [
        ({"trafficPolicy": {"tls": {"mode": "DISABLE"}}}, "trafficPolicy.tls.mode is DISABLE"),
        (
            {"trafficPolicy": {"portLevelSettings": [{"port": {"number": 8000}, "tls": {"mode": "SIMPLE"}}]}},
            "trafficPolicy.portLevelSettings[0].tls.mode is SIMPLE",
        ),
        (
            {"subsets": [{"name": "canary", "labels": {"v": "c"}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]},
            "subsets[0].trafficPolicy.tls.mode is DISABLE",
        ),
    ],
)
def test_weak_tls_to_in_mesh_host_fails(policy: dict[str, Any], where: str) -> None:
    assert violations("istio-destination-rule-tls", [dr("llama", **policy)]) == [
        f"{where} for in-mesh host llama: it bypasses mutual TLS"
    ]


# --- istio-namespace-allow-nothing and istio-namespace-injection


def test_allow_nothing_per_workload_namespace() -> None:
    workload = deployment("inference", GPU_CONTAINER, tolerations=GPU_TOLERATION)
    assert violations("istio-namespace-allow-nothing", [workload, ALLOW_NOTHING]) == []
    assert violations("istio-namespace-allow-nothing", [workload]) == [
        "namespace inference runs workloads but has no allow-nothing AuthorizationPolicy"
    ]
    scoped = k8s(
        "AuthorizationPolicy",
        "security.istio.io/v1",
        "inference",
        "allow-nothing",
        {"selector": {"matchLabels": {"a": "b"}}},
    )
    assert violations("istio-namespace-allow-nothing", [workload, scoped]) == [
        "namespace inference runs workloads but has no allow-nothing AuthorizationPolicy"
    ], "a selector makes it not namespace-wide"


@pytest.mark.parametrize(
    "labels", [{"istio.io/rev": "1-31"}, {"istio-injection": "enabled"}, {"istio.io/dataplane-mode": "ambient"}]
)
def test_injected_namespaces_pass(labels: dict[str, str]) -> None:
    assert (
        violations(
            "istio-namespace-injection", [namespace("inference", labels), deployment("inference", GPU_CONTAINER)]
        )
        == []
    )


@pytest.mark.parametrize(
    ("labels", "fix"),
    [
        ({}, "add the label istio.io/rev=1-31"),
        ({"istio-injection": "disabled", "istio.io/rev": "1-31"}, "remove the label istio-injection=disabled"),
        ({"istio-injection": "disabled"}, "remove the label istio-injection=disabled and add istio.io/rev=1-31"),
    ],
)
def test_uninjected_namespace_is_reported_on_the_namespace(labels: dict[str, str], fix: str) -> None:
    declared = namespace("inference", labels)
    found = run_policies(
        [BY_NAME["istio-namespace-injection"]], [ISTIOD, deployment("inference", GPU_CONTAINER), declared]
    ).violations
    assert [(v.urn, v.message) for v in found] == [
        (declared.urn, f"namespace inference runs workloads without sidecar injection or ambient mode: {fix}")
    ]


def test_undeclared_namespace_is_reported_on_its_first_workload() -> None:
    first, second = deployment("inference", GPU_CONTAINER), deployment("inference", GPU_CONTAINER)
    second = EngineResource(**{**second.__dict__, "urn": second.urn.replace("::inference-server", "::inference-z")})
    found = run_policies([BY_NAME["istio-namespace-injection"]], [second, first]).violations
    assert [(v.urn, v.message) for v in found] == [
        (
            first.urn,
            "namespace inference runs workloads (inference-server) but the stack does not declare it: declare "
            "Namespace inference and add the label istio.io/rev=<revision> (or istio-injection=enabled), "
            "or list it in injectedNamespaces",
        )
    ]


def test_injection_managed_elsewhere_is_configurable() -> None:
    config = {"istio-namespace-injection": {"injectedNamespaces": ["inference"]}}
    assert violations("istio-namespace-injection", [deployment("inference", GPU_CONTAINER)], config=config) == []


# --- istio-authorization-positive-allow


def allow(*rules: dict[str, Any], action: str | None = "ALLOW") -> EngineResource:
    spec: dict[str, Any] = {"rules": list(rules)}
    if action:
        spec["action"] = action
    return k8s("AuthorizationPolicy", "security.istio.io/v1", "inference", "callers", spec)


GOOD_RULE = {
    "from": [{"source": {"principals": ["cluster.local/ns/istio-ingress/sa/istio-ingressgateway"]}}],
    "to": [{"operation": {"methods": ["POST"], "paths": ["/v1/completions"]}}],
}


def test_positive_allow_passes() -> None:
    assert (
        violations(
            "istio-authorization-positive-allow", [allow(GOOD_RULE), allow(GOOD_RULE, action=None), ALLOW_NOTHING]
        )
        == []
    )
    assert (
        violations(
            "istio-authorization-positive-allow",
            [allow({"from": [{"source": {"notPrincipals": ["*"]}}]}, action="DENY")],
        )
        == []
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({}, "rules[0] is empty: it allows every request"),
        ({**GOOD_RULE, "from": [{"source": {"principals": ["*"]}}]}, "rules[0] allows a wildcard principal: ['*']"),
        ({**GOOD_RULE, "from": [{"source": {"namespaces": ["*"]}}]}, "rules[0] allows a wildcard namespace: ['*']"),
        ({"to": GOOD_RULE["to"]}, "rules[0] names no source identity (principals or namespaces)"),
        (
            {**GOOD_RULE, "from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]},
            "rules[0] names no source identity (principals or namespaces)",
        ),
        ({"from": GOOD_RULE["from"]}, "rules[0] does not name both methods and paths"),
        ({**GOOD_RULE, "to": [{"operation": {"methods": ["POST"]}}]}, "rules[0] does not name both methods and paths"),
    ],
)
def test_loose_allow_fails(rule: dict[str, Any], message: str) -> None:
    assert violations("istio-authorization-positive-allow", [allow(rule)]) == [message]


# --- gpu-workload-limits


def test_gpu_workload_with_limits_and_toleration_passes() -> None:
    cpu_only = deployment("web", {"name": "web", "image": "nginx" + DIGEST})
    assert (
        violations(
            "gpu-workload-limits", [deployment("inference", GPU_CONTAINER, tolerations=GPU_TOLERATION), cpu_only]
        )
        == []
    )


@pytest.mark.parametrize(
    ("resources", "tolerations", "message"),
    [
        (
            {"requests": {"nvidia.com/gpu": "1"}},
            GPU_TOLERATION,
            "container server requests nvidia.com/gpu without a limit; GPUs are requested through limits",
        ),
        (
            {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}},
            GPU_TOLERATION,
            "container server: nvidia.com/gpu request 1 differs from its limit 2",
        ),
        (
            {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": "2"}},
            GPU_TOLERATION,
            "container server: nvidia.com/gpu request 1 differs from its limit 2",
        ),
        (
            {"limits": {"nvidia.com/gpu": "1"}},
            [],
            "the pod uses GPUs but does not tolerate GKE's nvidia.com/gpu=present:NoSchedule taint",
        ),
        (
            {"limits": {"nvidia.com/gpu": "1"}},
            [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}],
            "the pod uses GPUs but does not tolerate GKE's nvidia.com/gpu=present:NoSchedule taint",
        ),
    ],
)
def test_gpu_workload_without_limits_or_toleration_fails(
    resources: dict[str, Any], tolerations: list[Any], message: str
) -> None:
    found = violations(
        "gpu-workload-limits",
        [deployment("inference", {**GPU_CONTAINER, "resources": resources}, tolerations=tolerations)],
    )
    assert found == [message]


@pytest.mark.parametrize(("request_", "limit"), [(1, "1"), (1.0, "1"), ("1", 1), (2, "2.0"), ("1000m", 1), ("1", "1")])
def test_gpu_request_equal_to_its_limit_as_a_quantity_passes(request_: Any, limit: Any) -> None:
    """The engine sends a number written 1 as 1.0: a quantity compares as an amount, not as text."""
    container = {**GPU_CONTAINER, "resources": {"requests": {GPU: request_}, "limits": {GPU: limit}}}
    assert violations("gpu-workload-limits", [deployment("inference", container, tolerations=GPU_TOLERATION)]) == []


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        (1, Decimal(1)),
        (1.0, Decimal(1)),
        ("1", Decimal(1)),
        (" 2 ", Decimal(2)),
        ("500m", Decimal("0.5")),
        ("1Gi", Decimal(2**30)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("1E", Decimal(10**18)),
        ("one", None),
        (True, None),
        (None, None),
    ],
)
def test_kubernetes_quantities(text: Any, amount: Decimal | None) -> None:
    assert quantity(text) == amount


# --- prod-images-pinned-by-digest


def test_pinned_images_in_prod_and_tags_elsewhere_pass() -> None:
    init = {"name": "fetch", "image": "vllm/vllm-openai" + DIGEST}
    assert (
        violations("prod-images-pinned-by-digest", [deployment("inference", GPU_CONTAINER, initContainers=[init])])
        == []
    )
    tagged = EngineResource(
        **{
            **deployment("inference", {**GPU_CONTAINER, "image": "vllm/vllm-openai:latest"}).__dict__,
            "urn": urn("dev", "kubernetes:apps/v1:Deployment", "x"),
        }
    )
    assert violations("prod-images-pinned-by-digest", [tagged]) == []


def test_tags_in_prod_fail_including_init_containers() -> None:
    init = {"name": "fetch", "image": "curlimages/curl:8.11.0"}
    found = violations("prod-images-pinned-by-digest", [deployment("inference", GPU_CONTAINER, initContainers=[init])])
    assert found == ["container fetch runs 'curlimages/curl:8.11.0', not pinned by digest"]


def test_environment_override_applies_prod_rules_to_any_stack_name() -> None:
    tagged = EngineResource(
        **{
            **deployment("inference", {**GPU_CONTAINER, "image": "vllm/vllm-openai:latest"}).__dict__,
            "urn": urn("acme-eu", "kubernetes:apps/v1:Deployment", "x"),
        }
    )
    assert violations("prod-images-pinned-by-digest", [tagged], environment="dev") == []
    assert len(violations("prod-images-pinned-by-digest", [tagged], environment="prod")) == 1


# --- gke-cluster-hardening and gke-node-pool-hardening


def test_hardened_cluster_passes() -> None:
    assert violations("gke-cluster-hardening", [gcp("gcp:container/cluster:Cluster", "gke", HARDENED)]) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"workloadIdentityConfig": None}, "Workload Identity is off"),
        ({"privateClusterConfig": {"enablePrivateNodes": False}}, "nodes have public IPs"),
        ({"enableShieldedNodes": False}, "shielded nodes are off"),
        ({"releaseChannel": {"channel": "UNSPECIFIED"}}, "no release channel"),
        ({"enableLegacyAbac": True}, "legacy ABAC is on"),
        (
            {"masterAuth": {"clientCertificateConfig": {"issueClientCertificate": True}}},
            "client certificates are issued",
        ),
        ({"masterAuth": {"username": "admin", "password": "x"}}, "basic authentication is configured"),
        ({"deletionProtection": False}, "deletion protection is off in prod"),
        ({"binaryAuthorization": {"evaluationMode": "DISABLED"}}, "Binary Authorization does not enforce"),
        ({"nodePoolDefaults": None}, "the kubelet's read-only port is not closed for new pools"),
        ({"databaseEncryption": {"state": "DECRYPTED"}}, "Secrets are not encrypted with a KMS key in prod"),
        (
            {
                "controlPlaneEndpointsConfig": {
                    "dnsEndpointConfig": {"allowExternalTraffic": True, "enableK8sTokensViaDns": True}
                }
            },
            "the DNS endpoint accepts Kubernetes tokens or client certificates",
        ),
        ({"masterAuthorizedNetworksConfig": None}, "the API server's public IP endpoint admits any address"),
        (
            {"masterAuthorizedNetworksConfig": {"cidrBlocks": [{"cidrBlock": "0.0.0.0/0", "displayName": "all"}]}},
            "the API server's public IP endpoint admits any address",
        ),
    ],
)
def test_weakened_cluster_fails(change: dict[str, Any], message: str) -> None:
    inputs = {k: v for k, v in {**HARDENED, **change}.items() if v is not None}
    found = violations("gke-cluster-hardening", [gcp("gcp:container/cluster:Cluster", "gke", inputs)])
    assert len(found) == 1 and found[0].startswith(message)


def test_deletion_protection_and_secrets_encryption_may_be_off_in_dev() -> None:
    relaxed = {**HARDENED, "deletionProtection": False, "databaseEncryption": {"state": "DECRYPTED"}}
    cluster = gcp("gcp:container/cluster:Cluster", "gke", relaxed, stack="dev")
    assert violations("gke-cluster-hardening", [cluster]) == []


def test_node_pool_hardening() -> None:
    good: dict[str, Any] = {
        "nodeConfig": {
            "shieldedInstanceConfig": {"enableSecureBoot": True},
            "workloadMetadataConfig": {"mode": "GKE_METADATA"},
            "kubeletConfig": {"insecureKubeletReadonlyPortEnabled": "FALSE"},
        }
    }
    assert violations("gke-node-pool-hardening", [gcp("gcp:container/nodePool:NodePool", "pool", good)]) == []
    bad = copy.deepcopy(good)
    bad["nodeConfig"]["shieldedInstanceConfig"]["enableSecureBoot"] = False
    bad["nodeConfig"]["workloadMetadataConfig"]["mode"] = "GCE_METADATA"
    del bad["nodeConfig"]["kubeletConfig"]
    assert len(violations("gke-node-pool-hardening", [gcp("gcp:container/nodePool:NodePool", "pool", bad)])) == 3


# --- model-bucket-hardening and prod-stateful-resources-protected


def test_model_bucket_hardening() -> None:
    assert violations("model-bucket-hardening", [gcp("gcp:storage/bucket:Bucket", "models", BUCKET)]) == []
    cases: list[tuple[dict[str, Any], str]] = [
        ({"uniformBucketLevelAccess": False}, "object ACLs are allowed"),
        ({"publicAccessPrevention": "inherited"}, "public access is not prevented"),
        ({"versioning": {"enabled": False}}, "an overwritten model artifact is lost"),
    ]
    for change, message in cases:
        found = violations("model-bucket-hardening", [gcp("gcp:storage/bucket:Bucket", "models", {**BUCKET, **change})])
        assert len(found) == 1 and found[0].startswith(message)


def test_stateful_resources_protected_in_prod_only() -> None:
    protected = [
        gcp("gcp:storage/bucket:Bucket", "models", BUCKET, protect=True),
        gcp("gcp:container/cluster:Cluster", "gke", HARDENED, protect=True),
    ]
    assert violations("prod-stateful-resources-protected", protected) == []
    assert (
        violations(
            "prod-stateful-resources-protected", [gcp("gcp:storage/bucket:Bucket", "models", BUCKET, stack="dev")]
        )
        == []
    )
    assert violations("prod-stateful-resources-protected", [gcp("gcp:storage/bucket:Bucket", "models", BUCKET)]) == [
        "gcp:storage/bucket:Bucket is not protected in prod: a bad `pulumi up` could delete it"
    ]


# --- the engine's own call shape, and enforcement levels


def test_rule_called_directly_as_the_analyzer_does() -> None:
    found: list[tuple[str, str | None]] = []
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    resource_urn = urn("prod", "gcp:container/cluster:Cluster", "gke")
    args = ResourceValidationArgs(
        "gcp:container/cluster:Cluster", {**HARDENED, "enableLegacyAbac": True}, resource_urn, "gke", opts, None
    )
    policy = BY_NAME["gke-cluster-hardening"]
    assert isinstance(policy, ResourceValidationPolicy)

    def report(message: str, u: str | None = None) -> None:
        found.append((message, u))

    policy.validate(args, report)
    assert found == [("legacy ABAC is on: set enableLegacyAbac: false", resource_urn)]


def test_external_hosts_may_originate_tls() -> None:
    for host in ("github.com", "api.openai.com", "storage.googleapis.com"):
        assert violations("istio-destination-rule-tls", [dr(host, trafficPolicy={"tls": {"mode": "SIMPLE"}})]) == []


def test_namespace_qualified_host_is_in_the_mesh_when_the_stack_has_that_namespace() -> None:
    weak = dr("llama.inference", trafficPolicy={"tls": {"mode": "DISABLE"}})
    assert len(violations("istio-destination-rule-tls", [weak, namespace("inference", {"istio.io/rev": "1-31"})])) == 1


def test_helm_charts_are_pinned_by_version_in_prod() -> None:
    def release(version: str | None) -> EngineResource:
        inputs = {"name": "istiod-1-31", "chart": "istiod", **({"version": version} if version else {})}
        return gcp("kubernetes:helm.sh/v3:Release", "istiod", inputs)

    assert violations("prod-images-pinned-by-digest", [release("1.31.1")]) == []
    assert violations("prod-images-pinned-by-digest", [release(None)]) == [
        "Helm release istiod-1-31 installs chart istiod at no pinned version"
    ]


def test_stack_rules_wait_for_a_complete_document() -> None:
    report = run_policies(POLICIES, [dr("llama", trafficPolicy={"tls": {"mode": "DISABLE"}})], complete=False)
    assert report.violations == []
    stack_rules = [p.name for p in POLICIES if isinstance(p, StackValidationPolicy)]
    assert stack_rules == [
        "istio-peer-authentication-strict",
        "istio-mesh-wide-strict-mtls",
        "istio-destination-rule-tls",
        "istio-namespace-allow-nothing",
        "istio-namespace-injection",
        "prod-inference-not-anonymous",
        "inference-pool-in-mesh",
        "endpoint-picker-no-secrets",
    ]
    assert report.not_evaluated == [(name, "", PARTIAL) for name in stack_rules]


# --- values unknown during preview (the engine's sentinel; reading one raises UnknownValueError)

UNKNOWN_NAMESPACE = "string value at .metadata.namespace can't be known during preview"


def test_unknown_value_in_a_resource_rule_names_its_path() -> None:
    cluster = gcp(
        "gcp:container/cluster:Cluster", "gke", {**HARDENED, "workloadIdentityConfig": {"workloadPool": UNKNOWN}}
    )
    report = run_policies([BY_NAME["gke-cluster-hardening"]], [cluster])
    assert report.violations == []
    assert report.not_evaluated == [
        (
            "gke-cluster-hardening",
            cluster.urn,
            "string value at .workloadIdentityConfig.workloadPool can't be known during preview",
        )
    ]


def test_unknown_host_leaves_out_only_its_destination_rule() -> None:
    unknown_host = dr(UNKNOWN)
    weak = k8s(
        "DestinationRule",
        "networking.istio.io/v1",
        "inference",
        "weak",
        {"host": "weak", "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
    )
    assert found("istio-destination-rule-tls", [unknown_host, weak]) == (
        [("trafficPolicy.tls.mode is DISABLE for in-mesh host weak: it bypasses mutual TLS", weak.urn)],
        [(unknown_host.urn, "string value at .spec.host can't be known during preview")],
    )


def unknown_namespace(resource: EngineResource) -> EngineResource:
    inputs = copy.deepcopy(resource.inputs)
    inputs["metadata"]["namespace"] = UNKNOWN
    return EngineResource(**{**resource.__dict__, "urn": resource.urn + "-unknown", "inputs": inputs})


WEB = deployment("web", {"name": "web", "image": "nginx" + DIGEST})
COMPUTED = unknown_namespace(deployment("inference", GPU_CONTAINER))


@pytest.mark.parametrize(
    ("policy", "resources", "message"),
    [
        (
            "istio-namespace-allow-nothing",
            [COMPUTED, WEB],
            "namespace web runs workloads but has no allow-nothing AuthorizationPolicy",
        ),
        (
            "istio-namespace-injection",
            [COMPUTED, WEB, namespace("web", {})],
            "namespace web runs workloads without sidecar injection or ambient mode: "
            "add the label istio.io/rev=<revision> (or istio-injection=enabled)",
        ),
    ],
)
def test_unknown_namespace_leaves_out_only_its_workload(
    policy: str, resources: list[EngineResource], message: str
) -> None:
    violations_, not_evaluated = found(policy, resources)
    assert [m for m, _ in violations_] == [message]
    assert not_evaluated == [(COMPUTED.urn, UNKNOWN_NAMESPACE)]


def test_unknown_namespace_of_what_could_satisfy_a_rule_is_not_evaluated_rather_than_a_violation() -> None:
    computed_policy = unknown_namespace(ALLOW_NOTHING)
    workload = deployment("inference", GPU_CONTAINER)
    assert found("istio-namespace-allow-nothing", [workload, computed_policy]) == (
        [],
        [
            (
                workload.urn,
                "namespace inference runs workloads but has no allow-nothing AuthorizationPolicy, unless "
                f"{computed_policy.name} (unknown during preview) provides it",
            )
        ],
    )
    computed_mesh_wide = unknown_namespace(MESH_WIDE)
    assert found("istio-mesh-wide-strict-mtls", [computed_mesh_wide]) == (
        [],
        [
            (
                "",
                "no PeerAuthentication in istio-system without a selector and with mode STRICT, unless "
                f"{computed_mesh_wide.name} (unknown during preview) provides it",
            )
        ],
    )


def test_unknown_peer_authentication_leaves_the_others_checked() -> None:
    permissive = pa("inference", {"mtls": {"mode": "PERMISSIVE"}})
    computed = unknown_namespace(pa("model-store", STRICT))
    assert found("istio-peer-authentication-strict", [MESH_WIDE, permissive, computed]) == (
        [("mtls.mode is PERMISSIVE; every PeerAuthentication must be STRICT", permissive.urn)],
        [(computed.urn, UNKNOWN_NAMESPACE)],
    )


def test_every_rule_is_mandatory_by_default_and_lowered_only_in_dev() -> None:
    report = run_policies(POLICIES, [], environment="dev", config={"gpu-workload-limits": "advisory"})
    assert report.levels["gpu-workload-limits"] == "advisory"
    assert {level for name, level in report.levels.items() if name != "gpu-workload-limits"} == {"mandatory"}
    with pytest.raises(PolicyConfigError, match="advisory is allowed in dev only; prod keeps it mandatory"):
        run_policies(POLICIES, [], environment="prod", config={"all": {"enforcementLevel": "advisory"}})


# --- the pack's version


def test_pack_version_is_declared_where_the_cli_reads_it() -> None:
    """The CLI reports and publishes a Python pack under PulumiPolicy.yaml's `version`: pulumi_policy's own answer
    in GetAnalyzerInfo is always 0.0.1 (test_policy_grpc checks that answer)."""
    project = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    assert project["version"] == PACK_VERSION == "0.3.0"


# --- prod-inference-not-anonymous


DENY_ANONYMOUS: dict[str, Any] = {"action": "DENY", "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}]}]}
ALLOW_PRINCIPALS: dict[str, Any] = {
    "action": "ALLOW",
    "rules": [{"from": [{"source": {"requestPrincipals": ["https://accounts.google.com/*"]}}]}],
}
INGRESS_SELECTOR: dict[str, Any] = {"selector": {"matchLabels": {"istio": "ingressgateway"}}}


@pytest.mark.parametrize(
    "protection",
    [
        [gateway_release({"type": "LoadBalancer", "annotations": {LB_TYPE: "Internal"}})],
        [gateway_release({"type": "ClusterIP"})],
        [gateway_release({"type": "LoadBalancer", "loadBalancerSourceRanges": ["203.0.113.0/24"]})],
        [gateway_release(), request_authentication(), authorization(DENY_ANONYMOUS)],
        [gateway_release(), request_authentication(), authorization(ALLOW_PRINCIPALS)],
        [
            gateway_release(),
            request_authentication(**INGRESS_SELECTOR),
            authorization({**DENY_ANONYMOUS, **INGRESS_SELECTOR}),
            authorization({"action": "ALLOW"}, name="allow-nothing"),
        ],
        # Policies in Istio's root namespace apply to every workload.
        [gateway_release(), request_authentication("istio-system"), authorization(DENY_ANONYMOUS, "istio-system")],
    ],
    ids=["internal-lb", "cluster-ip", "source-ranges", "jwt-deny", "jwt-allow", "jwt-selector", "jwt-root"],
)
def test_exposed_gateway_that_is_internal_or_requires_a_jwt_passes(protection: list[EngineResource]) -> None:
    assert violations("prod-inference-not-anonymous", [*EXPOSED, *protection]) == []


def test_gateway_no_virtual_service_binds_to_or_outside_prod_passes() -> None:
    assert violations("prod-inference-not-anonymous", [GATEWAY, virtual_service(["mesh"]), gateway_release()]) == []
    dev = [EngineResource(**{**r.__dict__, "urn": r.urn.replace(":prod::", ":dev::")}) for r in EXPOSED]
    assert violations("prod-inference-not-anonymous", [*dev, gateway_release()]) == []


@pytest.mark.parametrize(
    ("resources", "reason"),
    [
        ([gateway_release()], EXTERNAL),
        ([gateway_release(), request_authentication()], EXTERNAL),
        ([gateway_release(), authorization(DENY_ANONYMOUS)], EXTERNAL),
        ([gateway_release(), request_authentication(jwtRules=[]), authorization(DENY_ANONYMOUS)], EXTERNAL),
        (
            [
                gateway_release(),
                request_authentication(),
                authorization(
                    {
                        **DENY_ANONYMOUS,
                        "rules": [{**DENY_ANONYMOUS["rules"][0], "to": [{"operation": {"paths": ["/admin"]}}]}],
                    }
                ),
            ],
            EXTERNAL,
        ),
        (
            [
                gateway_release(),
                request_authentication(),
                authorization(ALLOW_PRINCIPALS),
                authorization(
                    {"action": "ALLOW", "rules": [{"from": [{"source": {"namespaces": ["inference"]}}]}]}, name="b"
                ),
            ],
            EXTERNAL,
        ),
        ([gateway_release(), request_authentication(), authorization(DENY_ANONYMOUS, "inference")], EXTERNAL),
        (
            [
                gateway_release(),
                request_authentication(),
                authorization({**DENY_ANONYMOUS, "selector": {"matchLabels": {"app": "other"}}}),
            ],
            EXTERNAL,
        ),
        ([], f"the stack declares no `gateway` Helm release running the pods it selects, {NO_JWT}"),
        (
            # An internal gateway the Gateway does not select does not make it internal.
            [gateway_release({"type": "ClusterIP"}, labels={"istio": "internal-gateway"})],
            f"the stack declares no `gateway` Helm release running the pods it selects, {NO_JWT}",
        ),
    ],
    ids=[
        "external",
        "no-authorization",
        "no-request-authentication",
        "no-jwt-rules",
        "deny-on-some-paths",
        "second-allow-without-jwt",
        "other-namespace",
        "other-workload",
        "no-release",
        "release-not-selected",
    ],
)
def test_exposed_gateway_open_to_anonymous_callers_fails(resources: list[EngineResource], reason: str) -> None:
    assert found("prod-inference-not-anonymous", [*EXPOSED, *resources]) == ([(anonymous(reason), GATEWAY.urn)], [])


def test_virtual_service_binds_by_short_name_in_its_own_namespace() -> None:
    same_namespace = virtual_service(["llm-gateway"], namespace="istio-ingress")
    assert found("prod-inference-not-anonymous", [GATEWAY, same_namespace, gateway_release()]) == (
        [(anonymous(EXTERNAL, "istio-ingress/llama-31-8b"), GATEWAY.urn)],
        [],
    )


def test_gateway_references() -> None:
    assert gateway_refs(
        "inference",
        ["mesh", "istio-ingress/llm-gateway", "local", "legacy.istio-ingress.svc.cluster.local"],
    ) == {("istio-ingress", "llm-gateway"), ("inference", "local"), ("istio-ingress", "legacy")}


def test_unknown_release_values_leave_the_gateway_not_evaluated() -> None:
    computed = gateway_release({"type": UNKNOWN})
    assert found("prod-inference-not-anonymous", [*EXPOSED, computed]) == (
        [],
        [
            (
                GATEWAY.urn,
                anonymous(f"the stack declares no `gateway` Helm release running the pods it selects, {NO_JWT}")
                + ", unless istio-ingressgateway (unknown during preview) provides it",
            )
        ],
    )


# --- workloads outside the mesh on purpose


def outside(reason: str | None) -> EngineResource:
    annotations = {"sidecar.istio.io/inject": "false", **({"llm-mesh/outside-mesh": reason} if reason else {})}
    template = {
        "metadata": {"labels": {"app": "adapter"}, "annotations": annotations},
        "spec": {"containers": [{"name": "a", "image": "x" + DIGEST}]},
    }
    return k8s("Deployment", "apps/v1", "custom-metrics", "adapter", {"template": template})


def test_a_workload_outside_the_mesh_with_its_reason_is_exempt() -> None:
    declared = namespace("custom-metrics", {"istio-injection": "disabled"})
    for rule in ("istio-namespace-injection", "istio-namespace-allow-nothing"):
        assert violations(rule, [declared, outside("an aggregated API server")]) == [], rule
    # Opting out without saying why is still a violation.
    assert violations("istio-namespace-injection", [declared, outside(None)]) == [
        "namespace custom-metrics runs workloads without sidecar injection or ambient mode: remove the label "
        "istio-injection=disabled and add istio.io/rev=<revision> (or istio-injection=enabled)"
    ]


def test_the_pack_and_the_config_agree_on_what_is_outside_the_mesh_and_what_is_pinned() -> None:
    from llm_mesh_policies.common import OUTSIDE_MESH_ANNOTATION as PACK_OUTSIDE
    from llm_mesh_policies.platform import image_pinned as pack_pinned

    from llm_mesh.plan.config import image_pinned
    from llm_mesh.plan.topology import OUTSIDE_MESH_ANNOTATION

    assert PACK_OUTSIDE == OUTSIDE_MESH_ANNOTATION
    images = [
        "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.15.1-gke.0",
        "gcr.io/gke-release/custom-metrics-stackdriver-adapter:latest",
        "gcr.io/gke-release/x:v1.2.3",
        "evil.io/gcr.io/gke-release/x:v1.0.0-gke.1",
        "vllm/vllm-openai" + DIGEST,
        "vllm/vllm-openai:v0.27.1",
    ]
    assert (
        [pack_pinned(i) for i in images]
        == [image_pinned(i) for i in images]
        == [True, False, False, False, True, False]
    )


# --- prod-public-gateway-fronted


def test_a_public_prod_gateway_names_its_clients_and_hides_its_status_port() -> None:
    fronted = {
        "type": "LoadBalancer",
        "loadBalancerSourceRanges": ["203.0.113.0/24"],
        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}],
    }
    assert violations("prod-public-gateway-fronted", [gateway_release(fronted)]) == []
    assert violations("prod-public-gateway-fronted", [gateway_release({"type": "ClusterIP"})]) == []
    internal = {"type": "LoadBalancer", "annotations": {LB_TYPE: "Internal"}}
    assert violations("prod-public-gateway-fronted", [gateway_release(internal)]) == []
    assert violations("prod-public-gateway-fronted", [gateway_release()]) == [
        "the gateway's public load balancer admits any address: no values.service.loadBalancerSourceRanges",
        "the gateway's public load balancer publishes Envoy's status port 15021 (the chart's default service.ports)",
    ]
    open_to_all = {**fronted, "loadBalancerSourceRanges": ["203.0.113.0/24", "0.0.0.0/0"]}
    assert violations("prod-public-gateway-fronted", [gateway_release(open_to_all)]) == [
        "the gateway's public load balancer admits any address: 203.0.113.0/24, 0.0.0.0/0"
    ]
    status = {**fronted, "ports": [*fronted["ports"], {"name": "status-port", "port": 15021}]}
    assert violations("prod-public-gateway-fronted", [gateway_release(status)]) == [
        "the gateway's public load balancer publishes Envoy's status port 15021"
    ]
