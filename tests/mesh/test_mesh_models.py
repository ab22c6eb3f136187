"""The typed Istio objects refuse what Istio would reject or silently misread, with a message that says why."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from llm_mesh.mesh import (
    AuthorizationPolicy,
    DestinationRule,
    Gateway,
    PeerAuthentication,
    RequestAuthentication,
    VirtualService,
)
from llm_mesh.mesh.base import duration_seconds

META = {"name": "llama", "namespace": "inference"}
HOST = "llama.inference.svc.cluster.local"


def route(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "weighted",
        "route": [
            {"destination": {"host": HOST, "subset": "stable"}, "weight": 90},
            {"destination": {"host": HOST, "subset": "canary"}, "weight": 10},
        ],
    }
    return {**base, **changes}


def virtual_service(**route_changes: Any) -> VirtualService:
    return VirtualService.model_validate(
        {"metadata": META, "spec": {"hosts": [HOST], "http": [route(**route_changes)]}}
    )


def rejected(build: Any, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        build()


def test_valid_virtual_service_renders_istio_manifest() -> None:
    manifest = virtual_service(mirror={"host": HOST, "subset": "mirror"}, mirrorPercentage={"value": 5}).manifest()
    # Unset fields (match, timeout, retries) are left out.
    assert manifest == {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": META,
        "spec": {
            "hosts": [HOST],
            "http": [{**route(), "mirror": {"host": HOST, "subset": "mirror"}, "mirrorPercentage": {"value": 5.0}}],
        },
    }


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"route": [{"destination": {"host": HOST}, "weight": 90}, {"destination": {"host": HOST}, "weight": 20}]},
            "sum to 100",
        ),
        (
            {"route": [{"destination": {"host": HOST}, "weight": 90}, {"destination": {"host": HOST}}]},
            "must all be set",
        ),
        ({"route": [{"destination": {"host": HOST}, "weight": 101}]}, "less than or equal to 100"),
        ({"route": []}, "at least 1 item"),
        ({"mirrorPercentage": {"value": 5}}, "mirrorPercentage without a mirror"),
        ({"mirror": {"host": HOST}, "mirrorPercentage": {"value": 120}}, "less than or equal to 100"),
        ({"timeout": "ten seconds"}, "is not a duration"),
        ({"timeout": "0s"}, "shorter than Istio's minimum"),
        (
            {"timeout": "10s", "retries": {"attempts": 2, "perTryTimeout": "30s"}},
            "perTryTimeout exceeds the route timeout",
        ),
        (
            {"retries": {"attempts": 2, "retryOn": "connect-failure,sometimes"}},
            r"unknown retryOn condition\(s\) \['sometimes'\]",
        ),
        ({"weigth": 10}, "Extra inputs are not permitted"),
        ({"match": [{"uri": {"exact": "/a", "prefix": "/"}}]}, "exactly one of exact, prefix, regex"),
    ],
)
def test_virtual_service_rejects(changes: dict[str, Any], match: str) -> None:
    rejected(lambda: virtual_service(**changes), match)


def test_route_names_are_unique() -> None:
    spec = {"hosts": [HOST], "http": [route(), route()]}
    rejected(lambda: VirtualService.model_validate({"metadata": META, "spec": spec}), "route names must be unique")


def destination_rule(**spec: Any) -> DestinationRule:
    return DestinationRule.model_validate({"metadata": META, "spec": {"host": HOST, **spec}})


def test_destination_rule_wire_names() -> None:
    rule = destination_rule(
        trafficPolicy={
            "outlierDetection": {"consecutive5xxErrors": 5},
            "connectionPool": {"http": {"h2UpgradePolicy": "DO_NOT_UPGRADE"}},
        },
        subsets=[{"name": "stable", "labels": {"version": "stable"}}],
    )
    assert rule.manifest()["spec"] == {
        "host": HOST,
        "trafficPolicy": {
            "outlierDetection": {"consecutive5xxErrors": 5},
            "connectionPool": {"http": {"h2UpgradePolicy": "DO_NOT_UPGRADE"}},
        },
        "subsets": [{"name": "stable", "labels": {"version": "stable"}}],
    }


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            {"subsets": [{"name": "a", "labels": {"v": "1"}}, {"name": "a", "labels": {"v": "2"}}]},
            "subset names must be unique",
        ),
        ({"subsets": [{"name": "a", "labels": {}}]}, "at least 1 item"),
        ({"trafficPolicy": {"tls": {"mode": "MUTAL"}}}, "'DISABLE', 'SIMPLE', 'MUTUAL' or 'ISTIO_MUTUAL'"),
        ({"trafficPolicy": {"outlierDetection": {"maxEjectionPercent": 150}}}, "less than or equal to 100"),
        ({"trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 0}}}}, "greater than or equal to 1"),
        ({"trafficPolicy": {"outlierDetection": {"interval": "often"}}}, "is not a duration"),
    ],
)
def test_destination_rule_rejects(spec: dict[str, Any], match: str) -> None:
    rejected(lambda: destination_rule(**spec), match)


def test_tls_modes_are_found_at_every_level() -> None:
    rule = destination_rule(
        trafficPolicy={
            "tls": {"mode": "ISTIO_MUTUAL"},
            "portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}],
        },
        subsets=[{"name": "a", "labels": {"v": "1"}, "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}],
    )
    assert sorted(rule.tls_modes()) == ["DISABLE", "ISTIO_MUTUAL", "SIMPLE"]


def test_peer_authentication_rules() -> None:
    manifest = PeerAuthentication.model_validate({"metadata": META, "spec": {"mtls": {"mode": "STRICT"}}}).manifest()
    assert manifest["spec"] == {"mtls": {"mode": "STRICT"}}
    rejected(
        lambda: PeerAuthentication.model_validate({"metadata": META, "spec": {"mtls": {"mode": "strict"}}}), "'STRICT'"
    )
    rejected(
        lambda: PeerAuthentication.model_validate(
            {"metadata": META, "spec": {"portLevelMtls": {"8000": {"mode": "DISABLE"}}}}
        ),
        "portLevelMtls needs a selector",
    )


def test_authorization_policy_rules() -> None:
    allow_nothing = AuthorizationPolicy.model_validate({"metadata": META, "spec": {}})
    assert allow_nothing.spec.allows_nothing and allow_nothing.manifest()["spec"] == {}
    rule = {
        "from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}],
        "to": [{"operation": {"methods": ["POST"]}}],
    }
    policy = AuthorizationPolicy.model_validate({"metadata": META, "spec": {"action": "ALLOW", "rules": [rule]}})
    assert policy.manifest()["spec"] == {"action": "ALLOW", "rules": [rule]}
    rejected(
        lambda: AuthorizationPolicy.model_validate({"metadata": META, "spec": {"action": "DENY"}}),
        "DENY policy without rules",
    )
    rejected(
        lambda: AuthorizationPolicy.model_validate({"metadata": META, "spec": {"action": "PERMIT"}}), "'ALLOW', 'DENY'"
    )


def test_request_authentication_needs_https_jwks() -> None:
    spec = {"jwtRules": [{"issuer": "https://issuer", "jwksUri": "http://issuer/jwks"}]}
    rejected(lambda: RequestAuthentication.model_validate({"metadata": META, "spec": spec}), "should match pattern")


def test_gateway_https_needs_credentials() -> None:
    server = {
        "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
        "hosts": ["*.example.com"],
        "tls": {"mode": "SIMPLE"},
    }
    spec = {"selector": {"istio": "ingressgateway"}, "servers": [server]}
    rejected(lambda: Gateway.model_validate({"metadata": META, "spec": spec}), "needs a credentialName")


def test_metadata_names_are_dns_labels() -> None:
    rejected(
        lambda: PeerAuthentication.model_validate({"metadata": {"name": "Default", "namespace": "x"}, "spec": {}}),
        "not a DNS label",
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600), ("1.5s", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


def test_a_match_names_only_gateways_the_service_is_bound_to() -> None:
    pinned = route(match=[{"headers": {"x-llm-mesh-canary": {"exact": "true"}}, "gateways": ["mesh"]}])
    bound = {"hosts": [HOST], "gateways": ["istio-ingress/llm-gateway", "mesh"], "http": [pinned]}
    assert VirtualService.model_validate({"metadata": META, "spec": bound}).spec.http[0].match
    assert virtual_service(match=pinned["match"]).spec.gateways is None, "mesh alone by default"
    elsewhere = route(match=[{"gateways": ["istio-ingress/other"]}])
    rejected(
        lambda: VirtualService.model_validate({"metadata": META, "spec": {**bound, "http": [elsewhere]}}),
        r"route 'weighted': match gateways \['istio-ingress/other'\] are not among",
    )
