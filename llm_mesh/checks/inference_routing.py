"""The references of the inference-pool path, followed as Istio's gateway and the endpoint picker follow them. Codes:
LM0126 an HTTPRoute names a Gateway, listener or InferencePool the plan does not declare
LM0127 an InferencePool selects no pods the stack deploys, or none that serves its target port
LM0128 an InferencePool's endpoint picker is no Service of the plan on that port, or its Service selects no pods
LM0129 a Gateway API listener no HTTPRoute attaches to (its host is served by nothing)
LM0130 an InferencePool's pods are outside the mesh (the gateway would reach them without mTLS or authorization)
LM0131 an endpoint picker's service account may read Secrets (a picker needs pods and its pool, nothing more)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_mesh_policies.common import injection_enabled

from llm_mesh.checks.findings import Finding
from llm_mesh.checks.kube_objects import KubeObject
from llm_mesh.mesh.gateway_api import GATEWAY_API, INFERENCE, INFERENCE_GROUP

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
GATEWAY_GROUP = GATEWAY_API.split("/")[0]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class _Plan:
    """The plan's objects indexed by what the references name."""

    def __init__(self, objects: list[KubeObject]):
        self.objects = objects
        self.gateways = {
            (o.namespace, o.name): o for o in objects if o.api_version == GATEWAY_API and o.kind == "Gateway"
        }
        self.routes = [o for o in objects if o.api_version == GATEWAY_API and o.kind == "HTTPRoute"]
        self.pools = {
            (o.namespace, o.name): o for o in objects if o.api_version == INFERENCE and o.kind == "InferencePool"
        }
        self.services = {(o.namespace, o.name): o for o in objects if o.kind == "Service" and o.api_version == "v1"}
        self.workloads = [o for o in objects if o.kind in WORKLOAD_KINDS]
        self.namespaces = {
            o.name: dict(o.manifest.get("metadata", {}).get("labels") or {}) for o in objects if o.kind == "Namespace"
        }

    def pods(self, namespace: str, selector: dict[str, str]) -> list[tuple[KubeObject, dict[str, Any]]]:
        """Workloads whose pod template the selector matches, with that template."""
        found = []
        for workload in self.workloads:
            template = (workload.manifest.get("spec") or {}).get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            if workload.namespace == namespace and _selects(selector, labels):
                found.append((workload, template))
        return found


def inference_routing_findings(objects: list[KubeObject]) -> list[Finding]:
    plan = _Plan(objects)
    if not plan.routes and not plan.pools and not plan.gateways:
        return []
    findings = list(_routes(plan))
    findings += _listeners(plan)
    for pool in plan.pools.values():
        findings += _pool_pods(plan, pool)
        findings += _picker(plan, pool)
    findings += _picker_secrets(plan)
    findings += _rate_limit_per_listener(plan)
    return findings


LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"


def _rate_limit_per_listener(plan: _Plan) -> Iterator[Finding]:
    limited = any(o.kind == "EnvoyFilter" and LOCAL_RATE_LIMIT in str(o.manifest.get("spec")) for o in plan.objects)
    for gateway in plan.gateways.values():
        listeners = len((gateway.manifest.get("spec") or {}).get("listeners") or [])
        if limited and listeners and (gateway.manifest.get("spec") or {}).get("addresses"):
            yield Finding(
                "LM0133", "warning", gateway.key,
                f"its {listeners} listener(s) run on the rate-limited gateway pods: Envoy keeps a token bucket per "
                f"filter chain, so a pod admits up to {listeners + 1} × requestsPerSecondPerPod across the models",
                "size gateway.rateLimit for the sum, or keep the pooled models few",
            )  # fmt: skip


