"""The config the config tests start from, one change away from each mistake, and what validation says of it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llm_mesh.plan.config import ConfigError, parse_stack_config
from tests.helpers import served_model, version

BASE: dict[str, Any] = {
    "environment": "dev",
    "gcp": {"project": "llm-mesh-test"},
    "gpuPools": [{"name": "l4", "accelerator": "nvidia-l4", "machineType": "g2-standard-8"}],
    "models": [served_model(canary=version("v2"), canaryWeight=10)],
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """BASE with one key set (dotted path, list indexes as numbers); value None deletes the key."""
    config = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is None:
        del node[last]
    else:
        node[last] = value
    return config


def only_problem(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


def problems_of(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    return caught.value.problems
