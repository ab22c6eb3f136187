"""Every private name of the Pulumi SDK that llm_mesh/engine/sdk_private.py uses still exists in the installed SDK.

The names are read from that module's source, so that a name added there is checked here too. After an SDK
upgrade, a failure names the name that moved and the version the engine was written against.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

SDK_PRIVATE = ROOT / "llm_mesh" / "engine" / "sdk_private.py"


def pinned_sdk() -> str:
    """The Pulumi SDK version requirements/program.in pins."""
    found = re.search(r"^pulumi==(\S+)", (ROOT / "requirements" / "program.in").read_text(), re.MULTILINE)
    assert found, "requirements/program.in pins no pulumi== version"
    return found.group(1)


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def private_names(source: str) -> list[str]:
    """Each private name a module's source takes from `pulumi`: imported ones, and attributes it reads of them."""
    tree = ast.parse(source)
    imported: dict[str, str] = {}  # local name -> dotted name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pulumi":
                    local = alias.asname or alias.name.split(".")[0]
                    imported[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pulumi":
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    names = {dotted for dotted in imported.values() if _private(dotted)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node.value, imported)
            if dotted is not None:
                names.add(f"{dotted}.{node.attr}")
    return sorted(names)


def _dotted(node: ast.expr, imported: dict[str, str]) -> str | None:
    """`rpc.x` as `pulumi.runtime.rpc.x` when `rpc` was imported from pulumi; None for anything else."""
    if isinstance(node, ast.Name):
        return imported.get(node.id)
    if isinstance(node, ast.Attribute):
        outer = _dotted(node.value, imported)
        return None if outer is None else f"{outer}.{node.attr}"
    return None


def project_sources() -> list[Path]:
    """The project's own Python files (not the virtualenvs, nor mutmut's copy)."""
    skipped = {".venv", ".mutmut", ".git", "build"}
    return sorted(
        path for path in ROOT.rglob("*.py") if not skipped & set(path.relative_to(ROOT).parts) and path != SDK_PRIVATE
    )


def resolve(dotted: str) -> object:
    """A module, or an attribute of the longest importable module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ImportError(dotted)


def test_the_engine_module_names_the_private_names_it_uses() -> None:
    assert {
        "pulumi._types",
        "pulumi.runtime.rpc._RESOURCE_MODULES",
        "pulumi.runtime.settings._get_rpc_manager",
        "pulumi.runtime.sync_await._sync_await",
    } <= set(private_names(SDK_PRIVATE.read_text()))


@pytest.mark.parametrize("name", private_names(SDK_PRIVATE.read_text()))
def test_each_private_name_exists_in_the_installed_sdk(name: str) -> None:
    try:
        resolve(name)
    except (ImportError, AttributeError) as error:
        installed = importlib.metadata.version("pulumi")
        pytest.fail(
            f"{name} is not in the installed Pulumi SDK {installed} ({error}); llm_mesh/engine/sdk_private.py was "
            f"written against pulumi=={pinned_sdk()} (requirements/program.in): find what replaced it in the SDK's "
            "source, change that module only, and check that every stack's preview is byte-identical",
            pytrace=False,
        )


def test_a_missing_name_is_reported_with_the_pinned_version() -> None:
    """The check above fails on a name the SDK does not have (as after an upgrade that dropped one)."""
    source = "from pulumi.runtime import rpc\nX = rpc._NO_SUCH_REGISTRY\n"
    assert private_names(source) == ["pulumi.runtime.rpc._NO_SUCH_REGISTRY"]
    with pytest.raises(AttributeError):
        resolve("pulumi.runtime.rpc._NO_SUCH_REGISTRY")
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned_sdk())


def test_a_generated_class_keyword_arguments_are_read() -> None:
    import pulumi_kubernetes as k8s

    from llm_mesh.engine.sdk_private import init_parameters

    assert "metadata" in init_parameters(k8s.core.v1.Namespace)


def test_only_the_engine_module_reads_pulumi_private_names() -> None:
    """Import contracts see modules (`pulumi._types`), not attributes (`rpc._RESOURCE_MODULES`): this reads both."""
    found = {
        str(path.relative_to(ROOT)): names for path in project_sources() if (names := private_names(path.read_text()))
    }
    assert found == {}, f"private Pulumi names outside llm_mesh/engine/sdk_private.py (import them from there): {found}"


def test_the_source_check_sees_each_way_of_reaching_a_private_name() -> None:
    source = (
        "import pulumi\nimport pulumi.runtime.settings as s\nfrom pulumi import _types\n"
        "from pulumi.runtime import rpc\nfrom pulumi.runtime.sync_await import _sync_await\n"
        "pulumi.runtime.settings._get_rpc_manager()\ns._get_rpc_manager()\nrpc._RESOURCE_MODULES\n"
        "loop._default_executor\nimport pulumi_gcp\npulumi_gcp._utilities\n"
    )
    assert private_names(source) == [
        "pulumi._types",
        "pulumi.runtime.rpc._RESOURCE_MODULES",
        "pulumi.runtime.settings._get_rpc_manager",
        "pulumi.runtime.sync_await._sync_await",
    ]
