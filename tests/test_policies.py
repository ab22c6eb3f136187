"""Each rule of the policy pack: a compliant input passes, a violating one fails, as the engine presents them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from llm_mesh_policies import POLICIES
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from llm_mesh.checks.policy_runner import PolicyConfigError, run_policies
from llm_mesh.engine.readers import EngineResource

BY_NAME = {p.name: p for p in POLICIES}
DIGEST = "@sha256:" + "0" * 64


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::llm-mesh::{type_}::{name}"


def k8s(
    kind: str, api: str, namespace: str, name: str, spec: dict[str, Any], stack: str = "prod", **meta: Any
) -> EngineResource:
    type_ = f"kubernetes:{api}:{kind}" if "/" in api else f"kubernetes:core/{api}:{kind}"
    inputs = {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace, **meta}, "spec": spec}
    if kind == "Namespace":
        inputs = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **meta}}
    return EngineResource(urn=urn(stack, type_, f"{namespace}-{name}"), type=type_, custom=True, inputs=inputs)


def gcp(type_: str, name: str, inputs: dict[str, Any], stack: str = "prod", protect: bool = False) -> EngineResource:
    return EngineResource(urn=urn(stack, type_, name), type=type_, custom=True, inputs=inputs, protect=protect)


def violations(policy: str, resources: list[EngineResource], **kwargs: Any) -> list[str]:
    report = run_policies([BY_NAME[policy]], resources, **kwargs)
    assert not report.not_evaluated
    return [v.message for v in report.violations]


def pa(namespace: str, spec: dict[str, Any] | None = None, name: str = "default") -> EngineResource:
    return k8s("PeerAuthentication", "security.istio.io/v1", namespace, name, spec or {})


STRICT = {"mtls": {"mode": "STRICT"}}
MESH_WIDE = pa("istio-system", STRICT)


def deployment(namespace: str, container: dict[str, Any], **pod: Any) -> EngineResource:
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [container], **pod}}
    return k8s("Deployment", "apps/v1", namespace, "server", {"template": template})


GPU_CONTAINER = {
    "name": "server",
    "image": "vllm/vllm-openai" + DIGEST,
    "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
}
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


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


def dr(host: str, **policy: Any) -> EngineResource:
    return k8s("DestinationRule", "networking.istio.io/v1", "inference", "llama", {"host": host, **policy})


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
    found = violations("istio-destination-rule-tls", [dr("llama", **policy)])
    assert len(found) == 1 and found[0].startswith(where)


# --- istio-namespace-allow-nothing and istio-namespace-injection


def namespace(name: str, labels: dict[str, str]) -> EngineResource:
    return k8s("Namespace", "v1", "", name, {}, labels=labels)


ALLOW_NOTHING = k8s("AuthorizationPolicy", "security.istio.io/v1", "inference", "allow-nothing", {})


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
    assert len(violations("istio-namespace-allow-nothing", [workload, scoped])) == 1, (
        "a selector makes it not namespace-wide"
    )


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
    ("resources", "message"),
    [
        ([namespace("inference", {})], "namespace inference runs workloads without sidecar injection or ambient mode"),
        (
            [namespace("inference", {"istio-injection": "disabled", "istio.io/rev": "1-31"})],
            "without sidecar injection",
        ),
        ([], "namespace inference runs workloads but is not declared with injection"),
    ],
)
def test_uninjected_namespaces_fail(resources: list[EngineResource], message: str) -> None:
    found = violations("istio-namespace-injection", [*resources, deployment("inference", GPU_CONTAINER)])
    assert len(found) == 1 and message in found[0]


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
            "container server requests nvidia.com/gpu without a limit",
        ),
        (
            {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}},
            GPU_TOLERATION,
            "request 1 differs from its limit 2",
        ),
        ({"limits": {"nvidia.com/gpu": "1"}}, [], "does not tolerate GKE's nvidia.com/gpu=present:NoSchedule taint"),
        (
            {"limits": {"nvidia.com/gpu": "1"}},
            [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}],
            "does not tolerate",
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
    assert len(found) == 1 and message in found[0]


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

HARDENED = {
    "workloadIdentityConfig": {"workloadPool": "p.svc.id.goog"},
    "privateClusterConfig": {"enablePrivateNodes": True},
    "enableShieldedNodes": True,
    "releaseChannel": {"channel": "REGULAR"},
    "enableLegacyAbac": False,
    "masterAuth": {"clientCertificateConfig": {"issueClientCertificate": False}},
    "deletionProtection": True,
}


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
    ],
)
def test_weakened_cluster_fails(change: dict[str, Any], message: str) -> None:
    inputs = {k: v for k, v in {**HARDENED, **change}.items() if v is not None}
    found = violations("gke-cluster-hardening", [gcp("gcp:container/cluster:Cluster", "gke", inputs)])
    assert len(found) == 1 and found[0].startswith(message)


def test_deletion_protection_may_be_off_in_dev() -> None:
    cluster = gcp("gcp:container/cluster:Cluster", "gke", {**HARDENED, "deletionProtection": False}, stack="dev")
    assert violations("gke-cluster-hardening", [cluster]) == []


def test_node_pool_hardening() -> None:
    good: dict[str, Any] = {
        "nodeConfig": {
            "shieldedInstanceConfig": {"enableSecureBoot": True},
            "workloadMetadataConfig": {"mode": "GKE_METADATA"},
        }
    }
    assert violations("gke-node-pool-hardening", [gcp("gcp:container/nodePool:NodePool", "pool", good)]) == []
    bad = copy.deepcopy(good)
    bad["nodeConfig"]["shieldedInstanceConfig"]["enableSecureBoot"] = False
    bad["nodeConfig"]["workloadMetadataConfig"]["mode"] = "GCE_METADATA"
    assert len(violations("gke-node-pool-hardening", [gcp("gcp:container/nodePool:NodePool", "pool", bad)])) == 2


# --- model-bucket-hardening and prod-stateful-resources-protected

BUCKET = {"uniformBucketLevelAccess": True, "publicAccessPrevention": "enforced", "versioning": {"enabled": True}}


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
    skipped = {name for name, _, why in report.not_evaluated if "--show-sames" in why}
    assert "istio-mesh-wide-strict-mtls" in skipped and "istio-destination-rule-tls" in skipped


def test_unknown_values_are_not_evaluated_rather_than_violations() -> None:
    unknown_host = dr("04da6b54-80e4-46f7-96ec-b56ff0331ba9")
    report = run_policies([BY_NAME["istio-destination-rule-tls"]], [unknown_host])
    assert report.violations == [] and len(report.not_evaluated) == 1


def test_every_rule_is_mandatory_by_default_and_lowered_only_in_dev() -> None:
    report = run_policies(POLICIES, [], environment="dev", config={"gpu-workload-limits": "advisory"})
    assert report.levels["gpu-workload-limits"] == "advisory"
    assert {level for name, level in report.levels.items() if name != "gpu-workload-limits"} == {"mandatory"}
    with pytest.raises(PolicyConfigError, match="advisory is allowed in dev only; prod keeps it mandatory"):
        run_policies(POLICIES, [], environment="prod", config={"all": {"enforcementLevel": "advisory"}})
