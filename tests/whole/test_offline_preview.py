"""The offline preview of each stack, through the real `llm-mesh preview` command."""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_mesh.engine.values import UNKNOWN
from tests.conftest import ENGINE_SAMPLES, FIXTURE_STACKS, ROOT, STACKS, Cli, needs_engine_samples
from tests.helpers import prop, resource, steps_of_type

URN = re.compile(r"^urn:pulumi:(?P<stack>[a-z]+)::llm-mesh::(?P<types>[^:]+(:[^:$]+)*(\$[^$]+)*)::(?P<name>[^:]+)$")
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"


@pytest.mark.parametrize("stack", STACKS)
def test_document_has_the_engine_shape(previews: dict[str, dict[str, Any]], stack: str) -> None:
    document = previews[stack]
    urns = {step["urn"] for step in document["steps"]}
    for step in document["steps"]:
        assert step["op"] == "create"
        match = URN.match(step["urn"])
        assert match and match["stack"] == stack, step["urn"]
        state = step["newState"]
        assert state["urn"] == step["urn"]
        assert {"type", "custom", "protect"} <= set(state)
        assert match["types"].endswith(state["type"])
        if state["type"] != "pulumi:pulumi:Stack":
            assert state["parent"] in urns, "every parent is itself in the document"
        for dependency in state.get("dependencies", []):
            assert dependency in urns
    assert document["changeSummary"] == {"create": len(document["steps"])}


@pytest.mark.parametrize("stack", STACKS)
def test_child_urns_carry_their_component_type(previews: dict[str, dict[str, Any]], stack: str) -> None:
    cluster = resource(previews[stack], CLUSTER, "gpu-gke")
    assert (
        cluster["urn"]
        == f"urn:pulumi:{stack}::llm-mesh::llm-mesh:cluster:GpuCluster$gcp:container/cluster:Cluster::gpu-gke"
    )
    assert cluster["parent"] == f"urn:pulumi:{stack}::llm-mesh::llm-mesh:cluster:GpuCluster::gpu"


@pytest.mark.parametrize("stack", STACKS)
def test_no_marker_or_secret_leaks(previews: dict[str, dict[str, Any]], stack: str) -> None:
    text = json.dumps(previews[stack])
    assert "__computed__" not in text
    assert "gke-gcloud-auth-plugin" not in text, "the kubeconfig is a secret and must not be printed"
    provider = resource(previews[stack], "pulumi:providers:kubernetes", "gpu-k8s")
    assert provider["inputs"]["kubeconfig"] == "[secret]"
    outputs = previews[stack]["steps"][0]["newState"]["outputs"]
    assert outputs["kubeconfig"] == "[secret]"
    assert outputs["clusterEndpoint"] == UNKNOWN


@pytest.mark.parametrize("stack", STACKS)
def test_provider_computed_values_are_listed(previews: dict[str, dict[str, Any]], stack: str) -> None:
    known_after = previews[stack]["offline"]["knownAfterDeploy"]
    # The kubeconfig's server is the DNS endpoint, which GKE names when it creates the cluster.
    dns = "gpu-gke.controlPlaneEndpointsConfig.dnsEndpointConfig.endpoint"
    assert {"gpu-gke.endpoint", dns, "gpu-nodes.email"} <= set(known_after)
    member = steps_of_type(previews[stack], "gcp:projects/iAMMember:IAMMember")[0]["newState"]
    assert member["inputs"]["member"] == UNKNOWN


