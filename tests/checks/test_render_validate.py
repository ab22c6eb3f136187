"""`llm-mesh render` and `llm-mesh validate`, and each analysis finding from a crafted broken input."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_mesh.checks.analysis import analyze, inventory
from llm_mesh.checks.kube_objects import OWNER_MARK, helm_releases, kube_objects
from llm_mesh.checks.schemas import schema_findings
from llm_mesh.engine.readers import read_document
from tests.conftest import STACKS, Cli
from tests.helpers import HELM_RELEASE, kube_object_keys, manifest_key, steps_of_type

Mutation = Callable[[dict[str, Any]], None]


def findings_of(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(code, object) of every finding, sorted."""
    resources = read_document(document)
    objects = kube_objects(resources)
    found = schema_findings(objects, "1.34") + analyze(inventory(objects, helm_releases(resources), set()))
    return sorted((f.code, f.object) for f in found)


def inputs_of(document: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    for step in document["steps"]:
        inputs = step["newState"].get("inputs") or {}
        if inputs.get("kind") == kind and inputs.get("metadata", {}).get("name") == name:
            return inputs
    raise KeyError(f"{kind} {name}")


def vs(doc: dict[str, Any]) -> dict[str, Any]:
    return inputs_of(doc, "VirtualService", "llama-31-8b")["spec"]


def dr(doc: dict[str, Any]) -> dict[str, Any]:
    return inputs_of(doc, "DestinationRule", "llama-31-8b")["spec"]


def add_copy(doc: dict[str, Any], kind: str, name: str, new_name: str) -> dict[str, Any]:
    step = next(
        s
        for s in doc["steps"]
        if s["newState"].get("inputs", {}).get("kind") == kind and s["newState"]["inputs"]["metadata"]["name"] == name
    )
    twin = copy.deepcopy(step)
    twin["urn"] = twin["newState"]["urn"] = step["urn"] + "-twin"
    twin["newState"]["inputs"]["metadata"]["name"] = new_name
    doc["steps"].append(twin)
    return dict(twin["newState"]["inputs"])


def set_subset(doc: dict[str, Any]) -> None:
    vs(doc)["http"][1]["route"][1]["destination"]["subset"] = "canry"


def unselected_subset(doc: dict[str, Any]) -> None:
    dr(doc)["subsets"][1]["labels"]["version"] = "blue"


def unknown_host(doc: dict[str, Any]) -> None:
    vs(doc)["http"][1]["mirror"]["host"] = "shadow.staging.svc.cluster.local"


def second_claim(doc: dict[str, Any]) -> None:
    add_copy(doc, "VirtualService", "llama-31-8b", "llama-31-8b-copy")


def tls_disabled(doc: dict[str, Any]) -> None:
    dr(doc)["trafficPolicy"]["tls"]["mode"] = "DISABLE"


def tls_simple_on_port(doc: dict[str, Any]) -> None:
    dr(doc)["trafficPolicy"]["portLevelSettings"] = [{"port": {"number": 8000}, "tls": {"mode": "SIMPLE"}}]


def stranger_principal(doc: dict[str, Any]) -> None:
    rules = inputs_of(doc, "AuthorizationPolicy", "llama-31-8b-callers")["spec"]["rules"]
    rules[0]["from"][0]["source"]["principals"] = ["cluster.local/ns/default/sa/api-gateway"]


def not_injected(doc: dict[str, Any]) -> None:
    inputs_of(doc, "Namespace", "inference")["metadata"]["labels"] = {"istio-injection": "disabled"}


def unsafe_retries(doc: dict[str, Any]) -> None:
    vs(doc)["http"][1]["retries"] = {"attempts": 3, "retryOn": "5xx,reset", "perTryTimeout": "300s"}


def missing_gateway(doc: dict[str, Any]) -> None:
    vs(doc)["gateways"][0] = "istio-ingress/public"


def unknown_field(doc: dict[str, Any]) -> None:
    dr(doc)["trafficPolicy"]["connectionPool"]["http"]["maxPendingRequests"] = 10


def bad_core_object(doc: dict[str, Any]) -> None:
    inputs_of(doc, "Service", "llama-31-8b")["spec"]["ports"][0]["port"] = "eight-thousand"


VS = "VirtualService/inference/llama-31-8b"
DR = "DestinationRule/inference/llama-31-8b"


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (set_subset, [("LM0101", VS)]),
        (unselected_subset, [("LM0102", DR)]),
        (unknown_host, [("LM0103", VS)]),
        # The copy claims both hosts on both gateways (the ingress one and mesh) the original claims.
        (second_claim, [("LM0104", "VirtualService/inference/llama-31-8b-copy")] * 4),
        (tls_disabled, [("LM0105", DR)]),
        (tls_simple_on_port, [("LM0105", DR)]),
        (stranger_principal, [("LM0106", "AuthorizationPolicy/inference/llama-31-8b-callers")]),
        (
            not_injected,
            [("LM0107", f"Deployment/inference/llama-31-8b-{track}") for track in ("canary", "mirror", "stable")],
        ),
        (unsafe_retries, [("LM0108", VS), ("LM0109", VS)]),
        (missing_gateway, [("LM0110", VS)]),
        # A DestinationRule our model refuses (LM0001) leaves its subsets unknown: that cascade, and only it, adds
        # LM0101 once per subset the routes name (canary-pinned: canary, mirror; weighted: stable, canary, mirror).
        (unknown_field, [("IST003", DR), ("LM0001", DR)] + [("LM0101", VS)] * 5),
        (bad_core_object, [("K8S001", "Service/inference/llama-31-8b")]),
    ],
)
def test_each_finding_comes_from_its_broken_input(
    previews: dict[str, Any], mutation: Mutation, expected: list[tuple[str, str]]
) -> None:
    document = copy.deepcopy(previews["prod"])
    mutation(document)
    assert findings_of(document) == sorted(expected)


