"""The inference-pool path, read from the plan of staging and prod with one model switched by one key: what it
declares, that every checker passes it, that each of its guarantees trips a rule when broken, and that the switch
replaces nothing stateful."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from llm_mesh.checks.analysis import analyze, inventory
from llm_mesh.checks.inference_routing import inference_routing_findings
from llm_mesh.checks.kube_objects import helm_releases, kube_objects
from llm_mesh.checks.schemas import schema_findings
from llm_mesh.engine.readers import load_engine_document
from llm_mesh.ops.diff import diff, states
from llm_mesh.plan import queries
from llm_mesh.plan.istio_values import GATEWAY_NAME_LABEL, INFERENCE_EXTENSION_FLAG
from tests.conftest import POOLED_STACKS, Cli
from tests.helpers import HELM_RELEASE, prop, resource, steps_of_type

ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
POOL = "kubernetes:inference.networking.k8s.io/v1:InferencePool"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
VS = "kubernetes:networking.istio.io/v1:VirtualService"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
MODEL = "llama-31-8b"


def manifests(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [o.manifest for o in kube_objects(load_document(document).resources)]


def load_document(document: dict[str, Any]) -> Any:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(document, f)
    return load_engine_document(Path(f.name))


def findings(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    resources = load_document(document).resources
    objects = kube_objects(resources)
    found = schema_findings(objects, "1.34")
    found += analyze(inventory(objects, helm_releases(resources), set()))
    found += inference_routing_findings(objects)
    return [(f.code, f.severity, f.object) for f in found]


def codes(document: dict[str, Any]) -> set[str]:
    return {code for code, severity, _ in findings(document) if severity == "error"}


def state_of(document: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    (found,) = [
        s["newState"]
        for s in document["steps"]
        if s["newState"].get("inputs", {}).get("kind") == kind
        and (s["newState"]["inputs"].get("metadata") or {}).get("name") == name
    ]
    return found


@pytest.mark.parametrize("stack", POOLED_STACKS)
def test_the_switch_declares_route_pools_pickers_and_keeps_the_vs_for_the_mesh(
    pooled_previews: dict[str, Any], stack: str
) -> None:
    document = pooled_previews[stack]
    route = resource(document, ROUTE, f"inference-{MODEL}")
    refs = route["inputs"]["spec"]["rules"][0]["backendRefs"]
    # Canary first, stable last: an Istio without the fix of istio/istio#61594 runs the last backend's picker.
    assert [(r["kind"], r["name"], r.get("weight")) for r in refs] == [
        ("InferencePool", f"{MODEL}-canary", 10.0),
        ("InferencePool", f"{MODEL}-stable", 90.0),
    ]
    pools = {s["newState"]["inputs"]["metadata"]["name"] for s in steps_of_type(document, POOL)}
    assert pools == {f"{MODEL}-stable", f"{MODEL}-canary"}
    for pool in pools:
        picker = state_of(document, "Deployment", f"{pool}-epp")
        assert prop(picker, "spec.replicas") == 2
    # Gateway traffic takes the route; the VirtualService serves in-mesh callers, and with TLS stays on Istio's own
    # Gateway for a request coalesced onto another model's connection.
    tls = stack == "prod"
    expected = ["istio-ingress/llm-gateway", "mesh"] if tls else ["mesh"]
    assert resource(document, VS, f"inference-{MODEL}")["inputs"]["spec"]["gateways"] == expected
    gateway = resource(document, GATEWAY, "istio-ingress-llm-inference")["inputs"]["spec"]
    assert gateway["addresses"] == [
        {"type": "Hostname", "value": "istio-ingressgateway.istio-ingress.svc.cluster.local"}
    ]
    assert [listener["hostname"] for listener in gateway["listeners"]] == [
        f"{MODEL}.{'llm.example.com' if stack == 'prod' else 'llm.internal'}"
    ]


def test_istio_is_told_to_serve_pools_on_the_gateway_pods(pooled_previews: dict[str, Any]) -> None:
    document = pooled_previews["prod"]
    releases = {
        s["newState"]["inputs"]["chart"]: s["newState"]["inputs"] for s in steps_of_type(document, HELM_RELEASE)
    }
    assert releases["istiod"]["values"]["pilot"]["env"][INFERENCE_EXTENSION_FLAG] == "true"
    assert releases["gateway"]["values"]["labels"][GATEWAY_NAME_LABEL] == "llm-inference"


def test_shipped_stacks_stay_on_mesh_balancing(previews: dict[str, Any]) -> None:
    for document in previews.values():
        assert not steps_of_type(document, ROUTE) and not steps_of_type(document, POOL)
        releases = [s["newState"]["inputs"] for s in steps_of_type(document, HELM_RELEASE)]
        istiod = next(r for r in releases if r["chart"] == "istiod")
        assert INFERENCE_EXTENSION_FLAG not in istiod["values"]["pilot"]["env"]


def test_the_picker_reads_what_the_servers_write_where_it_can(pooled_previews: dict[str, Any]) -> None:
    picker = state_of(pooled_previews["prod"], "Deployment", f"{MODEL}-stable-epp")
    (container,) = prop(picker, "spec.template.spec.containers")
    args = container["args"]
    assert f"--kv-cache-usage-percentage-metric={queries.VLLM_KV_CACHE}" in args
    assert f"--total-queued-requests-metric={queries.VLLM_WAITING}" in args
    # The servers' own port admits mTLS only; the sidecar agent's merged endpoint is what scrapers read.
    assert "--model-server-metrics-port=15020" in args and "--model-server-metrics-path=/stats/prometheus" in args
    assert "--secure-serving=false" in args and "--pool-name=llama-31-8b-stable" in args
    annotations = prop(picker, "spec.template.metadata.annotations")
    assert annotations["traffic.sidecar.istio.io/excludeOutboundPorts"] == "15020"
    assert "sidecar.istio.io/inject" not in annotations
    # Its gRPC probes on 9003 go through the agent (kubelet cannot present a mesh certificate under STRICT).
    assert annotations["sidecar.istio.io/rewriteAppHTTPProbers"] == "true"
    assert container["readinessProbe"]["grpc"] == {"port": 9003.0, "service": "inference-extension"}


@pytest.mark.parametrize("stack", POOLED_STACKS)
def test_validate_and_policy_pass_the_switched_stack(
    cli: Cli, pooled_project: Path, pooled_preview_texts: dict[str, str], tmp_path: Path, stack: str
) -> None:
    plan = tmp_path / f"{stack}.json"
    plan.write_text(pooled_preview_texts[stack])
    validated = cli("--project", str(pooled_project), "validate", str(plan))
    assert validated.returncode == 0, validated.stdout
    assert "0 errors" in validated.stdout and "LM0132" in validated.stdout  # the weighted pools' Istio caveat
    checked = cli("--project", str(pooled_project), "policy", str(plan))
    assert checked.returncode == 0, checked.stdout


def test_the_plan_has_no_error_and_its_warnings_are_the_istio_and_envoy_caveats(
    pooled_previews: dict[str, Any],
) -> None:
    assert sorted(findings(pooled_previews["prod"])) == [
        ("LM0132", "warning", f"HTTPRoute/inference/{MODEL}"),  # weighted pools, istio/istio#61594
        ("LM0133", "warning", "Gateway/istio-ingress/llm-inference"),  # a rate-limit bucket per listener
    ]


def _edit(document: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    return state_of(document, kind, name)["inputs"]


def break_mtls_to_picker(d: dict[str, Any]) -> None:
    # The Inference Extension chart's DestinationRule for Istio: TLS the picker's sidecar cannot take under STRICT.
    rule = copy.deepcopy(state_of(d, "DestinationRule", MODEL))
    rule["inputs"]["metadata"]["name"] = "picker-tls"
    rule["inputs"]["spec"] = {
        "host": f"{MODEL}-stable-epp.inference.svc.cluster.local",
        "trafficPolicy": {"tls": {"mode": "SIMPLE", "insecureSkipVerify": True}},
    }
    d["steps"].append({"op": "create", "urn": "urn:pulumi:prod::llm-mesh::x::picker-tls", "newState": rule})


def break_pool_selector(d: dict[str, Any]) -> None:
    _edit(d, "InferencePool", f"{MODEL}-stable")["spec"]["selector"]["matchLabels"]["version"] = "stabel"


def break_pool_port(d: dict[str, Any]) -> None:
    _edit(d, "InferencePool", f"{MODEL}-stable")["spec"]["targetPorts"] = [{"number": 8080}]


def break_pool_outside_mesh(d: dict[str, Any]) -> None:
    labels = _edit(d, "Namespace", "inference")["metadata"]["labels"]
    labels.pop("istio.io/rev")
    labels["istio-injection"] = "disabled"


def break_pool_pods_label_opt_out(d: dict[str, Any]) -> None:
    labels = _edit(d, "Deployment", f"{MODEL}-stable")["spec"]["template"]["metadata"]["labels"]
    labels["sidecar.istio.io/inject"] = "false"  # the label wins over the namespace, as Istio's injector reads it


def break_picker_service(d: dict[str, Any]) -> None:
    _edit(d, "InferencePool", f"{MODEL}-canary")["spec"]["endpointPickerRef"]["name"] = "no-such-epp"


def break_route_to_pool(d: dict[str, Any]) -> None:
    _edit(d, "HTTPRoute", MODEL)["spec"]["rules"][0]["backendRefs"][0]["name"] = f"{MODEL}-stabel"


def break_mirror_service(d: dict[str, Any]) -> None:
    _edit(d, "Service", f"{MODEL}-mirror")["spec"]["selector"]["version"] = "mirrror"


def break_listener_without_route(d: dict[str, Any]) -> None:
    _edit(d, "HTTPRoute", MODEL)["spec"]["parentRefs"][0]["sectionName"] = "another"


def break_picker_secrets(d: dict[str, Any]) -> None:
    role = copy.deepcopy(state_of(d, "ClusterRole", "llm-mesh-endpoint-picker-reviews"))
    role["inputs"]["metadata"]["name"] = "read-secrets"
    role["inputs"]["rules"] = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
    binding = copy.deepcopy(state_of(d, "ClusterRoleBinding", "llm-mesh-endpoint-picker-reviews"))
    binding["inputs"]["metadata"]["name"] = "read-secrets"
    binding["inputs"]["roleRef"]["name"] = "read-secrets"
    for state in (role, binding):
        d["steps"].append({"op": "create", "urn": f"urn:pulumi:prod::llm-mesh::x::{state['type']}", "newState": state})


@pytest.mark.parametrize(
    ("crafted", "code"),
    [
        (break_mtls_to_picker, "LM0105"),
        (break_pool_selector, "LM0127"),
        (break_pool_port, "LM0127"),
        (break_pool_outside_mesh, "LM0130"),
        (break_pool_pods_label_opt_out, "LM0130"),
        (break_picker_service, "LM0128"),
        (break_route_to_pool, "LM0126"),
        (break_mirror_service, "LM0126"),
        (break_listener_without_route, "LM0129"),
        (break_picker_secrets, "LM0131"),
    ],
)
def test_each_crafted_break_trips_its_rule(pooled_previews: dict[str, Any], crafted: Any, code: str) -> None:
    document = pooled_previews["prod"]
    crafted(document)
    assert code in codes(document)


def test_the_switch_replaces_nothing_stateful(previews: dict[str, Any], pooled_previews: dict[str, Any]) -> None:
    """What `review --base` shows for the switch: new objects, changed ones, no replacement and no deletion."""
    result = diff(states(previews["prod"]), states(pooled_previews["prod"]))
    kinds = {c.kind for c in result.changes}
    assert "replace" not in kinds and "delete" not in kinds, sorted(kinds)
    created = {c.state.type for c in result.changes if c.kind == "create"}
    assert {ROUTE, POOL, GATEWAY, "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"} <= created
    updated = {c.state.urn.rsplit("::", 1)[1] for c in result.changes if c.kind == "update"}
    # istiod gets the flag; the gateway pods their label (prod's VirtualService keeps its gateway: TLS).
    assert {"istio-istiod-1-31", "istio-istio-ingressgateway"} <= updated and f"inference-{MODEL}" not in updated


def test_the_pool_path_goes_through_the_same_gateway_guards(pooled_previews: dict[str, Any]) -> None:
    """JWT, the token check at the pods, and the rate limit select the chart gateway's pods, which are the pods the
    Gateway API Gateway's address names: a pooled model's requests pass every one of them."""
    document = pooled_previews["prod"]
    releases = {
        s["newState"]["inputs"]["chart"]: s["newState"]["inputs"] for s in steps_of_type(document, HELM_RELEASE)
    }
    gateway_pod_labels = releases["gateway"]["values"]["labels"]
    gateway = state_of(document, "Gateway", "llm-inference")["inputs"]
    assert gateway["metadata"]["namespace"] == releases["gateway"]["namespace"]
    assert gateway["spec"]["addresses"][0]["value"].startswith(f"{releases['gateway']['name']}.")
    for kind, name in (
        ("RequestAuthentication", "gateway-jwt"),
        ("AuthorizationPolicy", "gateway-require-jwt"),
    ):
        selector = state_of(document, kind, name)["inputs"]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= gateway_pod_labels.items(), (kind, name)
    limit = state_of(document, "EnvoyFilter", "gateway-rate-limit")["inputs"]["spec"]["workloadSelector"]["labels"]
    assert limit.items() <= gateway_pod_labels.items()
    callers = state_of(document, "AuthorizationPolicy", f"{MODEL}-callers")["inputs"]["spec"]["rules"]
    assert all(rule["from"][0]["source"].get("requestPrincipals") for rule in callers)
    (picker,) = [
        r["inputs"]["spec"]
        for r in (s["newState"] for s in document["steps"])
        if r.get("inputs", {}).get("kind") == "AuthorizationPolicy"
        and r["inputs"]["metadata"]["name"] == f"{MODEL}-stable-epp-gateway"
    ]
    assert picker["rules"] == [
        {
            "from": [{"source": {"principals": ["cluster.local/ns/istio-ingress/sa/istio-ingressgateway"]}}],
            "to": [
                {
                    "operation": {
                        "ports": ["9002"],
                        "methods": ["POST"],
                        "paths": ["/envoy.service.ext_proc.v3.ExternalProcessor/Process"],
                    }
                }
            ],
        }
    ]


def _numbers_as_floats(value: Any) -> Any:
    """As the engine carries inputs: every number a double."""
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def test_the_crds_reach_the_engine_as_published(pooled_previews: dict[str, Any]) -> None:
    """Each vendored object is declared with its metadata and spec unchanged: no key renamed on the way through the
    SDK's input types (their snake_case tables), no object left out."""
    from llm_mesh.plan.crds import inference_routing_manifests

    declared = {
        (state["inputs"]["kind"], state["inputs"]["metadata"]["name"]): state["inputs"]
        for state in (s["newState"] for s in pooled_previews["prod"]["steps"])
        if state["type"].split(":")[1] in ("apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1")
    }
    published = inference_routing_manifests()
    assert sorted(declared) == sorted((m["kind"], m["metadata"]["name"]) for m in published)
    for manifest in published:
        inputs = declared[(manifest["kind"], manifest["metadata"]["name"])]
        for part in ("metadata", "spec"):
            assert inputs[part] == _numbers_as_floats(manifest[part]), (manifest["metadata"]["name"], part)