def test_cluster_is_hardened_and_private(previews: dict[str, dict[str, Any]]) -> None:
    for stack, document in previews.items():
        cluster = resource(document, CLUSTER, "gpu-gke")
        assert prop(cluster, "workloadIdentityConfig.workloadPool") == f"llm-mesh-{stack}.svc.id.goog"
        assert prop(cluster, "privateClusterConfig.enablePrivateNodes") is True
        assert prop(cluster, "enableShieldedNodes") is True
        assert prop(cluster, "enableLegacyAbac") is False
        assert prop(cluster, "masterAuth.clientCertificateConfig.issueClientCertificate") is False
        assert prop(cluster, "datapathProvider") == "ADVANCED_DATAPATH"
        assert prop(cluster, "removeDefaultNodePool") is True
        assert prop(cluster, "addonsConfig.gcsFuseCsiDriverConfig.enabled") is True
        assert "DCGM" in prop(cluster, "monitoringConfig.enableComponents")
        assert prop(cluster, "monitoringConfig.managedPrometheus.enabled") is True
        stack_file = yaml.safe_load((FIXTURE_STACKS / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert (
            prop(cluster, "masterAuthorizedNetworksConfig.cidrBlocks")
            == stack_file["llm-mesh:cluster"]["masterAuthorizedNetworks"]
        )
        assert prop(cluster, "masterAuthorizedNetworksConfig.gcpPublicCidrsAccessEnabled") is False
        assert prop(cluster, "maintenancePolicy.recurringWindow.recurrence") == "FREQ=WEEKLY;BYDAY=SA,SU"


def test_prod_is_protected_and_dev_is_not(previews: dict[str, dict[str, Any]]) -> None:
    prod, dev = resource(previews["prod"], CLUSTER, "gpu-gke"), resource(previews["dev"], CLUSTER, "gpu-gke")
    assert prod["protect"] is True and prop(prod, "deletionProtection") is True
    assert dev["protect"] is False and prop(dev, "deletionProtection") is False
    assert prop(prod, "location") == "us-central1", "prod is regional"
    assert prop(dev, "location") == "us-central1-a", "dev is zonal"
    assert prop(prod, "releaseChannel.channel") == "STABLE"


@pytest.mark.parametrize(
    ("stack", "pools"),
    [
        ("dev", {"gpu-l4-spot": (True, 0, 1)}),
        ("staging", {"gpu-l4-spot": (True, 0, 2)}),
        ("prod", {"gpu-l4-ondemand": (False, 2, 6), "gpu-l4-spot": (True, 0, 8)}),
    ],
)
def test_gpu_pools_follow_the_stack_config(
    previews: dict[str, dict[str, Any]], stack: str, pools: dict[str, tuple[bool, int, int]]
) -> None:
    document = previews[stack]
    names = {s["urn"].rsplit("::", 1)[1] for s in steps_of_type(document, NODE_POOL)}
    assert names == {"gpu-system", *pools}
    for name, (spot, low, high) in pools.items():
        pool = resource(document, NODE_POOL, name)
        assert prop(pool, "nodeConfig.spot") is spot
        assert prop(pool, "autoscaling.totalMinNodeCount") == low
        assert prop(pool, "autoscaling.totalMaxNodeCount") == high
        assert prop(pool, "nodeConfig.guestAccelerators.0.type") == "nvidia-l4"
        assert prop(pool, "nodeConfig.guestAccelerators.0.gpuDriverInstallationConfig.gpuDriverVersion") == "LATEST"
        assert prop(pool, "nodeConfig.workloadMetadataConfig.mode") == "GKE_METADATA"
        assert prop(pool, "nodeConfig.shieldedInstanceConfig.enableSecureBoot") is True
        assert prop(pool, "nodeConfig.gvnic.enabled") is True
        assert prop(pool, "nodeConfig.gcfsConfig.enabled") is True
        # GKE owns the GPU taint; the only taint of ours is the compute class's, on pools a model overflows across.
        assert [t["key"] for t in pool["inputs"]["nodeConfig"].get("taints", [])] == (
            ["cloud.google.com/compute-class"] if stack == "prod" else []
        )
        assert pool["customTimeouts"] == {"create": 3600, "update": 3600}


def test_prod_gpu_count_comes_from_the_machine_type(previews: dict[str, dict[str, Any]]) -> None:
    pool = resource(previews["prod"], NODE_POOL, "gpu-l4-ondemand")
    assert prop(pool, "nodeConfig.machineType") == "g2-standard-24"
    assert prop(pool, "nodeConfig.guestAccelerators.0.count") == 2
    assert prop(pool, "nodeLocations") == [
        "us-central1-a",
        "us-central1-b",
        "us-central1-c",
    ]


def test_kubernetes_provider_waits_for_schedulable_nodes(previews: dict[str, dict[str, Any]]) -> None:
    provider = resource(previews["dev"], "pulumi:providers:kubernetes", "gpu-k8s")
    assert any(d.endswith("::gpu-system") for d in provider["dependencies"])


@needs_engine_samples
def test_steps_use_only_keys_the_engine_writes(previews: dict[str, dict[str, Any]]) -> None:
    sample = ENGINE_SAMPLES / "sample-preview-creates.json"
    real = json.loads(sample.read_text())
    real_step_keys = {k for s in real["steps"] for k in s}
    # Fields of the engine's state that the sample's program happened not to use.
    unused_by_sample = {"protect", "retainOnDelete", "customTimeouts", "outputs"}
    real_state_keys = {k for s in real["steps"] for k in s["newState"]} | unused_by_sample
    for step in previews["prod"]["steps"]:
        assert set(step) <= real_step_keys
        assert set(step["newState"]) <= real_state_keys, set(step["newState"]) - real_state_keys


def test_installed_command_writes_the_same_document_in_its_own_process(
    previews: dict[str, dict[str, Any]], fixture_project: Path, tmp_path: Path
) -> None:
    """The console script pip installed, in a process of its own, from the project folder: the packaging works,
    its own consoles print the plan unwrapped into a pipe, and the session's in-process previews are what the
    command writes (prod, previewed there after dev and staging in the same process: nothing leaks between runs)."""
    command = Path(sys.executable).with_name("llm-mesh")
    assert command.is_file(), f"{command} is missing: install the project (`pip install -e .`, as `make` does)"
    again = tmp_path / "prod.json"
    result = subprocess.run(
        [str(command), "preview", "--stack", "prod", "--json", str(again)],
        cwd=fixture_project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    written, in_session = json.loads(again.read_text()), previews["prod"]
    if written != in_session:
        delta = difflib.unified_diff(
            json.dumps(in_session, indent=1, sort_keys=True).splitlines(),
            json.dumps(written, indent=1, sort_keys=True).splitlines(),
            "in session",
            "own process",
            lineterm="",
        )
        pytest.fail("\n".join(list(delta)[:80]))
    lines = result.stdout.splitlines()
    assert lines[0] == "Previewing llm-mesh/prod offline (Pulumi SDK mock runtime: no cloud calls, no state)"
    assert any("├─ gcp:container/cluster:Cluster" in line and "protected" in line for line in lines)


def test_readable_plan_and_summary(previews: dict[str, dict[str, Any]], fixture_project: Path, cli: Cli) -> None:
    result = cli("--project", str(fixture_project), "preview", "--stack", "prod")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Previewing llm-mesh/prod offline (Pulumi SDK mock runtime: no cloud calls, no state)"
    assert any("├─ gcp:container/cluster:Cluster" in line and "protected" in line for line in lines)
    assert f"Resources: + {len(previews['prod']['steps'])} to create" in result.stdout
    known_after = previews["prod"]["offline"]["knownAfterDeploy"]
    assert f"Known only after deployment: {len(known_after)} values ({', '.join(known_after[:6])}" in result.stdout
    assert "GPU capacity: 4–12 × nvidia-l4 (on-demand, pool gpu-l4-ondemand)" in result.stdout
    assert "GPU capacity: 0–16 × nvidia-l4 (spot, pool gpu-l4-spot)" in result.stdout


def test_config_error_exits_non_zero_and_writes_nothing(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks").mkdir()
    broken = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text().replace("g2-standard-8", "n2-standard-8")
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(broken)
    (tmp_path / "__main__.py").write_text((ROOT / "__main__.py").read_text())
    (tmp_path / "components").symlink_to(ROOT / "components")
    out = tmp_path / "out.json"
    result = cli("preview", "--stack", "dev", "--json", str(out), cwd=tmp_path)
    assert result.returncode == 2, "a config mistake is unusable input"
    assert result.stdout == "", "a config error prints its lines and nothing else"
    assert result.stderr.strip().startswith(
        "error: stacks/Pulumi.dev.yaml: llm-mesh:gpuPools[0].machineType = 'n2-standard-8': "
        "nvidia-l4 needs a g2-standard-* machine type"
    )
    assert not out.exists()


def test_unknown_stack_is_named(cli: Cli) -> None:
    result = cli("preview", "--stack", "qa")
    assert result.returncode == 2
    assert "Pulumi.qa.yaml: no such stack file (stacks here: dev, prod, staging)" in result.stderr


@pytest.mark.parametrize("stack", STACKS)
def test_private_nodes_get_webhook_access_and_egress(previews: dict[str, dict[str, Any]], stack: str) -> None:
    document = previews[stack]
    rule = resource(document, "gcp:compute/firewall:Firewall", "gpu-istio-webhooks")
    assert prop(rule, "allows") == [{"protocol": "tcp", "ports": ["15017"]}]
    assert prop(rule, "sourceRanges") == [
        prop(resource(document, CLUSTER, "gpu-gke"), "privateClusterConfig.masterIpv4CidrBlock")
    ]
    tag = prop(rule, "targetTags")[0]
    for step in steps_of_type(document, NODE_POOL):
        assert prop(step["newState"], "nodeConfig.tags") == [tag], "every node carries the tag the rule targets"
    nat = resource(document, "gcp:compute/routerNat:RouterNat", "gpu-nat")
    assert prop(nat, "sourceSubnetworkIpRangesToNat") == "ALL_SUBNETWORKS_ALL_IP_RANGES"
    provider = resource(document, "pulumi:providers:kubernetes", "gpu-k8s")
    assert {rule["urn"], nat["urn"]} <= set(provider["dependencies"])


def unsorted_maps(value: Any, path: str = "") -> list[str]:
    """Paths of the maps whose keys are not in sorted order."""
    found = []
    if isinstance(value, dict):
        if list(value) != sorted(value):
            found.append(path or "/")
        for key, item in value.items():
            found += unsorted_maps(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += unsorted_maps(item, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_maps_are_written_with_sorted_keys(previews: dict[str, dict[str, Any]], stack: str) -> None:
    """As the Pulumi engine writes them, and whatever order protobuf keeps a Struct's keys in (protobuf 6 keeps
    none): the same program gives the same bytes."""
    for step in previews[stack]["steps"]:
        state = step["newState"]
        for part in ("inputs", "outputs"):
            assert not unsorted_maps(state.get(part, {})), (step["urn"], part, unsorted_maps(state.get(part, {})))
