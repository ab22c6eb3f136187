"""Who reaches the public gateway, on which ports, how fast: each defect crafted into prod's plan, named once."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from llm_mesh.checks.gateway_exposure import gateway_exposure_findings
from llm_mesh.engine.readers import EngineResource, read_document
from tests.conftest import STACKS

RELEASE = "Release/istio-ingress/istio-ingressgateway"


def plan(previews: dict[str, Any], stack: str = "prod") -> list[EngineResource]:
    return read_document(copy.deepcopy(previews[stack]))


def named(resources: list[EngineResource], name: str) -> EngineResource:
    (found,) = [r for r in resources if r.name == name]
    return found


def service(resources: list[EngineResource]) -> dict[str, Any]:
    return named(resources, "istio-istio-ingressgateway").inputs["values"]["service"]


def local_rate_limit(resources: list[EngineResource]) -> dict[str, Any]:
    patch = named(resources, "istio-ingress-gateway-rate-limit").inputs["spec"]["configPatches"][0]
    return patch["patch"]["value"]["typed_config"]["value"]


def _anonymous(resources: list[EngineResource]) -> None:
    """No end-user tokens and no source ranges: anyone on the internet (LM0122 names the open door too)."""
    resources[:] = [r for r in resources if r.name != "istio-ingress-gateway-jwt"]
    del service(resources)["loadBalancerSourceRanges"]


def _any_source(resources: list[EngineResource]) -> None:
    service(resources)["loadBalancerSourceRanges"].append("0.0.0.0/0")


def _chart_ports(resources: list[EngineResource]) -> None:
    """The chart's own service.ports: status 15021 and plaintext 80 beside 443."""
    del service(resources)["ports"]


def _no_rate_limit(resources: list[EngineResource]) -> None:
    resources[:] = [r for r in resources if r.name != "istio-ingress-gateway-rate-limit"]


def _rate_limit_not_enforced(resources: list[EngineResource]) -> None:
    """Envoy enforces a local rate limit for 0% of requests unless told otherwise: present, and inert."""
    del local_rate_limit(resources)["filter_enforced"]


def _rate_limit_on_other_pods(resources: list[EngineResource]) -> None:
    named(resources, "istio-ingress-gateway-rate-limit").inputs["spec"]["workloadSelector"]["labels"] = {"app": "x"}


@pytest.mark.parametrize("stack", STACKS)
def test_the_shipped_stacks_expose_nothing_they_should_not(previews: dict[str, Any], stack: str) -> None:
    assert gateway_exposure_findings(plan(previews, stack), stack) == []


@pytest.mark.parametrize(
    ("break_plan", "found"),
    [
        (_anonymous, [("LM0113", "Gateway/istio-ingress/llm-gateway"), ("LM0122", RELEASE)]),
        (_any_source, [("LM0122", RELEASE)]),
        (_chart_ports, [("LM0123", RELEASE)]),
        (_no_rate_limit, [("LM0124", RELEASE)]),
        (_rate_limit_not_enforced, [("LM0124", RELEASE)]),
        (_rate_limit_on_other_pods, [("LM0124", RELEASE)]),
    ],
)
def test_each_defect_is_named_once(
    previews: dict[str, Any], break_plan: Callable[[list[EngineResource]], None], found: list[tuple[str, str]]
) -> None:
    resources = plan(previews)
    break_plan(resources)
    findings = gateway_exposure_findings(resources, "prod")
    assert [(f.code, f.object) for f in findings] == found, [f.line() for f in findings]
    assert {f.severity for f in findings} == {"error"}
    assert {f.severity for f in gateway_exposure_findings(resources, "staging")} == {"warning"}


def test_the_status_port_is_named(previews: dict[str, Any]) -> None:
    resources = plan(previews)
    _chart_ports(resources)
    (finding,) = gateway_exposure_findings(resources, "prod")
    assert finding.message.startswith("the load balancer publishes port(s) [80, 15021], where no Gateway server")


def test_an_internal_gateway_needs_no_ranges_and_no_limit(previews: dict[str, Any]) -> None:
    resources = plan(previews)
    _anonymous(resources)
    _no_rate_limit(resources)
    service(resources)["annotations"] = {"networking.gke.io/load-balancer-type": "Internal"}
    assert gateway_exposure_findings(resources, "prod") == []


def test_source_ranges_alone_keep_token_less_callers_out(previews: dict[str, Any]) -> None:
    resources = plan(previews)
    resources[:] = [r for r in resources if r.name != "istio-ingress-gateway-jwt"]
    assert gateway_exposure_findings(resources, "prod") == []
