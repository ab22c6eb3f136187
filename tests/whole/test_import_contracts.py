"""The import contracts in pyproject.toml ([tool.importlinter], run by `make lint`) bite: each breaks on a copy
of the project with one import that crosses it. And the tests' own: no test module imports another (what tests
share lives in a helper module: tests/helpers.py, tests/<room>/builders.py)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# One import across each contract: (file, line appended to it).
CROSSINGS = [
    ("components/cluster.py", "import components.istio"),
    ("components/shared/pods.py", "import components.inference"),
    ("llm_mesh/plan/routing.py", "import llm_mesh.engine.run"),
    ("llm_mesh/checks/analysis.py", "import components.cluster"),
    ("policies/llm_mesh_policies/platform.py", "import llm_mesh.plan.topology"),
    ("llm_mesh/plan/gpu.py", "from pulumi import _types"),
]


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    # The copy's packages come first on the path, ahead of the installed project's.
    path = os.pathsep.join([str(project), str(project / "policies")])
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_contract_breaks_on_an_import_across_it(tmp_path: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", ".venv", "*.egg-info")
    for folder in ("components", "llm_mesh", "policies/llm_mesh_policies"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for name, line in CROSSINGS:
        with (tmp_path / name).open("a") as source:
            source.write(f"\n{line}  # noqa\n")

    result = lint_imports(tmp_path)

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    report = " ".join(result.stdout.split())  # the report wraps long contract names
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(contracts) == len(CROSSINGS)
    for contract in contracts:
        assert f"{contract['name']} BROKEN" in report, report
    assert f"Contracts: 0 kept, {len(CROSSINGS)} broken." in report


def imported_test_modules(source: str) -> list[str]:
    """The test_* modules a test module imports, however it names them."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            prefix = module if module.endswith(".") else f"{module}."
            names += [module] + [prefix + alias.name for alias in node.names]
    return sorted({name for name in names if any(part.startswith("test_") for part in name.split("."))})


def test_no_test_module_imports_another() -> None:
    assert imported_test_modules("from tests.config.test_config import BASE\nfrom . import test_gpu") == [
        ".test_gpu",
        "tests.config.test_config",
        "tests.config.test_config.BASE",
    ]
    found = {
        str(path.relative_to(ROOT)): imported
        for path in sorted((ROOT / "tests").rglob("test_*.py"))
        if (imported := imported_test_modules(path.read_text()))
    }
    assert found == {}
