"""Fixtures: each stack's offline preview, computed once per session through the real command, and the
`llm-mesh` command run in this process (mocks are process-global: every in-process run is isolated)."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pulumi
import pytest
from rich.console import Console

import llm_mesh.cli
from llm_mesh.cli import main

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "staging", "prod")
# Files a real Pulumi CLI wrote, beside the checkout (../shared/samples): third-party data (MIT, see its README) the
# project reads there and does not copy in. A clone without it skips the tests that read them, each saying so;
# CI has it and runs them.
ENGINE_SAMPLES = ROOT.parent / "shared" / "samples" / "pulumi-engine-output"
needs_engine_samples = pytest.mark.skipif(
    not ENGINE_SAMPLES.is_dir(),
    reason=f"real Pulumi engine output is not beside this checkout ({ENGINE_SAMPLES}): the test reads it there",
)
# Frozen copies of the stacks: the exact answers tests state are about these, not about the live stack files,
# which are the users' to change (tests/fixtures/README.md).
FIXTURE_STACKS = ROOT / "tests" / "fixtures" / "stacks"


def project_with_stacks(folder: Path, stacks: Path = FIXTURE_STACKS) -> Path:
    """A project at `folder`: the program linked from this one, the stack files copied from `stacks`."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", folder)
    for entry in ("__main__.py", "components"):
        (folder / entry).symlink_to(ROOT / entry)
    shutil.copytree(stacks, folder / "stacks", ignore=shutil.ignore_patterns("README.md"))
    return folder


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The llm-mesh command in its own process: for what only a process shows (packaging, exit status of the
    interpreter). Everything else uses the `cli` fixture, which is as faithful and pays no interpreter start."""
    return subprocess.run(
        [sys.executable, "-m", "llm_mesh.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@contextmanager
def isolated_sdk() -> Iterator[None]:
    """A new event loop for an in-process recording, closed afterwards; no root stack or config left behind."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        loop.close()
        asyncio.set_event_loop(None)
        # Leave no recording's root stack or config behind for the next test.
        pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
        pulumi.runtime.set_all_config({}, [])


@pytest.fixture
def fresh_loop() -> Iterator[None]:
    """A new event loop for an in-process recording, closed afterwards (mocks are process-global)."""
    with isolated_sdk():
        yield


@dataclass
class CliResult:
    """What a finished `llm-mesh` run left: the fields of subprocess.CompletedProcess that tests read."""

    returncode: int
    stdout: str
    stderr: str


Cli = Callable[..., CliResult]


def piped_consoles(patch: pytest.MonkeyPatch, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
    """The command's consoles as llm_mesh.cli makes them when its output is piped, on these streams (default: whatever
    sys.stdout and sys.stderr are when they print). Its own were made at import, when stdout may have been a
    terminal (`pytest -s`): wrapped at its width, with colour codes."""
    patch.setattr(llm_mesh.cli, "out", Console(file=stdout, highlight=False, width=160))
    patch.setattr(llm_mesh.cli, "err", Console(file=stderr, stderr=True, highlight=False, soft_wrap=True))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`llm-mesh ARGS` in this process, run from a folder (default: the project), printing as into a pipe."""
    piped_consoles(monkeypatch)  # capsys's streams

    def run(*args: str, cwd: Path = ROOT) -> CliResult:
        capsys.readouterr()  # what the test printed before is not the command's
        with isolated_sdk(), monkeypatch.context() as here:
            here.chdir(cwd)
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def _previews(project: Path, folder: Path, stacks: tuple[str, ...] = STACKS) -> dict[str, str]:
    documents = {}
    for stack in stacks:
        out = folder / f"{stack}.json"
        printed = io.StringIO()
        with isolated_sdk(), pytest.MonkeyPatch.context() as here:
            piped_consoles(here, printed, printed)
            code = main(["--project", str(project), "preview", "--stack", stack, "--json", str(out)])
        assert code == 0, f"llm-mesh preview --stack {stack} exited {code}:\n{printed.getvalue()}"
        documents[stack] = out.read_text()
    return documents


@pytest.fixture(scope="session")
def fixture_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project with the frozen stacks (tests/fixtures/stacks)."""
    return project_with_stacks(tmp_path_factory.mktemp("fixture") / "project")


@pytest.fixture(scope="session")
def preview_texts(tmp_path_factory: pytest.TempPathFactory, fixture_project: Path) -> dict[str, str]:
    """Each frozen stack's `llm-mesh preview --stack X --json` document as the command wrote it, in this process:
    the SDK's imports are paid once, not once per stack (test_offline_preview compares one with a process's)."""
    return _previews(fixture_project, tmp_path_factory.mktemp("previews"))


@pytest.fixture
def previews(preview_texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The session's preview documents, parsed afresh for each test (about 4 ms a stack): a test that edits one
    cannot change what the next test in its worker reads."""
    return {stack: json.loads(text) for stack, text in preview_texts.items()}


# The stacks whose first model switches to the inference-pool path in one key (prod also names the picker's image by
# a digest, which prod requires: the placeholder digest below is no real image's).
POOLED_STACKS = ("staging", "prod")
PICKER_DIGEST = "registry.k8s.io/gateway-api-inference-extension/epp@sha256:" + "0" * 64


def pooled_stack_files(folder: Path) -> Path:
    """Copies of the frozen staging and prod stacks with models[0].routing.balancing: inference-pool."""
    from ruamel.yaml import YAML

    yaml = YAML()
    folder.mkdir(parents=True, exist_ok=True)
    for stack in POOLED_STACKS:
        document = yaml.load((FIXTURE_STACKS / f"Pulumi.{stack}.yaml").read_text())
        values = document["config"]
        values["llm-mesh:models"][0]["routing"] = {"balancing": "inference-pool"}
        if stack == "prod":
            values["llm-mesh:inference"]["endpointPickerImage"] = PICKER_DIGEST
        with open(folder / f"Pulumi.{stack}.yaml", "w") as f:
            yaml.dump(document, f)
    return folder


@pytest.fixture(scope="session")
def pooled_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pooled")
    return project_with_stacks(root / "project", pooled_stack_files(root / "stacks"))


@pytest.fixture(scope="session")
def pooled_preview_texts(tmp_path_factory: pytest.TempPathFactory, pooled_project: Path) -> dict[str, str]:
    return _previews(pooled_project, tmp_path_factory.mktemp("pooled-previews"), POOLED_STACKS)


@pytest.fixture
def pooled_previews(pooled_preview_texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {stack: json.loads(text) for stack, text in pooled_preview_texts.items()}


# Skips CI accepts: what no machine of this project's kind can have. Any other skip in CI fails the run, so that
# a test silently not running (a missing sample folder, a tool not installed) cannot pass for a green build.
EXPECTED_SKIPS = ("no Pulumi CLI on this machine",)
_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if not reason.startswith(EXPECTED_SKIPS):
            _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _unexpected_skips and os.environ.get("CI"):
        terminalreporter.write_line(f"CI expects every test to run; {len(_unexpected_skips)} skipped:", red=True)
        for line in _unexpected_skips:
            terminalreporter.write_line(f"  {line}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a CI run that skipped a test it expects to run. Close the event loops the SDK's mock monitor left in
    its worker threads (it never closes them), so that they are not collected at interpreter exit, after pytest's
    summary, with a spurious warning."""
    if _unexpected_skips and os.environ.get("CI") and not hasattr(session.config, "workerinput"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop) and not obj.is_running() and not obj.is_closed():
            obj.close()
