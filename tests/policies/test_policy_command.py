"""`llm-mesh policy` on stacks, on mutated prod previews, and on hand-written engine files of both shapes."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURE_STACKS, STACKS, Cli, project_with_stacks

Mutation = Callable[[dict[str, Any]], str]


def state(document: dict[str, Any], type_suffix: str, name: str) -> dict[str, Any]:
    for step in document["steps"]:
        if step["newState"]["type"].endswith(type_suffix) and step["urn"].endswith(f"::{name}"):
            return step["newState"]
    raise KeyError(name)


def permissive(doc: dict[str, Any]) -> str:
    target = state(doc, ":PeerAuthentication", "inference-default")
    target["inputs"]["spec"]["mtls"]["mode"] = "PERMISSIVE"
    return str(target["urn"])


def wildcard_principal(doc: dict[str, Any]) -> str:
    target = state(doc, ":AuthorizationPolicy", "inference-llama-31-8b-callers")
    target["inputs"]["spec"]["rules"][0]["from"][0]["source"]["principals"] = ["*"]
    return str(target["urn"])


def tls_disabled(doc: dict[str, Any]) -> str:
    target = state(doc, ":DestinationRule", "inference-llama-31-8b")
    target["inputs"]["spec"]["trafficPolicy"]["tls"]["mode"] = "DISABLE"
    return str(target["urn"])


def unpinned_image(doc: dict[str, Any]) -> str:
    target = state(doc, ":Deployment", "model-llama-31-8b-stable")
    target["inputs"]["spec"]["template"]["spec"]["containers"][0]["image"] = "vllm/vllm-openai:latest"
    return str(target["urn"])


def unprotected_cluster(doc: dict[str, Any]) -> str:
    target = state(doc, ":Cluster", "gpu-gke")
    target["protect"] = False
    return str(target["urn"])


# The pack's rules, in the order the command lists them (each is in the README table).
RULES = [
    "istio-peer-authentication-strict",
    "istio-mesh-wide-strict-mtls",
    "istio-destination-rule-tls",
    "istio-namespace-allow-nothing",
    "istio-authorization-positive-allow",
    "istio-namespace-injection",
    "prod-inference-not-anonymous",
    "prod-public-gateway-fronted",
    "inference-pool-in-mesh",
    "endpoint-picker-no-secrets",
    "gpu-workload-limits",
    "prod-images-pinned-by-digest",
    "gke-cluster-hardening",
    "gke-node-pool-hardening",
    "model-bucket-hardening",
    "prod-stateful-resources-protected",
]


def rule_rows(stdout: str) -> list[list[str]]:
    """The report's rule lines, split: mark, rule, enforcement level and (when violated) the count."""
    return [line.split() for line in stdout.splitlines() if line.startswith(("  ✓ ", "  ✗ "))]


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_passes_and_lists_the_rules(stack: str, cli: Cli) -> None:
    result = cli("policy", "--stack", stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.rstrip() for line in result.stdout.strip().splitlines()] == [
        f"Policy pack llm-mesh-guardrails on llm-mesh/{stack} (environment {stack}): 16 rules",
        *(f"  ✓ {rule:<40} mandatory" for rule in RULES),
        "Summary: 0 violations (0 mandatory) of 16 rules",
    ]


