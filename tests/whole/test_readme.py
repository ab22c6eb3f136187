"""The README's config table documents every key of the stack config."""

from __future__ import annotations

import re
import typing

from pydantic import BaseModel

from llm_mesh.plan.config import StackConfig
from tests.conftest import ROOT

README = ROOT / "README.md"


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf key as a user writes it, lists marked `[]` (`gpuPools[].sharing.strategy`)."""
    keys = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        annotation = field.annotation
        is_list = typing.get_origin(annotation) is list
        if is_list:
            annotation = typing.get_args(annotation)[0]
        nested = [
            a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if nested:
            keys.extend(config_keys(nested[0], key + ("[]." if is_list else ".")))
        else:
            keys.append(key)
    return keys


def documented_cells() -> list[str]:
    section = README.read_text().split("## Stack configuration", 1)[1].split("\n## ", 1)[0]
    return [row.split("|")[1] for row in section.splitlines() if row.startswith("| `")]


def covered(key: str, cells: list[str]) -> bool:
    """Documented itself, as a sibling in a shared row (`a.minNodes` / `maxNodes`), or by an ancestor's row."""
    parent, _, leaf = key.rpartition(".")
    if any(
        f"`{key}`" in cell or (f"`{parent}." in cell and re.search(rf"\b{re.escape(leaf)}\b", cell)) for cell in cells
    ):
        return True
    return (bool(parent) and any(f"`{parent}`" in cell for cell in cells)) or (bool(parent) and covered(parent, cells))


def test_every_config_key_is_in_the_readme() -> None:
    cells = documented_cells()
    assert [key for key in config_keys(StackConfig) if not covered(key, cells)] == []


def test_the_check_notices_a_missing_key() -> None:
    assert not covered("cluster.notAKey", documented_cells())
