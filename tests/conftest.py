"""Fixtures: each stack's offline preview, run once per session through the real command."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "staging", "prod")


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The llm-mesh command in its own process (the SDK's mocks are process-global)."""
    return subprocess.run(
        [sys.executable, "-m", "llm_mesh.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="session")
def previews(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("previews")
    documents = {}
    for stack in STACKS:
        out = folder / f"{stack}.json"
        result = run_cli("preview", "--stack", stack, "--json", str(out))
        assert result.returncode == 0, result.stderr + result.stdout
        documents[stack] = json.loads(out.read_text())
    return documents


@pytest.fixture
def fresh_loop() -> Iterator[None]:
    """A new event loop for an in-process recording, closed afterwards (mocks are process-global)."""
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close the event loops the SDK's mock monitor left in its worker threads (it never closes them), so that
    they are not collected at interpreter exit, after pytest's summary, with a spurious warning."""
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop) and not obj.is_running() and not obj.is_closed():
            obj.close()
