"""Throwaway git repositories holding a copy of the project, for the commands that compare git refs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import FIXTURE_STACKS, ROOT

WHO = ["-c", "user.name=t", "-c", "user.email=t@example.com"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def project_repo(tmp_path: Path) -> Path:
    """A git repository whose one commit is a copy of the project (program, components, package) with the frozen
    stacks."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("components", "llm_mesh"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(FIXTURE_STACKS, repo / "stacks", ignore=shutil.ignore_patterns("README.md"))
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, *WHO, "add", ".")
    git(repo, *WHO, "commit", "--quiet", "-m", "base")
    return repo
