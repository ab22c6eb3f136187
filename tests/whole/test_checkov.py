"""Scanner clean: Checkov's Kubernetes checks pass on every stack's render, each suppression says why, and the
NetworkPolicies that answer its network check admit exactly the connections the plan makes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.shared.pods import SCANNER_SKIP, image_skips, pull_policy, scanner_skips
from llm_mesh.checks.kube_objects import KubeObject, kube_objects, render, without_unknowns
from llm_mesh.engine.readers import read_document
from llm_mesh.plan.config import parse_stack_config
from llm_mesh.plan.network_peers import MANAGED_PROMETHEUS_NAMESPACE, Admit, Peer, application_ingress
from tests.conftest import ROOT, STACKS
from tests.helpers import served_model

# Checkov's pins conflict with the project's (see requirements/checkov.in): `make` gives it a venv of its own.
CHECKOV = ROOT / ".venv" / "checkov" / "bin" / "checkov"
SKIP_VALUE = re.compile(r"^(CKV2?_K8S_\d+)=(.*)$")


@pytest.fixture(scope="module")
def renders(
    preview_texts: dict[str, str], pooled_preview_texts: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One folder per stack, written as `llm-mesh render --stack X --out DIR` writes it; and staging and prod with a
    model on the inference-pool path (`<stack>-pooled`)."""
    folder = tmp_path_factory.mktemp("renders")
    texts = {**preview_texts, **{f"{stack}-pooled": text for stack, text in pooled_preview_texts.items()}}
    for name, text in texts.items():
        objects = kube_objects(read_document(json.loads(text)))
        render([KubeObject(o.urn, without_unknowns(o.manifest)) for o in objects], folder / name)
    return folder


@pytest.fixture(scope="module")
def scan(renders: Path) -> dict[str, Any]:
    """One Checkov run over every stack's render (about 4 s): its JSON report, failed checks only."""
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV} is missing: `make unit` (or `make test`) installs it from requirements/checkov.txt")
    command = [str(CHECKOV), "-d", str(renders), "--framework", "kubernetes", "-o", "json", "--quiet"]
    # --skip-download: nothing is fetched (no Prisma Cloud API key here, and none wanted).
    result = subprocess.run([*command, "--skip-download"], capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), f"checkov exited {result.returncode}:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    assert isinstance(report, dict), "one framework, one report"
    return report


def test_every_stack_render_passes_checkov(scan: dict[str, Any], renders: Path) -> None:
    summary = scan["summary"]
    assert summary["parsing_errors"] == 0 and summary["passed"] > 0, summary
    assert list((renders / "prod-pooled").rglob("*llama-31-8b-stable-epp*")), "the pickers are in what was scanned"
    failed = [
        f"{f['file_path'].split('/')[1]}: {f['check_id']} {f['resource']} ({f['check_name']})"
        for f in scan["results"]["failed_checks"]
    ]
    assert not failed, "Checkov findings (fix them, or suppress one on its object with a reason):\n" + "\n".join(failed)


@pytest.mark.parametrize("stack", STACKS)
def test_every_suppression_names_a_check_and_a_reason(renders: Path, stack: str) -> None:
    suppressed = []
    for path in sorted((renders / stack).glob("[0-9]*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        annotations = (manifest.get("metadata") or {}).get("annotations") or {}
        template = ((manifest.get("spec") or {}).get("template") or {}).get("metadata") or {}
        for key, value in [*annotations.items(), *(template.get("annotations") or {}).items()]:
            if SCANNER_SKIP not in key:
                continue
            match = SKIP_VALUE.match(str(value))
            assert match and match.group(2).strip(), f"{path.name}: {key}: {value!r} names no check or no reason"
            suppressed.append((manifest["kind"], match.group(1)))
    # The vLLM server's root user and CPU quota are the decisions every stack suppresses on purpose.
    assert ("Deployment", "CKV_K8S_23") in suppressed and ("Deployment", "CKV_K8S_11") in suppressed


def test_a_suppression_without_a_reason_is_refused() -> None:
    assert scanner_skips({"CKV_K8S_23": "runs as root"}) == {"checkov.io/skip1": "CKV_K8S_23=runs as root"}
    for reason in ("", "  ", "a=b"):  # Checkov splits the value on '='
        with pytest.raises(ValueError):
            scanner_skips({"CKV_K8S_23": reason})


def test_images_by_tag_are_pulled_every_start_and_say_why_they_have_no_digest() -> None:
    digest = "vllm/vllm-openai@sha256:" + "0" * 64
    assert pull_policy(digest) == "IfNotPresent" and image_skips(digest) == {}
    assert pull_policy("vllm/vllm-openai:v0.27.1") == "Always"
    assert "outside prod" in image_skips(digest, "vllm/vllm-openai:v0.27.1")["CKV_K8S_43"]
    gke = "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.15.1-gke.0"
    assert "GKE release" in image_skips(gke)["CKV_K8S_43"]


def test_network_policies_admit_the_plans_connections_only() -> None:
    config = parse_stack_config(
        {
            "environment": "dev",
            "gcp": {"project": "llm-mesh-test"},
            "security": {"callers": ["cluster.local/ns/apps/sa/chat", "cluster.local/ns/apps/sa/batch"]},
            "models": [served_model("m")],
        }
    )
    rules = {(r.namespace, r.name): r for r in application_ingress(config)}
    server = rules[("inference", "m-callers")]
    assert server.pod_labels == {"app.kubernetes.io/name": "m", "app.kubernetes.io/part-of": "llm-mesh"}
    assert server.admits == [
        Admit(8000, [Peer("istio-ingress", {"istio": "ingressgateway"}), Peer("apps")]),
        Admit(15020, [Peer(MANAGED_PROMETHEUS_NAMESPACE)]),
    ], "the gateway's pods and each caller's namespace (once) on the server port; scrapes on the merged metrics"
    assert rules[("model-store", "model-store-readers")].admits == [Admit(8080, [Peer("inference")])]
    assert rules[("inference", "weights-gate")].admits == [], "the weights gate takes no connection"