def test_pools_do_not_wait_for_their_pickers_and_the_route_waits_for_both(pooled_previews: dict[str, Any]) -> None:
    """A picker is ready only once it has read its pool: a pool declared after its picker's readiness would never
    come (the first up would time out); the route reaches the gateway once both are there."""
    document = pooled_previews["prod"]
    pool = state_of(document, "InferencePool", f"{MODEL}-stable")
    picker = state_of(document, "Deployment", f"{MODEL}-stable-epp")
    assert picker["urn"] not in pool.get("dependencies", [])
    route = state_of(document, "HTTPRoute", MODEL)
    assert {pool["urn"], picker["urn"]} <= set(route["dependencies"])
    # Alive while it listens: its health service says NOT_SERVING until it has read its pool.
    (container,) = prop(picker, "spec.template.spec.containers")
    assert container["livenessProbe"]["tcpSocket"] == {"port": 9003.0}


def test_a_stopping_picker_serves_its_streams_as_long_as_the_longest_request(pooled_previews: dict[str, Any]) -> None:
    """Its ext_proc stream lasts the whole request; at SIGTERM it ends every stream within 30 s. So it sleeps first,
    as long as the route's timeout (600 s) and the endpoints' propagation, and its grace covers the sleep and exit."""
    picker = state_of(pooled_previews["prod"], "Deployment", f"{MODEL}-stable-epp")
    (container,) = prop(picker, "spec.template.spec.containers")
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = prop(picker, "spec.template.spec.terminationGracePeriodSeconds")
    assert sleep >= 600 and grace >= sleep + 30
    annotations = prop(picker, "spec.template.metadata.annotations")
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
