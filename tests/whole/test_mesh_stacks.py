"""Routing and security objects of each stack, as the offline preview declares them."""

from __future__ import annotations

import copy
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
DOMAIN = {"dev": "llm.internal", "staging": "llm.internal", "prod": "llm.example.com"}


@pytest.mark.parametrize("stack", STACKS)
def test_destination_rule_has_subsets_mtls_pool_and_outlier_detection(previews: dict[str, Any], stack: str) -> None:
    rule = resource(previews[stack], DR, "inference-llama-31-8b")
    assert prop(rule, "spec.host") == HOST
    assert prop(rule, "spec.trafficPolicy.tls.mode") == "ISTIO_MUTUAL"
    assert prop(rule, "spec.trafficPolicy.connectionPool") == {
        "tcp": {"connectTimeout": "10s", "maxConnections": 1024},
        "http": {"h2UpgradePolicy": "DO_NOT_UPGRADE", "http1MaxPendingRequests": 256, "maxRequestsPerConnection": 1000},
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
    assert prop(vs, "spec.hosts") == [f"llama-31-8b.{DOMAIN[stack]}", HOST]
    names = [r["name"] for r in prop(vs, "spec.http")]
    routes = {r["name"]: r for r in prop(vs, "spec.http")}
    for r in routes.values():
        assert r["timeout"] == "600s"
        assert r["retries"]["retryOn"] == "connect-failure,refused-stream", (
            "LLM calls retry on connection failures only"
        )
    if weights is None:
        assert names == ["stable"]
        assert routes["stable"]["route"] == [{"destination": {"host": HOST, "subset": "stable"}}]
        return
    assert names == ["canary-pinned", "weighted"], "the header route must come first"
    assert routes["canary-pinned"]["match"][0]["headers"] == {"x-llm-mesh-canary": {"exact": "true"}}
    # From inside the mesh only: through the public gateway a client could load the canary beyond its weight.
    assert routes["canary-pinned"]["match"][0]["gateways"] == ["mesh"]
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
    assert vs["dependencies"] == [rule["urn"]]


def peer_authentications(document: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(namespace, name, spec) of every PeerAuthentication, of any API version, sorted by namespace and name."""
    found = []
    for step in document["steps"]:
        inputs = step["newState"].get("inputs") or {}
        if step["newState"]["type"].startswith("kubernetes:") and inputs.get("kind") == "PeerAuthentication":
            found.append((inputs["metadata"]["namespace"], inputs["metadata"]["name"], inputs["spec"]))
    return sorted(found, key=lambda policy: policy[:2])


STRICT = {"mtls": {"mode": "STRICT"}}
# One namespace-wide default in each namespace with workloads and in the root namespace (mesh-wide), each STRICT:
# no selector, no port exceptions, and no second policy that could relax it.
STRICT_EVERYWHERE = [
    ("inference", "default", STRICT),
    ("istio-system", "default", STRICT),
    ("model-store", "default", STRICT),
    ("observability", "default", STRICT),
]


@pytest.mark.parametrize("stack", STACKS)
def test_strict_mtls_everywhere(previews: dict[str, Any], stack: str) -> None:
    assert peer_authentications(previews[stack]) == STRICT_EVERYWHERE


def test_a_second_permissive_peer_authentication_fails_the_check(previews: dict[str, Any]) -> None:
    document = copy.deepcopy(previews["prod"])
    steps = document["steps"]
    index, step = next(
        (i, s) for i, s in enumerate(steps) if s["urn"] == resource(document, PA, "inference-default")["urn"]
    )
    relaxed = copy.deepcopy(step)
    relaxed["urn"] = relaxed["newState"]["urn"] = step["urn"].replace("::inference-default", "::inference-relaxed")
    relaxed["newState"]["inputs"]["metadata"]["name"] = "relaxed"
    relaxed["newState"]["inputs"]["spec"] = {"mtls": {"mode": "PERMISSIVE"}}
    steps.insert(index, relaxed)  # before the STRICT one: a reader keyed by namespace would keep only the STRICT
    found = peer_authentications(document)
    assert found == [
        STRICT_EVERYWHERE[0],
        ("inference", "relaxed", {"mtls": {"mode": "PERMISSIVE"}}),
        *STRICT_EVERYWHERE[1:],
    ]
    assert found != STRICT_EVERYWHERE


@pytest.mark.parametrize("stack", STACKS)
def test_default_deny_and_least_privilege_allow(previews: dict[str, Any], stack: str) -> None:
    document = previews[stack]
    names = sorted(s["urn"].split("::")[-1] for s in steps_of_type(document, AP))
    # prod's public gateway also refuses every request without an end-user token.
    jwt = ["istio-ingress-gateway-require-jwt"] if stack == "prod" else []
    assert names == sorted(
        [
            "inference-allow-nothing",
            "inference-llama-31-8b-callers",
            "model-store-allow-nothing",
            "model-store-model-store-readers",
            "observability-allow-nothing",
            "observability-opentelemetry-collector-senders",
            *jwt,
        ]
    )
    if jwt:
        assert prop(resource(document, AP, jwt[0]), "spec") == {
            "action": "DENY",
            "selector": {"matchLabels": {"istio": "ingressgateway"}},
            "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}]}],
        }
    for namespace in ("inference", "model-store", "observability"):
        assert prop(resource(document, AP, f"{namespace}-allow-nothing"), "spec") == {}
    # In prod a request through the gateway must also carry a token of the issuer (https://auth.example.com/, any
    # subject: "<issuer>/*").
    tokens = {"requestPrincipals": ["https://auth.example.com//*"]} if stack == "prod" else {}
    gateway = [{"source": {"principals": [GATEWAY_PRINCIPAL], **tokens}}]
    assert prop(resource(document, AP, "inference-llama-31-8b-callers"), "spec") == {
        "action": "ALLOW",
        "selector": {"matchLabels": {"app.kubernetes.io/part-of": "llm-mesh", "app.kubernetes.io/name": "llama-31-8b"}},
        "rules": [
            {
                "from": gateway,
                "to": [{"operation": {"methods": ["POST"], "paths": ["/v1/completions", "/v1/chat/completions"]}}],
            },
            {"from": gateway, "to": [{"operation": {"methods": ["GET"], "paths": ["/v1/models"]}}]},
        ],
    }
    assert prop(resource(document, AP, "model-store-model-store-readers"), "spec") == {
        "action": "ALLOW",
        "selector": {"matchLabels": {"app.kubernetes.io/name": "model-store"}},
        "rules": [
            {
                "from": [{"source": {"principals": ["cluster.local/ns/inference/sa/llama-31-8b"]}}],
                "to": [{"operation": {"methods": ["GET", "HEAD"], "paths": ["/models/*"]}}],
            }
        ],
    }


@pytest.mark.parametrize("stack", STACKS)
def test_istio_from_pinned_charts_by_revision(previews: dict[str, Any], stack: str) -> None:
    installed = [s["newState"]["inputs"] for s in steps_of_type(previews[stack], RELEASE)]
    assert sorted(r["name"] for r in installed) == ["istio-base", "istio-cni", "istio-ingressgateway", "istiod-1-31"]
    releases = {r["name"]: r for r in installed}
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
    assert mesh["extensionProviders"] == [
        {
            "name": "otel-tracing",
            "opentelemetry": {"port": 4317, "service": "opentelemetry-collector.observability.svc.cluster.local"},
        }
    ]
    assert releases["istio-base"]["values"]["defaultRevision"] == "1-31"
    mirror = f"us-central1-docker.pkg.dev/llm-mesh-{stack}/llm-mesh-{stack}-dockerhub/istio"
    assert releases["istio-cni"]["values"]["global"] == {"platform": "gke", "hub": mirror}
    gateway = releases["istio-ingressgateway"]
    assert gateway["namespace"] == "istio-ingress"
    assert gateway["values"]["autoscaling"]["enabled"] is True
    assert gateway["values"]["podDisruptionBudget"] == {"minAvailable": 1}


@pytest.mark.parametrize("stack", STACKS)
def test_application_namespaces_are_injected_by_revision(previews: dict[str, Any], stack: str) -> None:
    for namespace in ("inference", "model-store", "istio-ingress"):
        ns = resource(previews[stack], "kubernetes:core/v1:Namespace", f"istio-ns-{namespace}")
        assert prop(ns, "metadata.labels")["istio.io/rev"] == "1-31"


def test_prod_gateway_serves_https_only(previews: dict[str, Any]) -> None:
    """One server on 443, and the load balancer publishes 443 alone: no plaintext port for a bearer token to be
    sent on, no status port 15021 for anyone who finds the address."""
    gateway = resource(previews["prod"], "kubernetes:networking.istio.io/v1:Gateway", "istio-ingress-llm-gateway")
    assert prop(gateway, "spec") == {
        "selector": {"istio": "ingressgateway"},
        "servers": [
            {
                "name": "https",
                "hosts": ["*.llm.example.com"],
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "tls": {"mode": "SIMPLE", "credentialName": "llm-gateway-tls"},
            },
        ],
    }
    release = resource(previews["prod"], "kubernetes:helm.sh/v3:Release", "istio-istio-ingressgateway")
    assert prop(release, "values.service") == {
        "type": "LoadBalancer",
        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}],
        "loadBalancerSourceRanges": ["203.0.113.0/24"],
    }


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_an_internal_gateway_publishes_its_one_port_on_the_vpc(previews: dict[str, Any], stack: str) -> None:
    release = resource(previews[stack], "kubernetes:helm.sh/v3:Release", "istio-istio-ingressgateway")
    service = prop(release, "values.service")
    assert service["annotations"] == {"networking.gke.io/load-balancer-type": "Internal"}
    assert [p["port"] for p in service["ports"]] == [80], "no TLS outside prod: plain HTTP, on the VPC only"


def test_prod_gateway_pods_rate_limit_every_request(previews: dict[str, Any]) -> None:
    """Envoy's local rate limit before the router on the gateway pods: 20 a second, bursts of 40, per pod; enabled
    and enforced for 100% of requests (Envoy's default for both is 0%)."""
    envoy_filter = resource(
        previews["prod"], "kubernetes:networking.istio.io/v1alpha3:EnvoyFilter", "istio-ingress-gateway-rate-limit"
    )
    spec = prop(envoy_filter, "spec")
    assert spec["workloadSelector"] == {"labels": {"istio": "ingressgateway"}}
    (patch,) = spec["configPatches"]
    assert patch["applyTo"] == "HTTP_FILTER"
    assert patch["match"]["context"] == "GATEWAY"
    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"] == {"name": "envoy.filters.http.router"}
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    config = patch["patch"]["value"]["typed_config"]["value"]
    assert config["token_bucket"] == {"max_tokens": 40, "tokens_per_fill": 20, "fill_interval": "1s"}
    for flag in ("filter_enabled", "filter_enforced"):
        assert config[flag]["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}
    for stack in ("dev", "staging"):
        assert not steps_of_type(previews[stack], "kubernetes:networking.istio.io/v1alpha3:EnvoyFilter")
