"""The Gateway API and Inference Extension objects write manifests their published CRD schemas accept, read them
back unchanged, and refuse what the API would reject or route wrongly, with a message that says why."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from llm_mesh.checks.schemas import crd_validator
from llm_mesh.mesh.base import IstioObject
from llm_mesh.mesh.gateway_api import Gateway, HTTPRoute, InferencePool

META = {"name": "llama", "namespace": "inference"}
POOL = {"group": "inference.networking.k8s.io", "kind": "InferencePool"}


def schema_errors(model: type[IstioObject], spec: dict[str, Any]) -> list[str]:
    manifest = {"apiVersion": model.api_version, "kind": model.kind, "metadata": META, "spec": spec}
    validator = crd_validator(model.api_version, model.kind)
    assert validator is not None, f"no vendored CRD serves {model.api_version} {model.kind}"
    found = validator.iter_errors(manifest)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in found]


def build(model: type[IstioObject], spec: dict[str, Any]) -> IstioObject:
    return model.model_validate({"metadata": META, "spec": spec})


def gateway_spec(**listener_changes: Any) -> dict[str, Any]:
    https = {
        "name": "https",
        "hostname": "llm.example.com",
        "port": 443,
        "protocol": "HTTPS",
        "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "llm-tls"}]},
        "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"llm-mesh/routes": "true"}}}},
    }
    http = {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"kinds": [{"kind": "HTTPRoute"}]}}
    return {"gatewayClassName": "istio", "listeners": [{**https, **listener_changes}, http]}


def rule(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "matches": [
            {"path": {"type": "PathPrefix", "value": "/v1"}, "headers": [{"name": "x-model", "value": "llama"}]},
            {"path": {"type": "Exact", "value": "/v1/models"}, "method": "GET"},
        ],
        "filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-tier", "value": "gpu"}]}},
            {
                "type": "RequestMirror",
                "requestMirror": {"backendRef": {"name": "llama-shadow", "port": 8000}, "percent": 5},
            },
        ],
        "backendRefs": [{**POOL, "name": "llama-stable", "weight": 90}, {**POOL, "name": "llama-canary", "weight": 10}],
        "timeouts": {"request": "300s", "backendRequest": "2m"},
    }
    return {**base, **changes}


def route_spec(**rule_changes: Any) -> dict[str, Any]:
    return {
        "parentRefs": [{"name": "inference-gateway", "namespace": "istio-ingress", "sectionName": "https"}],
        "hostnames": ["llm.example.com"],
        "rules": [rule(**rule_changes)],
    }


def pool_spec(**changes: Any) -> dict[str, Any]:
    base = {
        "selector": {"matchLabels": {"app": "llama", "track": "stable"}},
        "targetPorts": [{"number": 8000}],
        "endpointPickerRef": {"name": "llama-epp", "port": {"number": 9002}, "failureMode": "FailClose"},
    }
    return {**base, **changes}


GOOD = [(Gateway, gateway_spec()), (HTTPRoute, route_spec()), (InferencePool, pool_spec())]


@pytest.mark.parametrize(("model", "spec"), GOOD, ids=["Gateway", "HTTPRoute", "InferencePool"])
def test_manifest_is_valid_for_the_crd_and_reads_back_unchanged(model: type[IstioObject], spec: dict[str, Any]) -> None:
    manifest = build(model, spec).manifest()
    assert manifest == {"apiVersion": model.api_version, "kind": model.kind, "metadata": META, "spec": spec}
    assert schema_errors(model, manifest["spec"]) == []
    body = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    assert model.model_validate(body).manifest() == manifest


def test_gateway_api_duration_and_python_names_write_the_wire_names() -> None:
    route = build(HTTPRoute, route_spec(timeouts={"request": "1m30s", "backendRequest": "90s"}))
    assert route.manifest()["spec"]["rules"][0]["timeouts"] == {"request": "1m30s", "backendRequest": "90s"}
    listener = build(Gateway, gateway_spec()).manifest()["spec"]["listeners"][0]
    assert listener["allowedRoutes"]["namespaces"]["from"] == "Selector"


def pool_ref(**changes: Any) -> dict[str, Any]:
    return {**POOL, "name": "llama-stable", **changes}


# Each cross-field rule, broken once. The CRD's own CEL rules are marked: jsonschema cannot evaluate them.
@pytest.mark.parametrize(
    ("model", "spec", "match"),
    [
        # Gateway
        (Gateway, {**gateway_spec(), "listeners": [gateway_spec()["listeners"][1]] * 2}, "listener names must be unique"),  # CEL
        (
            Gateway,
            {"gatewayClassName": "istio", "listeners": [{"name": "a", "port": 80, "protocol": "HTTP"}, {"name": "b", "port": 80, "protocol": "HTTP"}]},
            "repeat a port, protocol and hostname",
        ),  # CEL
        (Gateway, gateway_spec(protocol="HTTP"), "tls must not be set for protocol HTTP"),  # CEL
        (Gateway, gateway_spec(tls=None), "protocol HTTPS needs tls"),
        (Gateway, gateway_spec(tls={"mode": "Passthrough"}), "HTTPS terminates TLS"),  # CEL
        (Gateway, gateway_spec(tls={"mode": "Terminate"}), "needs certificateRefs"),  # CEL
        (Gateway, gateway_spec(protocol="TCP", tls=None), "hostname must not be set for protocol TCP"),  # CEL
        (Gateway, gateway_spec(allowedRoutes={"namespaces": {"from": "Selector"}}), "a selector goes with from: Selector"),
        (
            Gateway,
            gateway_spec(allowedRoutes={"namespaces": {"from": "Same", "selector": {"matchLabels": {"a": "b"}}}}),
            "a selector goes with from: Selector",
        ),
        # HTTPRoute backends
        (HTTPRoute, route_spec(backendRefs=[{"name": "llama"}]), "a Service reference needs a port"),  # CEL
        (HTTPRoute, route_spec(backendRefs=[pool_ref(group="")]), "an InferencePool is in group"),
        (
            HTTPRoute,
            route_spec(backendRefs=[pool_ref(group="inference.networking.x-k8s.io")]),
            "the alpha group",
        ),
        (HTTPRoute, route_spec(backendRefs=[pool_ref(kind="Service")]), "serves kind InferencePool, not 'Service'"),
        (HTTPRoute, route_spec(backendRefs=[pool_ref(port=8000)]), "leave the port out of an InferencePool"),
        (
            HTTPRoute,
            route_spec(backendRefs=[pool_ref(weight=0), pool_ref(name="llama-canary", weight=0)]),
            "every weight is 0",
        ),
        (HTTPRoute, route_spec(backendRefs=[]), "at least 1 item"),
        # HTTPRoute filters
        (
            HTTPRoute,
            route_spec(filters=[{"type": "RequestMirror", "requestMirror": {"backendRef": pool_ref()}}]),
            "RequestMirror to 'llama-stable', which this rule already routes to",
        ),
        (
            HTTPRoute,
            route_spec(filters=[{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "llama-shadow"}}}]),
            "a Service reference needs a port",
        ),  # CEL
        (
            HTTPRoute,
            route_spec(
                filters=[{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "s", "port": 80}, "percent": 5, "fraction": {"numerator": 1}}}]
            ),
            "percent or fraction, not both",
        ),  # CEL
        (
            HTTPRoute,
            route_spec(filters=[{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "s", "port": 80}, "fraction": {"numerator": 3, "denominator": 2}}}]),
            "numerator must not exceed the denominator",
        ),  # CEL
        (HTTPRoute, route_spec(filters=[{"type": "RequestMirror"}]), "sets its own field only; it sets those of none"),  # CEL
        (
            HTTPRoute,
            route_spec(filters=[{"type": "RequestMirror", "requestHeaderModifier": {"remove": ["x"]}}]),
            r"it sets those of \['RequestHeaderModifier'\]",
        ),  # CEL
        (
            HTTPRoute,
            route_spec(filters=[{"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x"]}}] * 2),
            r"\['RequestHeaderModifier'\] cannot be repeated",
        ),  # CEL
        (
            HTTPRoute,
            route_spec(filters=[{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "1"}] * 2}}]),
            r"header filter set: \['a'\] named more than once",
        ),
        # HTTPRoute matches, timeouts, parents
        (HTTPRoute, route_spec(matches=[{"path": {"value": "v1"}}]), "absolute path"),  # CEL
        (HTTPRoute, route_spec(matches=[{"path": {"type": "Exact", "value": "/v1//chat"}}]), "absolute path"),  # CEL
        (
            HTTPRoute,
            route_spec(matches=[{"headers": [{"name": "x-model", "value": "a"}, {"name": "x-model", "value": "b"}]}]),
            r"match headers: \['x-model'\] named more than once",
        ),
        (HTTPRoute, route_spec(timeouts={"request": "30s", "backendRequest": "1m"}), "backendRequest cannot be longer"),  # CEL
        (
            HTTPRoute,
            {**route_spec(), "parentRefs": [{"name": "inference-gateway"}, {"name": "inference-gateway", "sectionName": "https"}]},
            "each needs its own sectionName",
        ),  # CEL
        (
            HTTPRoute,
            {**route_spec(), "parentRefs": [{"name": "gw", "sectionName": "https"}, {"name": "gw", "sectionName": "https"}]},
            "each needs its own sectionName",
        ),  # CEL
        (HTTPRoute, {**route_spec(), "rules": [rule(matches=[{"method": "GET"}] * 64)] * 3}, "more than 128 matches"),  # CEL
        (HTTPRoute, {**route_spec(), "parentRefs": []}, "at least 1 item"),
        # InferencePool
        (
            InferencePool,
            pool_spec(endpointPickerRef={"name": "llama-epp"}),
            "a Service picker needs a port",
        ),  # CEL
    ],
)  # fmt: skip
def test_cross_field_rules(model: type[IstioObject], spec: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        build(model, spec)


def test_rules_that_are_not_cel_pass_the_schema() -> None:
    """The model's own rules refuse what the CRD admits: the schema check alone would let these through."""
    for model, spec in [
        (HTTPRoute, route_spec(backendRefs=[pool_ref(port=8000)])),
        (HTTPRoute, route_spec(filters=[{"type": "RequestMirror", "requestMirror": {"backendRef": pool_ref()}}])),
        (Gateway, gateway_spec(allowedRoutes={"namespaces": {"from": "Selector"}})),
    ]:
        assert schema_errors(model, spec) == []
        with pytest.raises(ValidationError):
            build(model, spec)