@pytest.mark.parametrize(
    ("mutation", "rule"),
    [
        (permissive, "istio-peer-authentication-strict"),
        (wildcard_principal, "istio-authorization-positive-allow"),
        (tls_disabled, "istio-destination-rule-tls"),
        (unpinned_image, "prod-images-pinned-by-digest"),
        (unprotected_cluster, "prod-stateful-resources-protected"),
    ],
)
def test_weakened_prod_preview_is_caught(
    previews: dict[str, Any], tmp_path: Path, mutation: Mutation, rule: str, cli: Cli
) -> None:
    document = copy.deepcopy(previews["prod"])
    urn = mutation(document)
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(document))
    result = cli("policy", str(path), "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)["results"][0]
    assert report["environment"] == "prod"
    assert [(v["policy"], v["urn"]) for v in report["violations"]] == [(rule, urn)]


SECRET = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:abc"}
CLUSTER_URN = "urn:pulumi:prod::llm-mesh::llm-mesh:cluster:GpuCluster$gcp:container/cluster:Cluster::gpu-gke"
PA_URN = "urn:pulumi:prod::llm-mesh::llm-mesh:mesh:MeshSecurity$kubernetes:security.istio.io/v1:PeerAuthentication::istio-system-default"
CLUSTER_INPUTS = {
    "__defaults": ["name"],
    "workloadIdentityConfig": {"workloadPool": "p.svc.id.goog"},
    "privateClusterConfig": {"enablePrivateNodes": True},
    "releaseChannel": {"channel": "STABLE"},
    "masterAuth": {"clientCertificateConfig": {"issueClientCertificate": False}, "clusterCaCertificate": SECRET},
    "binaryAuthorization": {"evaluationMode": "PROJECT_SINGLETON_POLICY_ENFORCE"},
    "nodePoolDefaults": {"nodeConfigDefaults": {"insecureKubeletReadonlyPortEnabled": "FALSE"}},
    "databaseEncryption": {"state": "ENCRYPTED", "keyName": "projects/p/locations/r/keyRings/k/cryptoKeys/s"},
    "masterAuthorizedNetworksConfig": {"cidrBlocks": [{"cidrBlock": "198.51.100.0/24", "displayName": "ci"}]},
}
PA_INPUTS = {
    "apiVersion": "security.istio.io/v1",
    "kind": "PeerAuthentication",
    "metadata": {"name": "default", "namespace": "istio-system"},
    "spec": {"mtls": {"mode": "PERMISSIVE"}},
}


def hand_written_export() -> dict[str, Any]:
    """`pulumi stack export` (version 3) as the CLI writes it: manifest, secrets provider, resources with outputs."""
    return {
        "version": 3,
        "deployment": {
            "manifest": {"time": "2026-11-20T10:00:00Z", "magic": "0" * 64, "version": "v3.200.0"},
            "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:x"}},
            "resources": [
                {"urn": "urn:pulumi:prod::llm-mesh::pulumi:pulumi:Stack::llm-mesh-prod", "custom": False, "type": "pulumi:pulumi:Stack"},
                {"urn": CLUSTER_URN, "custom": True, "id": "projects/p/locations/us-central1/clusters/llm-mesh-prod",
                 "type": "gcp:container/cluster:Cluster", "inputs": copy.deepcopy(CLUSTER_INPUTS), "outputs": {"endpoint": "10.0.0.2"},
                 "protect": True, "parent": "urn:pulumi:prod::llm-mesh::llm-mesh:cluster:GpuCluster::gpu"},
                {"urn": PA_URN, "custom": True, "id": "istio-system/default", "type": "kubernetes:security.istio.io/v1:PeerAuthentication",
                 "inputs": PA_INPUTS, "outputs": PA_INPUTS},
            ],
        },
    }  # fmt: skip


def hand_written_preview() -> dict[str, Any]:
    """`pulumi preview --json` with a same, an update and a delete step, as the CLI writes them."""
    cluster = {
        "urn": CLUSTER_URN,
        "custom": True,
        "type": "gcp:container/cluster:Cluster",
        "inputs": {**CLUSTER_INPUTS, "enableLegacyAbac": True},
    }
    gone = {
        "urn": PA_URN.replace("istio-system-default", "old"),
        "custom": True,
        "type": PA_URN.split("::")[2].split("$")[-1],
        "inputs": PA_INPUTS,
    }
    return {
        "config": {},
        "steps": [
            {"op": "same", "urn": PA_URN, "oldState": {"urn": PA_URN}, "newState": {"urn": PA_URN, "custom": True,
             "type": "kubernetes:security.istio.io/v1:PeerAuthentication", "inputs": {**PA_INPUTS, "spec": {"mtls": {"mode": "STRICT"}}}}},
            {"op": "update", "urn": CLUSTER_URN, "oldState": cluster, "newState": {**cluster, "protect": True}, "diffReasons": ["enableLegacyAbac"]},
            {"op": "delete", "urn": gone["urn"], "oldState": gone},
        ],
        "duration": 1000,
        "changeSummary": {"same": 1, "update": 1, "delete": 1},
    }  # fmt: skip


