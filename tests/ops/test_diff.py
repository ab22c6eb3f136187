"""`llm-mesh diff` and `llm-mesh review`: each kind of change appears once, with its property path."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llm_mesh.ops.diff import diff, states, text_report
from tests.conftest import ENGINE_SAMPLES, Cli, needs_engine_samples
from tests.git_repos import WHO, git, project_repo
from tests.helpers import run_with_reader_gone

VS = "urn:pulumi:prod::llm-mesh::llm-mesh:mesh:MeshRouting$kubernetes:networking.istio.io/v1:VirtualService::inference-llama-31-8b"


def step(document: dict[str, Any], urn_end: str) -> dict[str, Any]:
    (found,) = [s for s in document["steps"] if s["urn"].endswith(urn_end)]
    return found


def changes(base: dict[str, Any], head: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, Any, Any, bool]]]]:
    result = diff(states(base), states(head))
    return [
        (c.kind, c.state.urn.rsplit("::", 1)[1], [(p.path, p.old, p.new, p.replaces) for p in c.properties])
        for c in result.changes
    ]


def test_identical_previews_differ_in_nothing(previews: dict[str, Any]) -> None:
    result = diff(states(previews["prod"]), states(previews["prod"]))
    assert result.changes == [] and result.summary() == f"Resources: {result.unchanged} unchanged"


def test_a_canary_weight_change_is_one_update_with_its_paths(previews: dict[str, Any]) -> None:
    head = copy.deepcopy(previews["prod"])
    routes = step(head, "VirtualService::inference-llama-31-8b")["newState"]["inputs"]["spec"]["http"][1]["route"]
    routes[0]["weight"], routes[1]["weight"] = 80, 20
    assert changes(previews["prod"], head) == [
        (
            "update",
            "inference-llama-31-8b",
            [("spec.http[1].route[0].weight", 90, 80, False), ("spec.http[1].route[1].weight", 10, 20, False)],
        )
    ]


def test_a_changed_image_and_a_changed_selector(previews: dict[str, Any]) -> None:
    head = copy.deepcopy(previews["prod"])
    pod = step(head, "Deployment::model-llama-31-8b-canary")["newState"]["inputs"]["spec"]
    pod["template"]["spec"]["containers"][0]["image"] = "vllm/vllm-openai:v0.28.0"
    pod["selector"]["matchLabels"]["version"] = "canary-2"
    ((kind, name, properties),) = changes(previews["prod"], head)
    assert (kind, name) == ("replace", "model-llama-31-8b-canary"), "a Deployment's selector cannot change in place"
    assert [(p[0], p[3]) for p in properties] == [
        ("spec.selector.matchLabels.version", True),
        ("spec.template.spec.containers[0].image", False),
    ]


def test_a_node_pool_spot_change_forces_a_new_pool(previews: dict[str, Any]) -> None:
    head = copy.deepcopy(previews["prod"])
    step(head, "NodePool::gpu-l4-spot")["newState"]["inputs"]["nodeConfig"]["spot"] = False
    assert changes(previews["prod"], head) == [("replace", "gpu-l4-spot", [("nodeConfig.spot", True, False, True)])]


def test_a_new_model_and_a_removed_pool(previews: dict[str, Any]) -> None:
    head = copy.deepcopy(previews["prod"])
    head["steps"] = [s for s in head["steps"] if not s["urn"].endswith("NodePool::gpu-l4-spot")]
    extra = copy.deepcopy(step(head, "ServiceAccount::model-llama-31-8b-sa"))
    extra["urn"] = extra["urn"].replace("model-llama-31-8b-sa", "model-qwen-sa")
    extra["newState"]["urn"] = extra["urn"]
    head["steps"].append(extra)
    assert [(k, n) for k, n, _ in changes(previews["prod"], head)] == [
        ("delete", "gpu-l4-spot"),
        ("create", "model-qwen-sa"),
    ]


def test_a_changed_secret_is_said_to_change_without_showing_it(previews: dict[str, Any]) -> None:
    base = copy.deepcopy(previews["prod"])
    head = copy.deepcopy(base)
    ((urn, fingerprints),) = head["offline"]["secretFingerprints"].items()
    head["offline"]["secretFingerprints"][urn] = {path: "0" * 16 for path in fingerprints}
    assert changes(base, head) == [("update", "gpu-k8s", [("kubeconfig", "[secret]", "[secret]", False)])]


def test_engine_keys_are_never_shown() -> None:
    def export(inputs: dict[str, Any]) -> dict[str, Any]:
        return {"version": 3, "deployment": {"resources": [{"urn": "urn:pulumi:s::p::t:m:R::r", "type": "t:m:R", "inputs": inputs}]}}  # fmt: skip

    base = export({"a": 1, "__defaults": ["a"]})
    head = export({"a": 2, "__defaults": [], "__meta": "x"})
    assert changes(base, head) == [("update", "r", [("a", 1, 2, False)])]


def test_markdown_report_snapshot() -> None:
    def doc(weight: int, image: str) -> dict[str, Any]:
        vs = {"urn": VS, "type": "kubernetes:networking.istio.io/v1:VirtualService", "parent": "urn:pulumi:prod::llm-mesh::llm-mesh:mesh:MeshRouting::route-llama-31-8b",
              "inputs": {"spec": {"http": [{"route": [{"weight": 100 - weight}, {"weight": weight}]}]}}}  # fmt: skip
        deployment = {"urn": "urn:pulumi:prod::llm-mesh::kubernetes:apps/v1:Deployment::web", "type": "kubernetes:apps/v1:Deployment",
                      "inputs": {"spec": {"template": {"spec": {"containers": [{"image": image}]}}}}}  # fmt: skip
        return {"steps": [{"op": "create", "urn": s["urn"], "newState": s} for s in (vs, deployment)]}

    base, head = states(doc(10, "app:1")), states(doc(20, "app:2"))
    assert text_report(diff(base, head), base, head, markdown=True) == (
        "### (stack)\n"
        "- ~ kubernetes:apps/v1:Deployment web (update)\n"
        "    - `spec.template.spec.containers[0].image: app:1 → app:2`\n"
        "\n"
        "### llm-mesh:mesh:MeshRouting route-llama-31-8b\n"
        "- ~ kubernetes:networking.istio.io/v1:VirtualService inference-llama-31-8b (update)\n"
        "    - `spec.http[0].route[0].weight: 90 → 80`\n"
        "    - `spec.http[0].route[1].weight: 10 → 20`\n"
        "\n"
        "Resources: ~ 2 to update, 0 unchanged"
    )


@needs_engine_samples
def test_real_engine_output_export_against_preview(cli: Cli) -> None:
    result = cli("diff", str(ENGINE_SAMPLES / "sample-export.json"), str(ENGINE_SAMPLES / "sample-preview-update.json"))
    assert result.returncode == 0, result.stderr
    assert "  ~ aws:lambda/function:Function docsHandler (update)" in result.stdout.splitlines()
    assert any(line.strip().startswith("code.hash: ") for line in result.stdout.splitlines())
    assert "Resources: ~ 1 to update, 15 unchanged" in result.stdout


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{nope", "engine document {}: not JSON"),
        ('{"steps": [1]}', "engine document {}: steps[0] is int"),
        ('{"hello": "world"}', "engine document {}: neither `pulumi preview --json`"),
        ("[1, 2]", "engine document {}: a JSON object was expected, found list"),
    ],
)
def test_malformed_or_foreign_documents_are_one_line(cli: Cli, tmp_path: Path, content: str, says: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = cli("diff", str(bad), str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.splitlines()[0]] and result.stderr.startswith(
        "error: " + says.format(bad)
    )


def test_review_of_a_canary_weight_change(cli: Cli, tmp_path: Path) -> None:
    """A clone whose last commit moves the canary from 10% to 20%: prod's VirtualService and nothing else."""
    repo = project_repo(tmp_path)
    prod = repo / "stacks" / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text().replace("canaryWeight: 10", "canaryWeight: 20"))
    git(repo, *WHO, "commit", "--quiet", "-am", "canary to 20%")
    result = cli("--project", str(repo), "review", "--base", "HEAD~1", "--out", str(tmp_path / "review.md"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = (tmp_path / "review.md").read_text()
    assert report == result.stdout
    rows = [line for line in report.splitlines() if line.startswith("| ") and "stack" not in line]
    assert [row.split("|")[1:7] for row in rows] == [
        [" dev ", " 0 ", " 0 ", " 0 ", " 0 ", " 107 "],
        [" staging ", " 0 ", " 0 ", " 0 ", " 0 ", " 113 "],
        [" prod ", " 0 ", " 1 ", " 0 ", " 0 ", " 128 "],
    ]
    assert "    - `spec.http[1].route[0].weight: 90 → 80`" in report.splitlines()
    assert "    - `spec.http[1].route[1].weight: 10 → 20`" in report.splitlines()
    assert "GPUs 4–28 at min–max scale; GPU nodes at list price $4.00–$17.75/h" in report
    assert report.count("Policy: 16 rules, no violation.") == 3
    listed = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(listed.splitlines()) == 1, "the temporary worktree is gone"
    assert json.loads(json.dumps(report))  # plain text, no object leaked


def test_two_stacks_are_matched_by_type_and_name_with_a_note(
    cli: Cli, tmp_path: Path, previews: dict[str, Any]
) -> None:
    """dev against prod: the same resources compared property by property, not all deleted and created."""
    dev, prod = tmp_path / "dev.json", tmp_path / "prod.json"
    dev.write_text(json.dumps(previews["dev"]))
    prod.write_text(json.dumps(previews["prod"]))
    result = cli("diff", str(dev), str(prod), "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["note"] == f"{dev} is stack dev, {prod} is stack prod: resources matched by project, type and name"
    text = cli("diff", str(dev), str(prod))
    assert text.stderr.splitlines() == [f"note: {report['note']}"]
    changes = {(c["type"], c["urn"].rsplit("::", 1)[-1]): c for c in report["changes"]}
    cluster = changes[("gcp:container/cluster:Cluster", "gpu-gke")]
    assert cluster["op"] == "replace"
    assert {"path": "name", "old": "llm-mesh-dev", "new": "llm-mesh-prod", "forcesReplacement": True} in cluster[
        "properties"
    ]

    def keys(document: dict[str, Any]) -> set[tuple[str, str]]:
        steps = [s for s in document["steps"] if s["newState"]["type"] != "pulumi:pulumi:Stack"]
        return {(s["newState"]["type"], s["urn"].rsplit("::", 1)[-1]) for s in steps}

    in_both = keys(previews["dev"]) & keys(previews["prod"])
    assert {k for k, c in changes.items() if c["op"] in ("create", "delete")} == keys(previews["dev"]) ^ keys(
        previews["prod"]
    )
    assert all(changes[k]["op"] in ("update", "replace") for k in in_both if k in changes)


def test_a_cancelled_review_removes_its_worktree_and_stops_its_previews(tmp_path: Path) -> None:
    """SIGTERM, as a CI runner sends a cancelled job: exit 130, and nothing of the review left behind."""
    import os
    import signal
    import sys
    import time

    repo = project_repo(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    review = subprocess.Popen(
        [sys.executable, "-m", "llm_mesh.cli", "--project", str(repo), "review", "--base", "HEAD"],
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def previews_running() -> list[str]:
        return subprocess.run(["pgrep", "-f", str(scratch)], capture_output=True, text=True).stdout.split()

    deadline = time.monotonic() + 60
    while len(previews_running()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(scratch.glob("llm-mesh-review-*/base")), "the review had started its worktree"
    review.send_signal(signal.SIGTERM)
    _, stderr = review.communicate(timeout=60)
    assert (review.returncode, stderr.splitlines()[-1:]) == (130, ["interrupted"])
    assert list(scratch.iterdir()) == []
    listed = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(listed.splitlines()) == 1
    assert previews_running() == [], "no preview process left running"


@pytest.mark.parametrize(
    ("argument", "says"),
    [
        ("dev", "no such file; diff takes two documents: write each stack's with `llm-mesh preview --stack NAME"),
        ("stacks/Pulumi.dev.yaml", "a Pulumi project or stack file, not a preview; write one with `llm-mesh preview"),
    ],
)
def test_a_stack_where_a_document_belongs_says_how_to_make_one(cli: Cli, argument: str, says: str) -> None:
    result = cli("diff", argument, argument)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: engine document {argument}: {says}")


def test_a_reader_that_goes_away_ends_the_diff_quietly(tmp_path: Path, previews: dict[str, Any]) -> None:
    """`llm-mesh diff a b | head -1`: exit 141 as for SIGPIPE, and no error about the pipe."""
    dev, prod = tmp_path / "dev.json", tmp_path / "prod.json"
    dev.write_text(json.dumps(previews["dev"]))
    prod.write_text(json.dumps(previews["prod"]))
    code, stderr = run_with_reader_gone("diff", str(dev), str(prod), timeout=60)
    assert code == 141
    assert "Broken pipe" not in stderr and "Traceback" not in stderr