@pytest.mark.parametrize(
    ("model", "spec"),
    [
        (Gateway, gateway_spec(port=0)),
        (Gateway, gateway_spec(hostnames=["llm.example.com"])),
        (Gateway, gateway_spec(name="HTTPS")),
        (Gateway, {"listeners": gateway_spec()["listeners"]}),
        (HTTPRoute, route_spec(backendRefs=[pool_ref(weight=1_000_001)])),
        (HTTPRoute, route_spec(timeouts={"request": "1.5s"})),
        (HTTPRoute, route_spec(matches=[{"method": "FETCH"}])),
        (HTTPRoute, route_spec(filters=[{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "s", "port": 80}, "percent": 101}}])),
        (HTTPRoute, {**route_spec(), "hostnames": ["LLM.example.com"]}),
        (InferencePool, pool_spec(targetPorts=[{"number": 8000}, {"number": 8001}])),
        (InferencePool, pool_spec(targetPorts=[])),
        (InferencePool, pool_spec(endpointPickerRef={"name": "llama-epp", "port": {"number": 9002}, "failureMode": "Open"})),
        (InferencePool, {k: v for k, v in pool_spec().items() if k != "endpointPickerRef"}),
        (InferencePool, pool_spec(selector={"matchLabels": {}})),
    ],
)  # fmt: skip
def test_what_the_crd_schema_refuses_the_model_refuses(model: type[IstioObject], spec: dict[str, Any]) -> None:
    assert schema_errors(model, spec), "the case should be one the published schema refuses"
    with pytest.raises(ValidationError):
        build(model, spec)
