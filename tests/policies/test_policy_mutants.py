"""What `make mutate` found untested in the policy rules: each test kills mutants that a real bug could look like."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from llm_mesh_policies.common import (
    BUCKET_TYPE,
    HELM_RELEASE_TYPE,
    NAMESPACE_TYPE,
    Reading,
    environment,
    helm_chart,
    is_in_mesh_host,
    namespace_named,
    namespace_of,
    outside_mesh,
    pod_annotations,
    pod_spec,
    skip_for,
)
from pulumi_policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions

from llm_mesh.engine.readers import EngineResource
from tests.policies.builders import (
    EXPOSED,
    EXTERNAL,
    GATEWAY,
    GPU,
    GPU_CONTAINER,
    GPU_TOLERATION,
    MESH_WIDE,
    STRICT,
    anonymous,
    authorization,
    deployment,
    found,
    gateway_release,
    pa,
    request_authentication,
    urn,
    violations,
)

POD = "kubernetes:core/v1:Pod"
CRON_JOB = "kubernetes:batch/v1:CronJob"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
OUT = {"sidecar.istio.io/inject": "false", "llm-mesh/outside-mesh": "called by the API server without a certificate"}
POD_SPEC = {"containers": [{"name": "server", "image": "server:1"}]}


# --- environment: the config's, else the stack's when it is one, else prod (the strictest)


@pytest.mark.parametrize(
    ("stack_urn", "config", "expected"),
    [
        ("urn:pulumi:staging::llm-mesh::kubernetes:apps/v1:Deployment::x", {}, "staging"),
        ("urn:pulumi:dev::llm-mesh::kubernetes:apps/v1:Deployment::x", {"environment": "prod"}, "prod"),
        ("urn:pulumi:dev::llm-mesh::kubernetes:apps/v1:Deployment::x", {"environment": "qa"}, "dev"),
        # A stack named otherwise (a developer's own) is held to prod's rules, not to none.
        ("urn:pulumi:feature-x::llm-mesh::kubernetes:apps/v1:Deployment::x", {}, "prod"),
        # Only a URN names a stack: a bare "dev" is not one.
        ("dev", {}, "prod"),
        ("", {}, "prod"),
    ],
)
def test_environment(stack_urn: str, config: dict[str, Any], expected: str) -> None:
    assert environment(stack_urn, config) == expected


# --- reading Kubernetes objects: a Pod's own spec, a CronJob's job template, the default namespace


def test_namespace_defaults_to_default() -> None:
    assert namespace_of({"metadata": {"name": "x"}}) == "default"
    assert namespace_of({}) == "default"
    assert namespace_of({"metadata": {"namespace": "inference"}}) == "inference"


def cron_job(annotations: dict[str, str], pod: dict[str, Any]) -> dict[str, Any]:
    template = {"metadata": {"annotations": annotations}, "spec": pod}
    return {"metadata": {"name": "sweep"}, "spec": {"jobTemplate": {"spec": {"template": template}}}}


def test_pod_annotations_and_spec_of_each_kind() -> None:
    pod = {"metadata": {"annotations": OUT}, "spec": POD_SPEC}
    assert pod_annotations(POD, pod) == OUT
    assert pod_spec(POD, pod) == POD_SPEC
    assert pod_annotations(CRON_JOB, cron_job(OUT, POD_SPEC)) == OUT
    assert pod_spec(CRON_JOB, cron_job(OUT, POD_SPEC)) == POD_SPEC
    deployment_props = {"spec": {"template": {"metadata": {"annotations": OUT}, "spec": POD_SPEC}}}
    assert pod_annotations(DEPLOYMENT, deployment_props) == OUT
    assert pod_spec(DEPLOYMENT, deployment_props) == POD_SPEC
    # A Deployment's own metadata is not its pods'; missing parts read as empty.
    assert pod_annotations(DEPLOYMENT, {"metadata": {"annotations": OUT}}) == {}
    assert pod_annotations(POD, {"metadata": {}}) == {}
    assert pod_annotations(CRON_JOB, {"spec": {}}) == {}
    assert pod_spec(CRON_JOB, {"spec": {}}) == {}


def test_a_pod_or_cron_job_outside_the_mesh_with_its_reason() -> None:
    assert outside_mesh(POD, {"metadata": {"annotations": OUT}})
    assert outside_mesh(CRON_JOB, cron_job(OUT, POD_SPEC))
    assert not outside_mesh(POD, {"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}})
    assert not outside_mesh(CRON_JOB, cron_job({"llm-mesh/outside-mesh": "no opt-out"}, POD_SPEC))


def test_gpu_rule_reads_a_cron_jobs_pods() -> None:
    """A CronJob's GPU container without a limit is caught like a Deployment's."""
    container = {**GPU_CONTAINER, "resources": {"requests": {GPU: "1"}}}
    props = cron_job({}, {"containers": [container], "tolerations": GPU_TOLERATION})
    job = EngineResource(urn=urn("prod", CRON_JOB, "sweep"), type=CRON_JOB, custom=True, inputs=props)
    assert violations("gpu-workload-limits", [job]) == [
        f"container server requests {GPU} without a limit; GPUs are requested through limits"
    ]


def test_gpu_request_that_differs_from_its_limit_is_shown_as_written() -> None:
    container = {**GPU_CONTAINER, "resources": {"requests": {GPU: 0.5}, "limits": {GPU: 1.0}}}
    assert violations("gpu-workload-limits", [deployment("inference", container, tolerations=GPU_TOLERATION)]) == [
        f"container server: {GPU} request 0.5 differs from its limit 1"
    ]


@pytest.mark.parametrize(
    ("host", "namespaces", "inside"),
    [
        ("llama", set(), True),
        ("llama.inference.svc", set(), True),
        ("llama.inference.svc.cluster.local", set(), True),
        ("llama.inference", {"inference"}, True),
        ("llama.inference", set(), False),
        ("api.openai.com", {"inference"}, False),
        ("svc.example.com", set(), False),
    ],
)
def test_in_mesh_hosts(host: str, namespaces: set[str], inside: bool) -> None:
    assert is_in_mesh_host(host, namespaces) is inside


@pytest.mark.parametrize(
    ("type_", "chart", "expected"),
    [
        (HELM_RELEASE_TYPE, "gateway", "gateway"),
        (HELM_RELEASE_TYPE, "istio/gateway", "gateway"),
        (HELM_RELEASE_TYPE, "oci://registry.example.com/charts/istio/gateway", "gateway"),
        (HELM_RELEASE_TYPE, "", None),
        (HELM_RELEASE_TYPE, "charts/", None),
        (BUCKET_TYPE, "gateway", None),
    ],
)
def test_helm_chart_name(type_: str, chart: str, expected: str | None) -> None:
    assert helm_chart(type_, {"chart": chart}) == expected


@pytest.mark.parametrize(
    ("type_", "metadata", "expected"),
    [
        (NAMESPACE_TYPE, {"name": "inference"}, "inference"),
        (NAMESPACE_TYPE, {"namespace": "other"}, None),
        (DEPLOYMENT, {"name": "server", "namespace": "inference"}, "inference"),
        (DEPLOYMENT, {"name": "server"}, None),
        (BUCKET_TYPE, {"namespace": "inference"}, None),
    ],
)
def test_namespace_named(type_: str, metadata: dict[str, str], expected: str | None) -> None:
    assert namespace_named(type_, {"metadata": metadata}) == expected


# --- stack rules under the Pulumi CLI: what they leave out goes to the analyzer's log, named


def test_skipped_resources_are_logged_outside_the_offline_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: logged.append(message))

    def report_violation(message: str, urn: str | None = None) -> None:
        raise AssertionError(f"a skip is no violation: {message}")

    skip = skip_for("istio-mesh-wide-strict-mtls", report_violation)
    skip("urn:pulumi:prod::llm-mesh::t::n", "host unknown")
    skip("", "partial document")
    assert logged == [
        "policy istio-mesh-wide-strict-mtls not evaluated on urn:pulumi:prod::llm-mesh::t::n: host unknown",
        "policy istio-mesh-wide-strict-mtls not evaluated on the stack: partial document",
    ]


def resource(name: str) -> PolicyResource:
    return PolicyResource(
        "kubernetes:core/v1:Namespace", {}, f"urn:pulumi:prod::llm-mesh::t::{name}", name,
        PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), []), None, None, [], {},
    )  # fmt: skip


def test_unknown_resources_are_named_in_a_list() -> None:
    reading: Reading[str] = Reading(unknown=[(resource("a"), "why"), (resource("b"), "why")])
    assert reading.names() == "a, b"


# --- istio-peer-authentication-strict: what a workload policy with no mode inherits


def workload_pa(namespace: str, spec: dict[str, Any] | None = None) -> Any:
    return pa(namespace, {"selector": {"matchLabels": {"app": "x"}}, **(spec or {})}, "server")


def test_workload_policy_without_mode_inherits_its_namespaces_or_the_meshs() -> None:
    rule = "istio-peer-authentication-strict"
    assert violations(rule, [pa("inference", STRICT), workload_pa("inference")]) == []
    # No namespace-wide policy in its namespace: the mesh's.
    assert violations(rule, [MESH_WIDE, workload_pa("inference")]) == []
    # Another namespace's STRICT is not inherited.
    assert violations(rule, [pa("other", STRICT), workload_pa("inference")]) == [
        "mtls.mode is UNSET and inherits no STRICT policy; set mode: STRICT"
    ]


# --- prod-inference-not-anonymous: a DENY that applies only under a condition requires nothing


def test_deny_under_a_condition_does_not_require_a_jwt() -> None:
    conditional = {
        "action": "DENY",
        "rules": [
            {
                "from": [{"source": {"notRequestPrincipals": ["*"]}}],
                "when": [{"key": "request.headers[x-debug]", "values": ["1"]}],
            }
        ],
    }
    protection = [gateway_release(), request_authentication(), authorization(conditional)]
    assert found("prod-inference-not-anonymous", [*EXPOSED, *protection]) == ([(anonymous(EXTERNAL), GATEWAY.urn)], [])
