"""LM0125: an image the nodes would pull straight from Docker Hub, crafted into prod's plan, named once."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llm_mesh.checks.image_sources import image_source_findings
from llm_mesh.engine.readers import EngineResource, read_document
from tests.conftest import STACKS


def plan(previews: dict[str, Any], stack: str = "prod") -> list[EngineResource]:
    return read_document(copy.deepcopy(previews[stack]))


def named(resources: list[EngineResource], name: str) -> EngineResource:
    (found,) = [r for r in resources if r.name == name]
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_the_shipped_stacks_pull_nothing_from_docker_hub(previews: dict[str, Any], stack: str) -> None:
    assert image_source_findings(plan(previews, stack), stack) == []


def test_a_container_from_docker_hub_is_named(previews: dict[str, Any]) -> None:
    resources = plan(previews)
    server = named(resources, "model-llama-31-8b-stable").inputs["spec"]["template"]["spec"]["containers"][0]
    server["image"] = "vllm/vllm-openai@sha256:" + "ab" * 32
    (finding,) = image_source_findings(resources, "prod")
    assert (finding.code, finding.severity, finding.object) == (
        "LM0125",
        "error",
        "Deployment/inference/llama-31-8b-stable",
    )
    assert finding.message.startswith("container 'server' pulls vllm/vllm-openai@sha256:")
    assert [f.severity for f in image_source_findings(resources, "dev")] == ["warning"]


@pytest.mark.parametrize("hub", [None, "docker.io/istio"])
def test_an_istio_chart_on_docker_hubs_hub_is_named(previews: dict[str, Any], hub: str | None) -> None:
    """No hub in the values is the released charts' own, Docker Hub's istio/."""
    resources = plan(previews)
    values = named(resources, "istio-istio-cni").inputs["values"]["global"]
    if hub is None:
        del values["hub"]
    else:
        values["hub"] = hub
    assert [(f.code, f.object) for f in image_source_findings(resources, "prod")] == [
        ("LM0125", "Release/istio-system/istio-cni")
    ]
