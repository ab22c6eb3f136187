"""The inference-pool path's own rules: pools whose pods are in the mesh, pickers without Secrets. Each on the real
plans of staging and prod with a model switched (passes), on small hand-built sets, and on the breaks they exist for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_mesh.engine.readers import EngineResource, read_document
from tests.policies.builders import deployment, k8s, namespace, urn, violations

POOL = {
    "selector": {"matchLabels": {"app": "x", "version": "stable"}},
    "targetPorts": [{"number": 8000}],
    "endpointPickerRef": {"kind": "Service", "name": "x-epp", "port": {"number": 9002}},
}
MESHED = namespace("inference", {"istio.io/rev": "1-31"})


def pool(namespace_: str = "inference", name: str = "x-stable", **changes: Any) -> EngineResource:
    return k8s("InferencePool", "inference.networking.k8s.io/v1", namespace_, name, {**POOL, **changes})


def route(*pools: tuple[str, str], mirror: tuple[str, str] | None = None) -> EngineResource:
    refs = [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "namespace": ns, "name": n} for ns, n in pools
    ]
    rule: dict[str, Any] = {"backendRefs": refs}
    if mirror:
        target = {
            "group": "inference.networking.k8s.io",
            "kind": "InferencePool",
            "namespace": mirror[0],
            "name": mirror[1],
        }
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": {"backendRef": target}}]
    return k8s("HTTPRoute", "gateway.networking.k8s.io/v1", "inference", "x", {"rules": [rule]})


def server(labels: dict[str, str], **annotations: str) -> EngineResource:
    workload = deployment("inference", {"name": "vllm", "image": "vllm"})
    template = workload.inputs["spec"]["template"]
    template["metadata"] = {"labels": labels, "annotations": annotations}
    return workload


def pooled_plan(preview_text: str) -> list[EngineResource]:
    return read_document(json.loads(preview_text))


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("rule", ["inference-pool-in-mesh", "endpoint-picker-no-secrets"])
def test_the_switched_plans_pass(pooled_preview_texts: dict[str, str], rule: str, stack: str) -> None:
    assert violations(rule, pooled_plan(pooled_preview_texts[stack])) == []


def test_a_meshed_pool_passes() -> None:
    resources = [MESHED, pool(), route(("inference", "x-stable")), server({"app": "x", "version": "stable"})]
    assert violations("inference-pool-in-mesh", resources) == []


def test_the_pod_label_wins_over_the_annotation_as_in_istios_injector() -> None:
    labels = {"app": "x", "version": "stable", "sidecar.istio.io/inject": "true"}
    resources = [
        MESHED,
        pool(),
        route(("inference", "x-stable")),
        server(labels, **{"sidecar.istio.io/inject": "false"}),
    ]
    assert violations("inference-pool-in-mesh", resources) == []


def test_a_reference_without_a_name_is_reported_not_a_crash() -> None:
    nameless = route(("inference", "x-stable"))
    del nameless.inputs["spec"]["rules"][0]["backendRefs"][0]["name"]
    nameless.inputs["spec"]["rules"][0]["filters"] = [{"type": "RequestMirror", "requestMirror": {}}]
    assert violations("inference-pool-in-mesh", [MESHED, pool(), nameless]) == [
        "routes to InferencePool inference/, which the stack does not declare: declare it, or route to a pool of the "
        "stack"
    ]


@pytest.mark.parametrize(
    ("resources", "says"),
    [
        (
            [namespace("inference", {"istio-injection": "disabled"}), pool(), route(("inference", "x-stable"))],
            "InferencePool inference/x-stable: namespace inference has no sidecar injection, so the gateway would "
            "reach the pool's pods without mTLS and past every AuthorizationPolicy; label the namespace "
            "istio.io/rev=<revision>",
        ),
        (
            [
                MESHED,
                pool(),
                route(("inference", "x-stable")),
                server({"app": "x", "version": "stable"}, **{"sidecar.istio.io/inject": "false"}),
            ],
            "InferencePool inference/x-stable selects pods that opt out of the sidecar (sidecar.istio.io/inject: "
            "false): the gateway would reach them without mTLS; serve the pool's pods with a sidecar",
        ),
        (
            [
                MESHED,
                pool(),
                route(("inference", "x-stable")),
                server({"app": "x", "version": "stable", "sidecar.istio.io/inject": "no"}),
            ],
            "InferencePool inference/x-stable selects pods that opt out of the sidecar (sidecar.istio.io/inject: "
            "false): the gateway would reach them without mTLS; serve the pool's pods with a sidecar",
        ),
        (
            [namespace("inference", {"istio-injection": "disabled"}), pool()],
            "InferencePool inference/x-stable: namespace inference has no sidecar injection, so the gateway would "
            "reach the pool's pods without mTLS and past every AuthorizationPolicy; label the namespace "
            "istio.io/rev=<revision>",
        ),
        (
            [MESHED, pool(), route(("inference", "x-stable"), mirror=("other", "x-mirror"))],
            "routes to InferencePool other/x-mirror, which the stack does not declare: declare it, or route to a pool "
            "of the stack",
        ),
        (
            [MESHED, pool("apps"), route(("apps", "x-stable"))],
            "InferencePool apps/x-stable is in namespace apps, which the stack does not declare: its pods' mesh "
            "membership cannot be checked; declare the namespace with istio.io/rev",
        ),
    ],
    ids=[
        "namespace-without-injection",
        "pods-opted-out",
        "pods-opted-out-by-label",
        "unrouted-pool-without-injection",
        "mirror-to-undeclared-pool",
        "undeclared-namespace",
    ],
)
def test_a_pool_outside_the_mesh_fails(resources: list[EngineResource], says: str) -> None:
    assert violations("inference-pool-in-mesh", resources) == [says]


def rbac(kind: str, name: str, namespace_: str = "", **body: Any) -> EngineResource:
    type_ = f"kubernetes:rbac.authorization.k8s.io/v1:{kind}"
    metadata = {"name": name, **({"namespace": namespace_} if namespace_ else {})}
    inputs = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata, **body}
    return EngineResource(urn=urn("prod", type_, name), type=type_, custom=True, inputs=inputs)


PICKER_LABELS = {"app": "x-epp"}
PICKER = [
    pool(),
    k8s("Service", "v1", "inference", "x-epp", {"selector": PICKER_LABELS}),
    k8s(
        "Deployment",
        "apps/v1",
        "inference",
        "x-epp",
        {
            "template": {
                "metadata": {"labels": PICKER_LABELS},
                "spec": {"serviceAccountName": "x-epp", "containers": []},
            }
        },
    ),
]
PICKER_SUBJECT = [{"kind": "ServiceAccount", "name": "x-epp", "namespace": "inference"}]
PODS_ONLY = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
SECRETS = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}]


def binding(binding_kind: str, role_kind: str, role: str, subjects: list[dict[str, Any]]) -> EngineResource:
    binding_namespace = "inference" if binding_kind == "RoleBinding" else ""
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}
    return rbac(binding_kind, "picker", binding_namespace, roleRef=ref, subjects=subjects)


def bound(
    role_kind: str, binding_kind: str, rules: list[dict[str, Any]], subjects: list[dict[str, Any]]
) -> list[EngineResource]:
    namespace_ = "inference" if role_kind == "Role" else ""
    role = rbac(role_kind, "picker", namespace_, rules=rules)
    return [role, binding(binding_kind, role_kind, "picker", subjects)]


def group(name: str) -> list[dict[str, Any]]:
    return [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name}]


def test_a_picker_on_pods_and_pools_passes_and_another_account_may_read_secrets() -> None:
    resources = [*PICKER, *bound("Role", "RoleBinding", PODS_ONLY, PICKER_SUBJECT)]
    assert violations("endpoint-picker-no-secrets", resources) == []
    others = [{"kind": "ServiceAccount", "name": "collector", "namespace": "gmp-system"}]
    assert (
        violations(
            "endpoint-picker-no-secrets", [*PICKER, *bound("ClusterRole", "ClusterRoleBinding", SECRETS, others)]
        )
        == []
    )
    writes_only = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]
    assert (
        violations("endpoint-picker-no-secrets", [*PICKER, *bound("Role", "RoleBinding", writes_only, PICKER_SUBJECT)])
        == []
    )
    # Kubernetes' own view role reads no Secret; another namespace's service accounts are not the picker.
    assert (
        violations(
            "endpoint-picker-no-secrets",
            [*PICKER, binding("ClusterRoleBinding", "ClusterRole", "view", PICKER_SUBJECT)],
        )
        == []
    )
    others = group("system:serviceaccounts:gmp-system")
    assert (
        violations(
            "endpoint-picker-no-secrets", [*PICKER, *bound("ClusterRole", "ClusterRoleBinding", SECRETS, others)]
        )
        == []
    )


def says(binding_kind: str, scope: str, role: str, through: str = "") -> str:
    return (
        f"{binding_kind} picker gives endpoint picker inference/x-epp {scope} ({role}{through}): a picker reads pods, "
        "its InferencePool and InferenceObjectives only; bind it to a Role granting those"
    )


CLUSTER_WIDE = "cluster-wide Secrets access"
IN_INFERENCE = "access to namespace inference's Secrets"


@pytest.mark.parametrize(
    ("role", "binding_kind", "rules", "scope"),
    [
        ("ClusterRole", "ClusterRoleBinding", SECRETS, CLUSTER_WIDE),
        ("ClusterRole", "RoleBinding", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], IN_INFERENCE),
        ("Role", "RoleBinding", SECRETS, IN_INFERENCE),
        ("Role", "RoleBinding", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}], IN_INFERENCE),
    ],
)
def test_a_picker_that_may_read_secrets_fails(
    role: str, binding_kind: str, rules: list[dict[str, Any]], scope: str
) -> None:
    resources = [*PICKER, *bound(role, binding_kind, rules, PICKER_SUBJECT)]
    assert violations("endpoint-picker-no-secrets", resources) == [says(binding_kind, scope, f"{role} picker")]


@pytest.mark.parametrize(
    ("subjects", "through"),
    [
        (group("system:serviceaccounts"), ", through group system:serviceaccounts"),
        (group("system:serviceaccounts:inference"), ", through group system:serviceaccounts:inference"),
        (group("system:authenticated"), ", through group system:authenticated"),
        (
            [
                {
                    "kind": "User",
                    "apiGroup": "rbac.authorization.k8s.io",
                    "name": "system:serviceaccount:inference:x-epp",
                }
            ],
            ", through user system:serviceaccount:inference:x-epp",
        ),
    ],
    ids=["all-service-accounts", "the-namespaces-accounts", "authenticated", "the-accounts-user-name"],
)
def test_a_picker_bound_by_a_group_or_user_name_fails(subjects: list[dict[str, Any]], through: str) -> None:
    resources = [*PICKER, *bound("ClusterRole", "ClusterRoleBinding", SECRETS, subjects)]
    assert violations("endpoint-picker-no-secrets", resources) == [
        says("ClusterRoleBinding", CLUSTER_WIDE, "ClusterRole picker", through)
    ]


@pytest.mark.parametrize("builtin", ["cluster-admin", "admin", "edit"])
def test_a_picker_bound_to_a_builtin_role_that_reads_secrets_fails(builtin: str) -> None:
    resources = [*PICKER, binding("RoleBinding", "ClusterRole", builtin, PICKER_SUBJECT)]
    assert violations("endpoint-picker-no-secrets", resources) == [
        says("RoleBinding", IN_INFERENCE, f"ClusterRole {builtin}")
    ]


def test_the_switched_plan_with_a_picker_given_secrets_fails(pooled_preview_texts: dict[str, str]) -> None:
    resources = pooled_plan(pooled_preview_texts["staging"])
    (stable,) = [
        r
        for r in resources
        if r.type.endswith("v1:RoleBinding") and r.inputs["metadata"]["name"] == "llama-31-8b-stable-epp"
    ]
    stable.inputs["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}
    assert violations("endpoint-picker-no-secrets", resources) == [
        "RoleBinding llama-31-8b-stable-epp gives endpoint picker inference/llama-31-8b-stable-epp access to "
        "namespace inference's Secrets (ClusterRole edit): a picker reads pods, its InferencePool and "
        "InferenceObjectives only; bind it to a Role granting those"
    ]


def test_the_switched_plan_with_its_namespace_out_of_the_mesh_fails(pooled_preview_texts: dict[str, str]) -> None:
    resources = pooled_plan(pooled_preview_texts["prod"])
    (inference,) = [
        r for r in resources if r.type == "kubernetes:core/v1:Namespace" and r.inputs["metadata"]["name"] == "inference"
    ]
    inference.inputs["metadata"]["labels"] = {"istio-injection": "disabled"}
    found = violations("inference-pool-in-mesh", resources)
    assert sorted(v.split(":")[0] for v in found) == [
        "InferencePool inference/llama-31-8b-canary",
        "InferencePool inference/llama-31-8b-stable",
    ]
