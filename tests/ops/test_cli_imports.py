"""A command pays only for what it runs: help and `diff` start without the Pulumi SDK or gRPC."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llm_mesh.cli.registry import COMMANDS
from tests.conftest import ROOT

HEAVY = ("pulumi", "grpc")


@pytest.mark.parametrize("args", [[], ["--help"], *([name, "--help"] for name in COMMANDS)])
def test_the_cli_and_its_help_import_no_pulumi_runtime(args: list[str]) -> None:
    script = (
        "import sys\n"
        "from llm_mesh.cli import main\n"
        "try:\n"
        f"    main({args!r}) if {args!r} else None\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.stdout.splitlines()[-1] == "[]", result.stdout + result.stderr