def _routes(plan: _Plan) -> Iterator[Finding]:
    for route in plan.routes:
        spec = route.manifest.get("spec") or {}
        for parent in spec.get("parentRefs") or []:
            if (parent.get("group", GATEWAY_GROUP), parent.get("kind", "Gateway")) != (GATEWAY_GROUP, "Gateway"):
                continue
            key = (parent.get("namespace") or route.namespace, parent["name"])
            gateway = plan.gateways.get(key)
            if gateway is None:
                yield Finding(
                    "LM0126", "error", route.key, f"parent Gateway {key[0]}/{key[1]} is not in the plan: the route serves nothing",
                    "name the Gateway the stack declares",
                )  # fmt: skip
                continue
            section = parent.get("sectionName")
            listeners = [lst["name"] for lst in (gateway.manifest.get("spec") or {}).get("listeners") or []]
            if section is not None and section not in listeners:
                yield Finding(
                    "LM0126", "error", route.key, f"listener {section!r} is not on Gateway {key[0]}/{key[1]} ({listeners})",
                    "name one of the Gateway's listeners in sectionName",
                )  # fmt: skip
        for rule in spec.get("rules") or []:
            refs = list(rule.get("backendRefs") or [])
            refs += [f["requestMirror"]["backendRef"] for f in rule.get("filters") or [] if f.get("requestMirror")]
            # A weight-0 backend takes no request and Istio builds no picker config for it.
            pools = [
                r for r in rule.get("backendRefs") or [] if r.get("kind") == "InferencePool" and r.get("weight", 1) != 0
            ]
            if len(pools) > 1:
                yield Finding(
                    "LM0132", "warning", route.key,
                    f"splits requests over {len(pools)} InferencePools in one rule ({', '.join(r['name'] for r in pools)}): "
                    "an Istio without the fix of istio/istio#61594 (release-1.31 backport #61842) asks only the last "
                    "pool's picker, for all of them",
                    "run an Istio that has the fix (its release notes name #61842), or keep the canary at weight 0 on "
                    "this path",
                )  # fmt: skip
            for ref in refs:
                if (ref.get("group") or "", ref.get("kind") or "Service") == ("", "Service"):
                    yield from _service_ref(plan, route, ref)
                    continue
                if ref.get("kind") != "InferencePool" or ref.get("group") != INFERENCE_GROUP:
                    continue
                key = (ref.get("namespace") or route.namespace, ref["name"])
                if key not in plan.pools:
                    yield Finding(
                        "LM0126", "error", route.key, f"InferencePool {key[0]}/{key[1]} is not in the plan: its requests get 500",
                        "declare the pool, or route to one the stack declares",
                    )  # fmt: skip


def _service_ref(plan: _Plan, route: KubeObject, ref: dict[str, Any]) -> Iterator[Finding]:
    key = (ref.get("namespace") or route.namespace, ref["name"])
    service = plan.services.get(key)
    ports = [p.get("port") for p in ((service.manifest.get("spec") or {}).get("ports") or [])] if service else []
    if service is None or ref.get("port") not in ports:
        what = "is not in the plan" if service is None else f"has no port {ref.get('port')} ({ports})"
        yield Finding(
            "LM0126", "error", route.key, f"backend Service {key[0]}/{key[1]} {what}: its requests (or copies) are lost",
            "name a Service and port the stack declares",
        )  # fmt: skip
    elif not plan.pods(service.namespace, dict((service.manifest.get("spec") or {}).get("selector") or {})):
        yield Finding(
            "LM0126", "error", route.key, f"backend Service {key[0]}/{key[1]} selects no pods the stack deploys",
            "select the labels of the pods that serve it",
        )  # fmt: skip


def _listeners(plan: _Plan) -> Iterator[Finding]:
    attached: set[tuple[str, str, str | None]] = set()
    for route in plan.routes:
        for parent in (route.manifest.get("spec") or {}).get("parentRefs") or []:
            attached.add((parent.get("namespace") or route.namespace, parent["name"], parent.get("sectionName")))
    for (namespace, name), gateway in plan.gateways.items():
        for listener in (gateway.manifest.get("spec") or {}).get("listeners") or []:
            if (namespace, name, listener["name"]) not in attached and (namespace, name, None) not in attached:
                yield Finding(
                    "LM0129", "error", gateway.key,
                    f"listener {listener['name']!r} ({listener.get('hostname', '*')}) has no HTTPRoute: its host answers 404",
                    "attach the model's HTTPRoute to it, or remove the listener",
                )  # fmt: skip


