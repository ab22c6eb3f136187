"""The readers of engine output, checked against files a real Pulumi CLI wrote (../shared/samples)."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_mesh_policies import POLICIES

from llm_mesh.checks.policy_runner import run_policies
from llm_mesh.engine.readers import DocumentError, load_document, read_document
from tests.conftest import ROOT

SAMPLES = ROOT.parent / "shared" / "samples" / "pulumi-engine-output"
needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason="shared samples of real engine output are not beside this checkout"
)


@needs_samples
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
    resources = load_document(SAMPLES / name)
    assert len(resources) == count
    assert {r.stack for r in resources} == {"dev"}
    bucket = next(r for r in resources if r.type == "aws:s3/bucket:Bucket")
    assert bucket.name == "docs"
    assert "__defaults" not in bucket.inputs, "the engine's bookkeeping is not an input"


@needs_samples
def test_policy_pack_runs_on_a_real_export_of_another_stack() -> None:
    report = run_policies(POLICIES, load_document(SAMPLES / "sample-export.json"))
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
