"""What must hold for every stack whatever its config: each Kubernetes object goes to the stack's own cluster,
and the names that would replace a resource if they changed stay as they are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_mesh.engine.stackfile import Project, read_stack_settings
from llm_mesh.ops import canary
from llm_mesh.plan.config import config_from_pulumi
from tests.conftest import ROOT, STACKS, Cli, project_with_stacks

UNKNOWN_ID = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def own_cluster_provider(stack: str) -> str:
    """The provider the GpuCluster component declares, written out (not computed by the code under test)."""
    return (
        f"urn:pulumi:{stack}::llm-mesh::llm-mesh:cluster:GpuCluster$pulumi:providers:kubernetes::gpu-k8s::{UNKNOWN_ID}"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_object_goes_to_the_stacks_own_cluster(previews: dict[str, Any], stack: str) -> None:
    """A component given `depends_on` instead of the options that carry the provider would send its objects to
    whatever kubeconfig is current: the default provider."""
    kubernetes = [
        s
        for s in previews[stack]["steps"]
        if s["newState"]["type"].startswith("kubernetes:") and s["newState"]["custom"]
    ]
    assert kubernetes, "the stack declares Kubernetes objects"
    elsewhere = sorted(
        (s["urn"].rsplit("::", 1)[1], s["newState"].get("provider")) for s in kubernetes
        if s["newState"].get("provider") != own_cluster_provider(stack)
    )  # fmt: skip
    assert elsewhere == []


# The physical names of the Google resources: a change renames, which GCP does only by delete and create (a
# cluster, a bucket with the weights, the service accounts every IAM binding names).
PHYSICAL_NAMES = {
    "dev": {
        "gpu-gke": "llm-mesh-dev",
        "models-bucket": "llm-mesh-dev-dev-models",
        "gpu-nodes": "llm-mesh-dev-nodes-8b0a",
        "models-reader": "llm-mesh-dev-dev-mod-read-e7f5",
        "metrics-adapter-gsa": "llm-mesh-dev-metrics-243d",
        "observability-collector-gsa": "llm-mesh-dev-otel-8b06",
    },
    "staging": {
        "gpu-gke": "llm-mesh-staging",
        "models-bucket": "llm-mesh-staging-staging-models",
        "gpu-nodes": "llm-mesh-staging-nodes-98b1",
        "models-reader": "llm-mesh-staging-sta-read-5036",
        "metrics-adapter-gsa": "llm-mesh-staging-metrics-7f7a",
        "observability-collector-gsa": "llm-mesh-staging-otel-a6fc",
    },
    "prod": {
        "gpu-gke": "llm-mesh-prod",
        "models-bucket": "llm-mesh-prod-prod-models",
        "gpu-nodes": "llm-mesh-prod-nodes-2652",
        "models-reader": "llm-mesh-prod-prod-m-read-c3ff",
        "metrics-adapter-gsa": "llm-mesh-prod-metrics-6bbb",
        "observability-collector-gsa": "llm-mesh-prod-otel-a05f",
    },
}
NAME_INPUT = {
    "gcp:container/cluster:Cluster": "name",
    "gcp:storage/bucket:Bucket": "name",
    "gcp:serviceaccount/account:Account": "accountId",
}


@pytest.mark.parametrize("stack", STACKS)
def test_names_that_would_replace_a_resource_are_pinned(previews: dict[str, Any], stack: str) -> None:
    names = {
        s["urn"].rsplit("::", 1)[1]: s["newState"]["inputs"][NAME_INPUT[s["newState"]["type"]]]
        for s in previews[stack]["steps"]
        if s["newState"]["type"] in NAME_INPUT
    }
    assert names == PHYSICAL_NAMES[stack]


# --- the live stacks: invariants only (their values are the users' to change) ------------------------------------


def live_projects(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each live stack, and prod after the edit `canary advance` makes (a scratch copy of the live stacks)."""
    scratch = project_with_stacks(tmp_path / "advanced", ROOT / "stacks")
    project = Project.find(scratch)
    config = config_from_pulumi(read_stack_settings(project, "prod").config)
    for model in config.models:
        split = canary.split_of(config, model.name)
        if split.canary is not None:
            canary.set_weight(project, "prod", model.name, canary.advanced(split, config.canary, None))
    return {**{stack: (ROOT, stack) for stack in STACKS}, "prod advanced a step": (scratch, "prod")}


def test_the_live_stacks_and_a_canary_step_preview_validate_pass_policy_and_render(cli: Cli, tmp_path: Path) -> None:
    for label, (root, stack) in live_projects(tmp_path).items():
        project = ("--project", str(root))
        document = tmp_path / f"{label}.json"
        preview = cli(*project, "preview", "--stack", stack, "--json", str(document))
        assert preview.returncode == 0, (label, preview.stderr)
        steps = json.loads(document.read_text())["steps"]
        assert all(s["newState"].get("provider") == own_cluster_provider(stack) for s in kubernetes_objects(steps))
        validate = cli(*project, "validate", "--stack", stack)
        assert validate.returncode == 0 and validate.stdout.splitlines()[-1].endswith(": 0 errors, 0 warnings"), (
            label,
            validate.stdout,
        )
        policy = cli(*project, "policy", str(document))
        assert policy.returncode == 0, (label, policy.stdout)
        render = cli(*project, "render", "--stack", stack, "--out", str(tmp_path / f"{label}-render"))
        assert render.returncode == 0, (label, render.stderr)


def kubernetes_objects(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in steps if s["newState"]["type"].startswith("kubernetes:") and s["newState"]["custom"]]
