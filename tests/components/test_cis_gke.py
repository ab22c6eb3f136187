"""The CIS GKE benchmark items the stack declares: Binary Authorization, Secrets encrypted with the stack's KMS
key, the kubelet's read-only port off, the default pool's own service account, a Pod Security level on every
namespace; and `validate` refusing a pod its namespace's level would refuse (LM0120)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llm_mesh.checks.pod_security import baseline_breaches
from llm_mesh.checks.serving import serving_findings
from llm_mesh.engine.readers import read_document
from llm_mesh.plan.pod_security import PRIVILEGED_NAMESPACES
from tests.conftest import STACKS
from tests.helpers import prop, resource, steps_of_type

CLUSTER = "gcp:container/cluster:Cluster"
NAMESPACE = "kubernetes:core/v1:Namespace"


@pytest.mark.parametrize("stack", STACKS)
def test_the_cluster_enforces_binary_authorization_and_closes_the_kubelet_read_only_port(
    previews: dict[str, Any], stack: str
) -> None:
    cluster = resource(previews[stack], CLUSTER, "gpu-gke")
    assert prop(cluster, "binaryAuthorization.evaluationMode") == "PROJECT_SINGLETON_POLICY_ENFORCE"
    assert prop(cluster, "nodePoolDefaults.nodeConfigDefaults.insecureKubeletReadonlyPortEnabled") == "FALSE"
    for pool in steps_of_type(previews[stack], "gcp:container/nodePool:NodePool"):
        config = pool["newState"]["inputs"]["nodeConfig"]
        assert config["kubeletConfig"]["insecureKubeletReadonlyPortEnabled"] == "FALSE", pool["urn"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_default_pool_runs_as_the_nodes_own_account(previews: dict[str, Any], stack: str) -> None:
    cluster = resource(previews[stack], CLUSTER, "gpu-gke")
    nodes = next(s["urn"] for s in previews[stack]["steps"] if s["urn"].endswith("Account::gpu-nodes"))
    assert nodes in cluster["propertyDependencies"]["nodeConfig"], "the service account is the nodes' own"
    assert prop(cluster, "nodeConfig.workloadMetadataConfig.mode") == "GKE_METADATA"


def test_prod_encrypts_secrets_with_its_own_protected_key(previews: dict[str, Any]) -> None:
    prod = previews["prod"]
    cluster = resource(prod, CLUSTER, "gpu-gke")
    assert prop(cluster, "databaseEncryption.state") == "ENCRYPTED"
    key_urn = next(s["urn"] for s in prod["steps"] if s["urn"].endswith("CryptoKey::gpu-secrets-key"))
    assert key_urn in cluster["propertyDependencies"]["databaseEncryption"]
    key = resource(prod, "gcp:kms/cryptoKey:CryptoKey", "gpu-secrets-key")
    ring = resource(prod, "gcp:kms/keyRing:KeyRing", "gpu-secrets-ring")
    assert key["protect"] and key["retainOnDelete"] and ring["protect"]
    assert prop(key, "rotationPeriod") == f"{90 * 86400}s"
    grant = resource(prod, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember", "gpu-secrets-key-gke")
    assert prop(grant, "role") == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    grant_urn = next(s["urn"] for s in prod["steps"] if s["urn"].endswith("CryptoKeyIAMMember::gpu-secrets-key-gke"))
    assert grant_urn in cluster["dependencies"], "GKE checks it may use the key when the cluster is made"
    assert "databaseEncryption" not in resource(previews["dev"], CLUSTER, "gpu-gke")["inputs"], "dev: off by default"


@pytest.mark.parametrize("stack", STACKS)
def test_every_namespace_enforces_a_pod_security_level_and_privileged_says_why(
    previews: dict[str, Any], stack: str
) -> None:
    namespaces = {
        prop(s["newState"], "metadata.name"): s["newState"]["inputs"]["metadata"]
        for s in steps_of_type(previews[stack], NAMESPACE)
    }
    assert namespaces
    for name, metadata in namespaces.items():
        labels = metadata["labels"]
        expected = "privileged" if name in PRIVILEGED_NAMESPACES else "baseline"
        assert labels["pod-security.kubernetes.io/enforce"] == expected, name
        assert labels["pod-security.kubernetes.io/warn"] == "restricted"
        if expected == "privileged":
            assert metadata["annotations"]["llm-mesh/pod-security-privileged"] == PRIVILEGED_NAMESPACES[name]


def test_a_pod_its_namespace_would_refuse_is_an_error(previews: dict[str, Any]) -> None:
    resources = read_document(copy.deepcopy(previews["prod"]))
    assert serving_findings(resources, "prod") == []
    stable = next(r for r in resources if r.name == "model-llama-31-8b-stable")
    pod = stable.inputs["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    [finding] = [f for f in serving_findings(resources, "prod") if f.code == "LM0120"][:1]
    assert finding.object == "Deployment/inference/llama-31-8b-stable"
    assert "namespace inference enforces Pod Security baseline" in finding.message
    assert sorted(baseline_breaches(pod)) == [
        "adds capabilities ['NET_ADMIN'] to container 'server'",
        "mounts hostPath volume 'host'",
    ]


def test_a_namespace_without_a_pod_security_level_is_an_error(previews: dict[str, Any]) -> None:
    resources = read_document(copy.deepcopy(previews["prod"]))
    namespace = next(r for r in resources if r.type == NAMESPACE and r.inputs["metadata"]["name"] == "inference")
    del namespace.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
    assert [(f.code, f.object) for f in serving_findings(resources, "prod")] == [("LM0121", "Namespace/inference")]
