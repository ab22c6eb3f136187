"""Routing and security objects of each stack, as the offline preview declares them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import STACKS
from tests.helpers import prop, resource, steps_of_type

VS = "kubernetes:networking.istio.io/v1:VirtualService"
DR = "kubernetes:networking.istio.io/v1:DestinationRule"
PA = "kubernetes:security.istio.io/v1:PeerAuthentication"
AP = "kubernetes:security.istio.io/v1:AuthorizationPolicy"
RELEASE = "kubernetes:helm.sh/v3:Release"
HOST = "llama-31-8b.inference.svc.cluster.local"
GATEWAY_PRINCIPAL = "cluster.local/ns/istio-ingress/sa/istio-ingressgateway"


@pytest.mark.parametrize("stack", STACKS)
def test_destination_rule_has_subsets_mtls_pool_and_outlier_detection(previews: dict[str, Any], stack: str) -> None:
    rule = resource(previews[stack], DR, "inference-llama-31-8b")
    assert prop(rule, "spec.host") == HOST
    assert prop(rule, "spec.trafficPolicy.tls.mode") == "ISTIO_MUTUAL"
    pool = prop(rule, "spec.trafficPolicy.connectionPool")
    assert pool["tcp"]["maxConnections"] == 1024
    assert pool["http"] == {
        "h2UpgradePolicy": "DO_NOT_UPGRADE",
        "http1MaxPendingRequests": 256,
        "maxRequestsPerConnection": 1000,
    }
    assert prop(rule, "spec.trafficPolicy.outlierDetection") == {
        "consecutive5xxErrors": 5,
        "interval": "30s",
        "baseEjectionTime": "60s",
        "maxEjectionPercent": 50,
    }
    subsets = {s["name"]: s["labels"]["version"] for s in prop(rule, "spec.subsets")}
    expected = {"dev": ["stable"], "staging": ["stable", "canary"], "prod": ["stable", "canary", "mirror"]}[stack]
    assert list(subsets) == expected and all(subsets[name] == name for name in expected)


@pytest.mark.parametrize(("stack", "weights"), [("dev", None), ("staging", [90, 10]), ("prod", [90, 10])])
def test_virtual_service_routes(previews: dict[str, Any], stack: str, weights: list[int] | None) -> None:
    vs = resource(previews[stack], VS, "inference-llama-31-8b")
    assert prop(vs, "spec.gateways") == ["istio-ingress/llm-gateway", "mesh"]
    assert HOST in prop(vs, "spec.hosts")
    routes = {r["name"]: r for r in prop(vs, "spec.http")}
    for r in routes.values():
        assert r["timeout"] == "600s"
        assert r["retries"]["retryOn"] == "connect-failure,refused-stream", (
            "LLM calls retry on connection failures only"
        )
    if weights is None:
        assert list(routes) == ["stable"]
        assert routes["stable"]["route"] == [{"destination": {"host": HOST, "subset": "stable"}}]
        return
    assert list(routes) == ["canary-pinned", "weighted"], "the header route must come first"
    assert routes["canary-pinned"]["match"][0]["headers"] == {"x-llm-mesh-canary": {"exact": "true"}}
    assert [d["weight"] for d in routes["weighted"]["route"]] == weights
    assert [d["destination"]["subset"] for d in routes["weighted"]["route"]] == ["stable", "canary"]


def test_prod_mirrors_five_percent_to_the_shadow_version(previews: dict[str, Any]) -> None:
    weighted = next(
        r for r in prop(resource(previews["prod"], VS, "inference-llama-31-8b"), "spec.http") if r["name"] == "weighted"
    )
    assert weighted["mirror"] == {"host": HOST, "subset": "mirror"}
    assert weighted["mirrorPercentage"] == {"value": 5}


@pytest.mark.parametrize("stack", STACKS)
def test_virtual_service_waits_for_its_destination_rule(previews: dict[str, Any], stack: str) -> None:
    vs = resource(previews[stack], VS, "inference-llama-31-8b")
    rule = resource(previews[stack], DR, "inference-llama-31-8b")
    assert rule["urn"] in vs["dependencies"]


@pytest.mark.parametrize("stack", STACKS)
def test_strict_mtls_everywhere(previews: dict[str, Any], stack: str) -> None:
    policies = {
        s["newState"]["inputs"]["metadata"]["namespace"]: s["newState"] for s in steps_of_type(previews[stack], PA)
    }
    assert set(policies) == {"istio-system", "inference", "model-store"}
    for policy in policies.values():
        assert prop(policy, "spec") == {"mtls": {"mode": "STRICT"}}, "no selector, no port exceptions"


@pytest.mark.parametrize("stack", STACKS)
def test_default_deny_and_least_privilege_allow(previews: dict[str, Any], stack: str) -> None:
    document = previews[stack]
    for namespace in ("inference", "model-store"):
        assert prop(resource(document, AP, f"{namespace}-allow-nothing"), "spec") == {}
    callers = resource(document, AP, "inference-llama-31-8b-callers")
    assert prop(callers, "spec.action") == "ALLOW"
    rules = prop(callers, "spec.rules")
    assert rules[0]["from"][0]["source"]["principals"] == [GATEWAY_PRINCIPAL]
    assert rules[0]["to"][0]["operation"] == {"methods": ["POST"], "paths": ["/v1/completions", "/v1/chat/completions"]}
    assert rules[1]["to"][0]["operation"] == {"methods": ["GET"], "paths": ["/v1/models"]}
    readers = resource(document, AP, "model-store-model-store-readers")
    assert prop(readers, "spec.rules.0.from.0.source.principals") == ["cluster.local/ns/inference/sa/llama-31-8b"]
    assert prop(readers, "spec.rules.0.to.0.operation.methods") == ["GET", "HEAD"]


@pytest.mark.parametrize("stack", STACKS)
def test_istio_from_pinned_charts_by_revision(previews: dict[str, Any], stack: str) -> None:
    releases = {
        s["newState"]["inputs"]["name"]: s["newState"]["inputs"] for s in steps_of_type(previews[stack], RELEASE)
    }
    assert set(releases) == {"istio-base", "istio-cni", "istiod-1-31", "istio-ingressgateway"}
    for release in releases.values():
        assert release["version"] == "1.31.1"
        assert release["repositoryOpts"] == {"repo": "https://blob.istio.io/istio-release/charts"}
    istiod = releases["istiod-1-31"]["values"]
    assert istiod["revision"] == "1-31"
    assert istiod["pilot"]["cni"] == {"enabled": True}
    mesh = istiod["meshConfig"]
    assert mesh["accessLogFile"] == "/dev/stdout"
    assert mesh["defaultConfig"]["holdApplicationUntilProxyStarts"] is True
    assert mesh["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert mesh["extensionProviders"][0]["opentelemetry"]["port"] == 4317
    assert releases["istio-base"]["values"]["defaultRevision"] == "1-31"
    assert releases["istio-cni"]["values"]["global"] == {"platform": "gke"}
    gateway = releases["istio-ingressgateway"]
    assert gateway["namespace"] == "istio-ingress"
    assert gateway["values"]["autoscaling"]["enabled"] is True
    assert gateway["values"]["podDisruptionBudget"] == {"minAvailable": 1}


@pytest.mark.parametrize("stack", STACKS)
def test_application_namespaces_are_injected_by_revision(previews: dict[str, Any], stack: str) -> None:
    for namespace in ("inference", "model-store", "istio-ingress"):
        ns = resource(previews[stack], "kubernetes:core/v1:Namespace", f"istio-ns-{namespace}")
        assert prop(ns, "metadata.labels") == {"istio.io/rev": "1-31"}


def test_prod_gateway_serves_https_only(previews: dict[str, Any]) -> None:
    gateway = resource(previews["prod"], "kubernetes:networking.istio.io/v1:Gateway", "istio-ingress-llm-gateway")
    servers = {s["name"]: s for s in prop(gateway, "spec.servers")}
    assert servers["https"]["tls"] == {"mode": "SIMPLE", "credentialName": "llm-gateway-tls"}
    assert servers["http-redirect"]["tls"] == {"httpsRedirect": True}
    assert prop(gateway, "spec.selector") == {"istio": "ingressgateway"}