@pytest.mark.parametrize("stack", STACKS)
def test_real_stacks_have_no_findings(previews: dict[str, Any], stack: str) -> None:
    assert findings_of(previews[stack]) == []


def checked_line(document: dict[str, Any], errors: int) -> str:
    """validate's last line: every Kubernetes object of the document checked."""
    count = len(kube_object_keys(document))
    found = "1 error" if errors == 1 else f"{errors} errors"
    return f"{count} objects checked (Kubernetes 1.34 schemas, Istio CRD schemas, mesh analysis): {found}, 0 warnings"


def finding_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("error ", "warning "))]


@pytest.mark.parametrize("stack", STACKS)
def test_validate_command_is_clean(previews: dict[str, Any], stack: str, cli: Cli) -> None:
    result = cli("validate", "--stack", stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert finding_lines(result.stdout) == []
    assert result.stdout.splitlines()[-1] == checked_line(previews[stack], 0)


def test_validate_command_reads_a_preview_file_and_fails_on_errors(
    previews: dict[str, Any], tmp_path: Path, cli: Cli
) -> None:
    broken = copy.deepcopy(previews["prod"])
    tls_disabled(broken)
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(broken))
    result = cli("validate", str(path))
    assert result.returncode == 1
    assert finding_lines(result.stdout) == [
        "error LM0105 DestinationRule/inference/llama-31-8b: TLS mode DISABLE for in-mesh host "
        "llama-31-8b.inference.svc.cluster.local under STRICT mTLS: its calls fail "
        "(fix: use ISTIO_MUTUAL (or leave tls unset) for in-mesh hosts)"
    ]
    assert result.stdout.splitlines()[-1] == checked_line(broken, 1)


@pytest.mark.parametrize("stack", STACKS)
def test_render_writes_one_file_per_object_and_kustomize_builds_it(
    previews: dict[str, Any], stack: str, tmp_path: Path, cli: Cli
) -> None:
    out = tmp_path / stack
    result = cli("render", "--stack", stack, "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in out.glob("*.yaml") if p.name != "kustomization.yaml")
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kustomization["resources"] == files
    manifests = []
    for name in files:
        documents = list(yaml.safe_load_all((out / name).read_text()))
        assert len(documents) == 1, f"{name} holds {len(documents)} objects"
        manifests.extend(documents)
    # Read from the preview's steps, not through the code render uses to pick the objects.
    expected = kube_object_keys(previews[stack])
    assert sorted(manifest_key(m) for m in manifests) == expected
    kinds = [m["kind"] for m in manifests]
    assert kinds == sorted(kinds, key=lambda kind: kind != "Namespace"), "namespaces first"
    releases = sorted(s["newState"]["inputs"]["name"] for s in steps_of_type(previews[stack], HELM_RELEASE))
    assert releases == ["istio-base", "istio-cni", "istio-ingressgateway", "istiod-1-31"]
    not_rendered = [line.split()[4] for line in result.stdout.splitlines() if line.startswith("  not rendered: ")]
    assert sorted(not_rendered) == releases
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run([kubectl, "kustomize", str(out)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    assert sorted(manifest_key(m) for m in yaml.safe_load_all(built.stdout)) == expected


def test_ambient_namespaces_count_as_in_the_mesh(previews: dict[str, Any]) -> None:
    document = copy.deepcopy(previews["prod"])
    inputs_of(document, "Namespace", "inference")["metadata"]["labels"] = {"istio.io/dataplane-mode": "ambient"}
    assert findings_of(document) == []


def test_render_replaces_its_own_files_only(tmp_path: Path, cli: Cli) -> None:
    mine = tmp_path / "001-notes.yaml"
    mine.write_text("kept: true\n")
    stale = tmp_path / "999-deployment-old.yaml"
    stale.write_text("kind: Deployment\n")
    (tmp_path / "kustomization.yaml").write_text(OWNER_MARK + "\n" + yaml.safe_dump({"resources": [stale.name]}))
    assert cli("render", "--stack", "dev", "--out", str(tmp_path)).returncode == 0
    assert mine.read_text() == "kept: true\n", "a file render did not write survives"
    assert not stale.exists(), "a file the last render listed and this one does not is gone"
