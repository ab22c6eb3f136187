"""`validate`'s serving checks: none on the real stacks, and each defect, crafted into the prod plan, named once."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from llm_mesh.checks.serving import serving_findings
from llm_mesh.engine.readers import EngineResource, read_document
from tests.conftest import STACKS

STABLE = "model-llama-31-8b-stable"


def plan(previews: dict[str, Any], stack: str = "prod") -> list[EngineResource]:
    return read_document(copy.deepcopy(previews[stack]))


def named(resources: list[EngineResource], name: str, type_suffix: str = "") -> EngineResource:
    found = [r for r in resources if r.name == name and r.type.endswith(type_suffix)]
    assert len(found) == 1, name
    return found[0]


def server(resources: list[EngineResource]) -> dict[str, Any]:
    return named(resources, STABLE, ":Deployment").inputs["spec"]["template"]["spec"]["containers"][0]


def set_flag(args: list[str], flag: str, value: str) -> None:
    args[args.index(flag) + 1] = value


@pytest.mark.parametrize("stack", STACKS)
def test_real_stacks_serve(previews: dict[str, Any], stack: str) -> None:
    assert serving_findings(plan(previews, stack), stack) == []


def _too_long(resources: list[EngineResource]) -> None:
    set_flag(server(resources)["args"], "--max-model-len", "131072")


def _no_weights(resources: list[EngineResource]) -> None:
    pod = named(resources, STABLE, ":Deployment").inputs["spec"]["template"]["spec"]
    pod["initContainers"][0]["command"][5] = json.dumps([{"path": "config.json"}])


def _no_adapter(resources: list[EngineResource]) -> None:
    resources[:] = [r for r in resources if not r.type.endswith(":APIService")]


def _short_grace(resources: list[EngineResource]) -> None:
    named(resources, STABLE, ":Deployment").inputs["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 120


def _evictable(resources: list[EngineResource]) -> None:
    pod = named(resources, STABLE, ":Deployment").inputs["spec"]["template"]
    del pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"]


def _no_pre_stop(resources: list[EngineResource]) -> None:
    del server(resources)["lifecycle"]


def _spot_unused(resources: list[EngineResource]) -> None:
    for r in resources:
        if r.type.endswith(":Deployment") and r.name.startswith("model-"):
            terms = r.inputs["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            terms["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0][
                "values"
            ] = ["l4-ondemand"]


def _model_flag(resources: list[EngineResource]) -> None:
    args = server(resources)["args"]
    args[:1] = ["--model", args[0]]


def _no_gate(resources: list[EngineResource]) -> None:
    named(resources, STABLE, ":Deployment").dependencies.clear()


def _small_pools(resources: list[EngineResource]) -> None:
    """Prod's pools cut to 2 GPUs in all: stable's 2, the canary's 2 and the mirror's 1 cannot all be placed."""
    named(resources, "gpu-l4-ondemand").inputs["autoscaling"]["totalMaxNodeCount"] = 1
    named(resources, "gpu-l4-spot").inputs["autoscaling"]["totalMaxNodeCount"] = 0


@pytest.mark.parametrize(
    ("break_plan", "code", "subject"),
    [
        (_too_long, "LM0111", "Deployment/inference/llama-31-8b-stable"),
        (_no_weights, "LM0112", "Deployment/inference/llama-31-8b-stable"),
        (_no_adapter, "LM0114", "HorizontalPodAutoscaler/inference/llama-31-8b-stable"),
        (_short_grace, "LM0115", "Deployment/inference/llama-31-8b-stable"),
        (_no_pre_stop, "LM0115", "Deployment/inference/llama-31-8b-stable"),
        (_evictable, "LM0115", "Deployment/inference/llama-31-8b-stable"),
        (_spot_unused, "LM0116", "NodePool/gpu-l4-spot"),
        (_model_flag, "LM0117", "Deployment/inference/llama-31-8b-stable"),
        (_no_gate, "LM0118", "Deployment/inference/llama-31-8b-stable"),
        (_small_pools, "LM0119", "NodePool/l4-ondemand, l4-spot"),
    ],
)
def test_each_defect_is_named_once(
    previews: dict[str, Any], break_plan: Callable[[list[EngineResource]], None], code: str, subject: str
) -> None:
    resources = plan(previews)
    break_plan(resources)
    findings = serving_findings(resources, "prod")
    assert [(f.code, f.object) for f in findings] == [(code, subject)], [f.line() for f in findings]


def test_the_fit_finding_names_the_largest_context(previews: dict[str, Any]) -> None:
    resources = plan(previews)
    _too_long(resources)
    (finding,) = serving_findings(resources, "prod")
    assert finding.severity == "error"
    assert "the largest context that fits (keeping a 10% margin) is 21152 tokens" in finding.message


def test_the_capacity_finding_counts_each_tracks_floor(previews: dict[str, Any]) -> None:
    resources = plan(previews)
    _small_pools(resources)
    (finding,) = serving_findings(resources, "prod")
    assert finding.message.startswith(
        "at their minimum replicas the GPU workloads on pools l4-ondemand, l4-spot need 5 GPUs; the pools hold at most 2"
    )


def test_a_stack_without_models_is_told_so_not_blamed_for_a_pool(previews: dict[str, Any]) -> None:
    resources = [r for r in plan(previews, "dev") if not r.name.startswith("model-")]
    findings = serving_findings(resources, "dev")
    assert [(f.code, f.object) for f in findings] == [("LM0116", "Stack")]
    assert findings[0].message == "the stack serves no model, so no GPU pool has anything to run"
