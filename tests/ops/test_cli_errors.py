"""Ordinary mistakes get one line naming the file and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, Cli
from tests.helpers import run_with_reader_gone


@pytest.fixture
def broken_project(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.unclosed.yaml").write_text("config:\n  llm-mesh:gcp: [unclosed\n")
    (stacks / "Pulumi.scalar.yaml").write_text("just a string\n")
    (stacks / "Pulumi.listconfig.yaml").write_text("config:\n  - a\n")
    (tmp_path / "not-json.json").write_text("{nope")
    (tmp_path / "list-config.json").write_text("[1, 2]")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["preview", "--stack", "unclosed"], "Pulumi.unclosed.yaml:3:1: not valid YAML"),
        (["render", "--stack", "scalar", "--out", "out"], "Pulumi.scalar.yaml: a YAML mapping was expected, found str"),
        (["validate", "--stack", "listconfig"], "Pulumi.listconfig.yaml: `config` must be a mapping"),
        (
            ["models", "verify", "--stack", "nosuch"],
            "Pulumi.nosuch.yaml: no such stack file (stacks here: listconfig, scalar, unclosed)",
        ),
        (["validate", "{dir}/not-json.json"], "not-json.json: not JSON (Expecting property name"),
        (["policy", "{dir}/missing.json"], "missing.json: no such file; check the path"),
        (
            ["policy", "--stack", "scalar", "--config", "{dir}/list-config.json"],
            "list-config.json: a JSON object of rule names was expected",
        ),
    ],
)
def test_mistakes_are_one_line(broken_project: Path, args: list[str], message: str, cli: Cli) -> None:
    result = cli("--project", str(broken_project), *(a.format(dir=broken_project) for a in args), cwd=broken_project)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_outside_a_project_the_installed_one_is_named_and_not_written_to(tmp_path: Path, cli: Cli) -> None:
    """Run from a folder with no Pulumi.yaml above it: reading commands say which project they use; commands
    that write a stack file or deploy refuse to guess."""
    looked = cli("policy", "--stack", "dev", cwd=tmp_path)
    assert looked.returncode == 0, looked.stderr
    assert (
        looked.stderr.splitlines()[0]
        == f"note: no Pulumi.yaml here or above; using {ROOT}, where llm-mesh is installed"
    )
    refused = cli("canary", "status", "--stack", "prod", "--model", "llama-31-8b", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"error: no Pulumi.yaml in {tmp_path} or any folder above it; run from the project, or give --project "
        f"(llm-mesh is installed from {ROOT})"
    ]


def test_no_project_here(tmp_path: Path, cli: Cli) -> None:
    result = cli("--project", str(tmp_path / "nowhere"), "preview", "--stack", "dev", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: no Pulumi.yaml in {tmp_path / 'nowhere'} or any folder above it "
        "(fix: run from the project, or give --project the folder that holds Pulumi.yaml)"
    ]


def test_unwritable_json_path_leaves_no_half_output(tmp_path: Path, cli: Cli) -> None:
    result = cli("preview", "--stack", "dev", "--json", str(tmp_path / "no" / "dir" / "out.json"))
    assert result.returncode == 2
    # Said before the program runs: one line naming the path and the fix, nothing else printed.
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: --json {tmp_path / 'no' / 'dir' / 'out.json'}: folder {tmp_path / 'no' / 'dir'} does not exist; "
        "create it or write elsewhere"
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["preview", "--stack", "dev"],
        ["render", "--stack", "dev", "--out", "out"],
        ["validate", "--stack", "dev"],
        ["policy", "--stack", "dev"],
        ["models", "verify", "--stack", "dev"],
        ["canary", "status", "--stack", "dev", "--model", "llama-31-8b"],
    ],
)
def test_every_config_mistake_is_a_line_whatever_the_command(tmp_path: Path, args: list[str], cli: Cli) -> None:
    """One printer for config mistakes: each command that reads the config lists all of them, one a line."""
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "__main__.py").symlink_to(ROOT / "__main__.py")
    (tmp_path / "components").symlink_to(ROOT / "components")
    (tmp_path / "stacks").mkdir()
    dev = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()
    mistaken = dev.replace("releaseChannel: RAPID", "releaseChannel: FAST").replace(
        "machineType: g2-standard-8", "machineType: n2-standard-8"
    )
    assert mistaken.count("FAST") == 1 and mistaken.count("n2-standard-8") == 1
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(mistaken)
    result = cli("--project", str(tmp_path), *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: stacks/Pulumi.dev.yaml: llm-mesh:cluster.releaseChannel = 'FAST': ")
    assert lines[1].startswith("error: stacks/Pulumi.dev.yaml: llm-mesh:gpuPools[0].machineType = 'n2-standard-8': ")
    assert result.stdout == ""


def test_a_reader_that_goes_away_ends_a_rich_printed_command_with_141(fixture_project: Path) -> None:
    """`llm-mesh preview | head`: rich's own handler would exit 1, the code of findings; the README promises 141."""
    code, stderr = run_with_reader_gone("--project", str(fixture_project), "preview", "--stack", "dev")
    assert code == 141 and "Traceback" not in stderr


def test_an_error_whose_reader_went_away_keeps_its_own_exit_code(fixture_project: Path) -> None:
    """`llm-mesh preview --stack nosuch 2>&1 | head`: the error line cannot be written either, and the command
    still ends with the error's code (2), not Python's 1 for an exception in the handler."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "llm_mesh.cli", "--project", str(fixture_project), "preview", "--stack", "nosuch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        bufsize=0,
    )
    assert process.stdout is not None
    process.stdout.close()
    assert process.wait(timeout=60) == 2