def _pool_pods(plan: _Plan, pool: KubeObject) -> Iterator[Finding]:
    spec = pool.manifest.get("spec") or {}
    selector = dict((spec.get("selector") or {}).get("matchLabels") or {})
    ports = [int(p["number"]) for p in spec.get("targetPorts") or []]
    pods = plan.pods(pool.namespace, selector)
    if not pods:
        yield Finding(
            "LM0127", "error", pool.key, f"selects no pods the stack deploys ({selector}): the picker has nothing to choose",
            "select the labels of the model's server pods",
        )  # fmt: skip
        return
    for workload, template in pods:
        served = {
            int(p["containerPort"])
            for c in (template.get("spec") or {}).get("containers") or []
            for p in c.get("ports") or []
            if "containerPort" in p
        }
        missing = [p for p in ports if p not in served]
        if missing:
            yield Finding(
                "LM0127", "error", pool.key, f"targetPorts {missing}: no container of {workload.key} listens there",
                f"use the server's port ({sorted(served)})",
            )  # fmt: skip
        # As Istio's injector reads it: the pod label before the annotation; any value but a YAML true opts out.
        meta = template.get("metadata") or {}
        inject = (meta.get("labels") or {}).get("sidecar.istio.io/inject")
        if inject is None:
            inject = (meta.get("annotations") or {}).get("sidecar.istio.io/inject")
        opted_out = inject is not None and str(inject).lower() not in ("y", "yes", "true", "on")
        if opted_out or not injection_enabled(plan.namespaces.get(pool.namespace, {})):
            yield Finding(
                "LM0130", "error", pool.key,
                f"its pods ({workload.key}) run without a sidecar: the gateway would reach them without mTLS, past every "
                "authorization policy",
                "serve the model in a namespace with sidecar injection (istio.io/rev)",
            )  # fmt: skip


def _picker(plan: _Plan, pool: KubeObject) -> Iterator[Finding]:
    ref = (pool.manifest.get("spec") or {}).get("endpointPickerRef") or {}
    if ref.get("kind", "Service") != "Service" or ref.get("group", "") != "":
        return
    service = plan.services.get((pool.namespace, ref.get("name", "")))
    port = (ref.get("port") or {}).get("number")
    if service is None:
        yield Finding(
            "LM0128", "error", pool.key, f"endpoint picker Service {ref.get('name')!r} is not in the plan: with FailClose "
            "every request to the pool fails", "declare the picker's Service in the pool's namespace",
        )  # fmt: skip
        return
    service_spec = service.manifest.get("spec") or {}
    if port not in [p.get("port") for p in service_spec.get("ports") or []]:
        yield Finding(
            "LM0128", "error", pool.key, f"the picker's Service {service.name!r} has no port {port}",
            "use the port the picker's Service publishes (its ext_proc port, 9002)",
        )  # fmt: skip
    if not plan.pods(service.namespace, dict(service_spec.get("selector") or {})):
        yield Finding(
            "LM0128", "error", pool.key, f"the picker's Service {service.name!r} selects no pods the stack deploys",
            "select the picker Deployment's pod labels",
        )  # fmt: skip


def _picker_accounts(plan: _Plan) -> set[tuple[str, str]]:
    accounts = set()
    for pool in plan.pools.values():
        name = ((pool.manifest.get("spec") or {}).get("endpointPickerRef") or {}).get("name")
        service = plan.services.get((pool.namespace, name or ""))
        if service is None:
            continue
        for workload, template in plan.pods(
            service.namespace, dict((service.manifest.get("spec") or {}).get("selector") or {})
        ):
            account = (template.get("spec") or {}).get("serviceAccountName") or "default"
            accounts.add((workload.namespace, account))
    return accounts


def _reads_secrets(role: KubeObject) -> bool:
    for rule in role.manifest.get("rules") or []:
        groups, resources, verbs = rule.get("apiGroups") or [], rule.get("resources") or [], rule.get("verbs") or []
        if ("" in groups or "*" in groups) and ("secrets" in resources or "*" in resources):
            if {"get", "list", "watch", "*"} & set(verbs):
                return True
    return False


def _picker_secrets(plan: _Plan) -> Iterator[Finding]:
    accounts = _picker_accounts(plan)
    roles = {
        (o.kind, o.namespace if o.kind == "Role" else "", o.name): o
        for o in plan.objects
        if o.kind in ("Role", "ClusterRole") and o.api_version == "rbac.authorization.k8s.io/v1"
    }
    for binding in plan.objects:
        if binding.kind not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = binding.manifest.get("roleRef") or {}
        role = roles.get(
            (ref.get("kind", ""), binding.namespace if ref.get("kind") == "Role" else "", ref.get("name", ""))
        )
        if role is None or not _reads_secrets(role):
            continue
        for subject in binding.manifest.get("subjects") or []:
            who = (subject.get("namespace") or binding.namespace, subject.get("name"))
            if subject.get("kind") == "ServiceAccount" and who in accounts:
                scope = (
                    "every namespace's" if binding.kind == "ClusterRoleBinding" else f"namespace {binding.namespace}'s"
                )
                yield Finding(
                    "LM0131", "error", binding.key,
                    f"gives endpoint picker {who[0]}/{who[1]} {scope} Secrets ({role.key}): a picker reads pods and its pool",
                    "bind the picker to a Role on pods and inferencepools only",
                )  # fmt: skip
