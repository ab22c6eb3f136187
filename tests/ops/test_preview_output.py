"""What `make preview` installs is enough for the preview, and its plan reads on an 80-column terminal."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console

import llm_mesh.cli
from llm_mesh.cli import main
from tests.conftest import ROOT, isolated_sdk

DEV_ONLY = ("pulumi_policy", "kubernetes_validate", "cloudcoil", "boto3", "google.cloud.storage", "ruamel")


def test_preview_imports_nothing_that_make_preview_does_not_install() -> None:
    """requirements/preview.in holds the program's requirements and rich: the preview must need nothing else."""
    script = (
        "import sys\n"
        "from llm_mesh.cli import main\n"
        "code = main(['--project', sys.argv[1], 'preview', '--stack', 'prod'])\n"
        f"print(code, sorted(m for m in {DEV_ONLY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr


def test_the_plan_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    printed = io.StringIO()
    monkeypatch.setattr(llm_mesh.cli, "out", Console(file=printed, width=80, highlight=False))
    monkeypatch.setattr(llm_mesh.cli, "err", Console(file=printed, width=80, highlight=False))
    with isolated_sdk():
        assert main(["--project", str(ROOT), "preview", "--stack", "prod"]) == 0
    lines = printed.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    table = [line.rstrip() for line in lines if line.startswith(" +")]
    assert table[0].split() == ["+", "llm-mesh-prod", "Stack"]
    cluster = next(line for line in table if "gpu-gke" in line)
    assert cluster.split()[-2:] == ["Cluster", "protected"]
    (summary,) = [line for line in lines if line.startswith("Resources: + ")]
    assert len(table) == int(summary.split()[2]), "one row per resource, none wrapped onto two"