def test_stack_export_file(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(hand_written_export()))
    report = json.loads(cli("policy", str(path), "--format", "json").stdout)["results"][0]
    strict = "mtls.mode is PERMISSIVE; every PeerAuthentication must be STRICT"
    mesh_wide = "no PeerAuthentication in istio-system without a selector and with mode STRICT"
    assert [(v["policy"], v["urn"], v["message"]) for v in report["violations"]] == [
        ("istio-peer-authentication-strict", PA_URN, strict),
        ("istio-mesh-wide-strict-mtls", "", mesh_wide),
    ]
    result = cli("policy", str(path))
    assert result.returncode == 1
    assert [row for row in rule_rows(result.stdout) if row[0] == "✗"] == [
        ["✗", "istio-peer-authentication-strict", "mandatory", "1"],
        ["✗", "istio-mesh-wide-strict-mtls", "mandatory", "1"],
    ]
    assert [line.strip() for line in result.stdout.splitlines() if line.startswith(" " * 8)] == [strict, mesh_wide]


def test_preview_file_reads_new_states_and_skips_deletes(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(hand_written_preview()))
    result = cli("policy", str(path), "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)["results"][0]
    assert [(v["policy"], v["urn"]) for v in report["violations"]] == [("gke-cluster-hardening", CLUSTER_URN)]
    assert report["violations"][0]["message"] == "legacy ABAC is on: set enableLegacyAbac: false"


def image(target: dict[str, Any], container: str) -> str:
    """The image of a Deployment's or Job's container (or init container) of this name."""
    pod = target["inputs"]["spec"]["template"]["spec"]
    (found,) = [c["image"] for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == container]
    return str(found)


def test_env_override_and_several_files(tmp_path: Path, previews: dict[str, Any], cli: Cli) -> None:
    dev = previews["dev"]
    model = state(dev, ":Deployment", "model-llama-31-8b-stable")
    weights = state(dev, ":Job", "model-llama-31-8b-stable-weights")
    store = state(dev, ":Deployment", "models-server")
    cluster = state(dev, ":Cluster", "gpu-gke")
    bucket = state(dev, ":Bucket", "models-bucket")

    def unpinned(target: dict[str, Any], container: str) -> tuple[str, str, str]:
        tag = image(target, container)
        assert ":" in tag and "@sha256:" not in tag, "dev runs tags"
        return (
            "prod-images-pinned-by-digest",
            target["urn"],
            f"container {container} runs '{tag}', not pinned by digest",
        )

    def unprotected(target: dict[str, Any]) -> tuple[str, str, str]:
        assert not target.get("protect", False)
        message = f"{target['type']} is not protected in prod: a bad `pulumi up` could delete it"
        return ("prod-stateful-resources-protected", target["urn"], message)

    # Fine in dev, not in prod: images by tag, a cluster without deletion protection, nothing protected.
    assert cluster["inputs"]["deletionProtection"] is False
    as_prod = [
        unpinned(model, "fetch-model"),
        unpinned(model, "server"),
        unpinned(weights, "check"),
        unpinned(store, "server"),
        ("gke-cluster-hardening", cluster["urn"], "deletion protection is off in prod: set deletionProtection: true"),
        (
            "gke-cluster-hardening",
            cluster["urn"],
            "Secrets are not encrypted with a KMS key in prod: set databaseEncryption {state: ENCRYPTED, keyName} "
            "(CIS GKE 5.3.1; the stack's cluster.secretsEncryption)",
        ),
        unprotected(cluster),
        unprotected(bucket),
    ]
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(dev))
    as_dev = json.loads(cli("policy", str(path), "--format", "json").stdout)["results"]
    assert [(r["environment"], r["violations"], r["notEvaluated"]) for r in as_dev] == [("dev", [], [])]
    prod = tmp_path / "prod.json"
    prod.write_text(json.dumps(previews["prod"]))
    result = cli("policy", str(path), str(prod), "--env", "prod", "--format", "json")
    assert result.returncode == 1
    results = json.loads(result.stdout)["results"]
    assert [(r["source"], r["environment"]) for r in results] == [(str(path), "prod"), (str(prod), "prod")]
    assert [[(v["policy"], v["urn"], v["message"]) for v in r["violations"]] for r in results] == [as_prod, []]
    assert [r["notEvaluated"] for r in results] == [[], []]


def test_advisory_config_is_refused_outside_dev(tmp_path: Path, cli: Cli) -> None:
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"istio-destination-rule-tls": "advisory"}))
    result = cli("policy", "--stack", "prod", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {config}: istio-destination-rule-tls: advisory is allowed in dev only; prod keeps it mandatory"
    ]
    lowered = cli("policy", "--stack", "dev", "--config", str(config))
    assert lowered.returncode == 0
    levels = {rule: "advisory" if rule == "istio-destination-rule-tls" else "mandatory" for rule in RULES}
    assert rule_rows(lowered.stdout) == [["✓", rule, level] for rule, level in levels.items()]


UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def test_not_evaluated_says_why(tmp_path: Path, cli: Cli) -> None:
    document = hand_written_export()
    cluster = document["deployment"]["resources"][1]
    cluster["inputs"]["workloadIdentityConfig"]["workloadPool"] = UNKNOWN
    path = tmp_path / "export.json"
    path.write_text(json.dumps(document))
    why = "string value at .workloadIdentityConfig.workloadPool can't be known during preview"
    report = json.loads(cli("policy", str(path), "--format", "json").stdout)["results"][0]
    assert report["notEvaluated"] == [{"policy": "gke-cluster-hardening", "urn": CLUSTER_URN, "reason": why}]
    text = cli("policy", str(path)).stdout.splitlines()
    assert [line for line in text if "not evaluated" in line] == [
        f"  not evaluated: gke-cluster-hardening on {CLUSTER_URN}: {why}"
    ]


GPU_URN = "urn:pulumi:prod::llm-mesh::llm-mesh:inference:InferenceService$kubernetes:apps/v1:Deployment::model-x"


def gpu_export(request: Any, limit: Any) -> dict[str, Any]:
    """An export with one GPU Deployment; its numbers are JSON numbers, as the CLI writes them."""
    container = {
        "name": "server",
        "image": "vllm/vllm-openai@sha256:" + "0" * 64,
        "resources": {"requests": {"nvidia.com/gpu": request}, "limits": {"nvidia.com/gpu": limit}},
    }
    pod = {"containers": [container], "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}
    inputs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x", "namespace": "inference"},
        "spec": {"replicas": 1, "template": {"spec": pod}},
    }
    deployment = {"urn": GPU_URN, "custom": True, "type": "kubernetes:apps/v1:Deployment", "inputs": inputs}
    return {"version": 3, "deployment": {"resources": [deployment]}}


@pytest.mark.parametrize(
    ("request_", "limit", "expected"),
    [
        (1, "1", []),
        ("1", 1, []),
        (1, "2", ["container server: nvidia.com/gpu request 1 differs from its limit 2"]),
    ],
)
def test_gpu_quantities_compare_as_amounts(
    tmp_path: Path, request_: Any, limit: Any, expected: list[str], cli: Cli
) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(gpu_export(request_, limit)))
    report = json.loads(cli("policy", str(path), "--format", "json").stdout)["results"][0]
    assert [v["message"] for v in report["violations"] if v["policy"] == "gpu-workload-limits"] == expected


def test_a_stack_named_otherwise_is_judged_by_its_own_environment_from_its_document(tmp_path: Path, cli: Cli) -> None:
    """`policy --stack acme-prod` reads the stack's config (staging); its preview document records the same (the
    engine writes the stack's config in it), and every rule judges by it, not by the name."""
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    shutil.copy(FIXTURE_STACKS / "Pulumi.staging.yaml", stacks / "Pulumi.acme-prod.yaml")
    root = project_with_stacks(tmp_path / "project", stacks)
    document = tmp_path / "acme-prod.json"
    assert cli("--project", str(root), "preview", "--stack", "acme-prod", "--json", str(document)).returncode == 0
    # As `pulumi preview --json` writes a new stack: its config, and no outputs yet on the stack resource.
    preview = json.loads(document.read_text())
    assert preview["config"]["llm-mesh:environment"] == "staging"
    for step in preview["steps"]:
        step["newState"].pop("outputs", None)
    engines = tmp_path / "engine.json"
    engines.write_text(json.dumps(preview))

    def results(*target: str) -> list[dict[str, Any]]:
        out = cli("--project", str(root), "policy", *target, "--format", "json").stdout
        return [{k: v for k, v in r.items() if k != "source"} for r in json.loads(out)["results"]]

    by_stack = results("--stack", "acme-prod")
    assert [r["environment"] for r in by_stack] == ["staging"]
    assert results(str(document)) == results(str(engines)) == by_stack
    # The name alone would have said prod, whose rules this stack breaks.
    as_prod = results(str(engines), "--env", "prod")
    assert as_prod[0]["summary"]["mandatory"] > by_stack[0]["summary"]["mandatory"]
