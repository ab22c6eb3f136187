"""The readers of engine output, checked against files a real Pulumi CLI wrote (conftest.ENGINE_SAMPLES)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from llm_mesh_policies import POLICIES

from llm_mesh.checks.policy_runner import run_policies
from llm_mesh.engine.readers import DocumentError, load_document, read_document, read_engine_document
from tests.conftest import ENGINE_SAMPLES, needs_engine_samples

needs_samples = pytest.mark.skipif(
    not ENGINE_SAMPLES.is_dir(), reason="shared samples of real engine output are not beside this checkout"
)


@needs_engine_samples
@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("sample-export.json", 17),
        ("sample-preview-creates.json", 16),
        ("sample-preview-update.json", 16),
        ("sample-preview-deletes.json", 2),
    ],
)
def test_real_engine_files_are_read(name: str, count: int) -> None:
    resources = load_document(ENGINE_SAMPLES / name)
    assert len(resources) == count
    assert {r.stack for r in resources} == {"dev"}
    bucket = next(r for r in resources if r.type == "aws:s3/bucket:Bucket")
    assert bucket.name == "docs"
    assert "__defaults" not in bucket.inputs, "the engine's bookkeeping is not an input"


@needs_engine_samples
def test_policy_pack_runs_on_a_real_export_of_another_stack() -> None:
    report = run_policies(POLICIES, load_document(ENGINE_SAMPLES / "sample-export.json"))
    assert report.environment == "dev"
    assert [v.policy for v in report.violations] == ["istio-mesh-wide-strict-mtls"], "an AWS stack has no mesh"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"resources": []}, "neither `pulumi preview --json`"),
        ({"version": 2, "deployment": {"resources": []}}, "stack export version 2; this reader knows version 3"),
    ],
)
def test_other_documents_are_refused(document: dict[str, object], message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        read_document(document)


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(DocumentError, match=r"broken\.json"):
        load_document(path)


STACK_TYPE = "pulumi:pulumi:Stack"
STACK_URN = "urn:pulumi:acme-prod::llm-mesh::pulumi:pulumi:Stack::llm-mesh-acme-prod"


@pytest.mark.parametrize(
    ("document", "environment"),
    [
        # A new stack's preview, as the engine writes it: the stack's config, no outputs on the stack resource.
        (
            {
                "config": {"llm-mesh:environment": "staging", "llm-mesh:gcp": '{"project": "acme"}'},
                "steps": [{"op": "create", "urn": STACK_URN, "newState": {"urn": STACK_URN, "type": STACK_TYPE}}],
            },
            "staging",
        ),
        # A deployed stack's export: no config, the outputs the program exported.
        (
            {
                "version": 3,
                "deployment": {
                    "resources": [{"urn": STACK_URN, "type": STACK_TYPE, "outputs": {"environment": "dev"}}]
                },
            },
            "dev",
        ),
        # Neither, or no environment: the reader does not guess from the name.
        ({"steps": [{"op": "create", "urn": STACK_URN, "newState": {"urn": STACK_URN, "type": STACK_TYPE}}]}, None),
        ({"config": {"llm-mesh:environment": "qa"}, "steps": []}, None),
    ],
)
def test_a_document_records_its_stacks_environment(document: dict[str, Any], environment: str | None) -> None:
    assert read_engine_document(document).environment == environment
