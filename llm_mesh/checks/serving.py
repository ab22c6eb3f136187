"""Would the plan serve? Reads the declared objects as GKE, Istio and vLLM would run them.

Schema-valid is not working: a server whose KV cache does not fit its GPU crash-loops, a track without
weights serves nothing, an autoscaler without a metrics adapter never scales. Codes:
  LM0111 the server's context does not fit its GPU           LM0115 a GPU server is killed before its longest request
  LM0112 a track fetches no weights                          LM0116 a GPU pool no workload can be scheduled on
  LM0113 inference exposed to the internet anonymously       LM0117 `--model` given to `vllm serve` (deprecated)
  LM0114 an autoscaler reads metrics nobody serves           LM0118 servers that may start before their weights exist
  LM0119 GPU workloads at their minimum need more GPUs than their pools can ever hold
  LM0120 a pod its namespace's Pod Security level would refuse   LM0121 a namespace that enforces no level
  (both in llm_mesh.checks.pod_security)
  LM0113, LM0122-LM0124 who reaches the public gateway, on which ports, how fast (llm_mesh.checks.gateway_exposure)
  LM0125 an image pulled straight from Docker Hub (llm_mesh.checks.image_sources)
and, as the mesh analysis's LM0103, spans sent to a host no Service serves (llm_mesh.checks.telemetry).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from llm_mesh.checks.findings import Finding
from llm_mesh.checks.gateway_exposure import gateway_exposure_findings
from llm_mesh.checks.image_sources import image_source_findings
from llm_mesh.checks.pod_security import pod_security_findings
from llm_mesh.checks.telemetry import telemetry_findings
from llm_mesh.engine.readers import EngineResource
from llm_mesh.mesh.base import duration_seconds
from llm_mesh.plan.config import WEIGHT_SUFFIXES
from llm_mesh.plan.gpu_fit import Fit, Gpu, KvCacheDtype, ModelShape
from llm_mesh.plan.topology import POOL_LABEL, SAFE_TO_EVICT, SHAPE_ANNOTATION

GPU = "nvidia.com/gpu"
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
NODE_POOL = "gcp:container/nodePool:NodePool"
JOB = "kubernetes:batch/v1:Job"
WORKLOADS = {"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"}
DEFAULT_GRACE_SECONDS = 30  # Kubernetes' default terminationGracePeriodSeconds
# GKE's cluster autoscaler gives a pod it evicts for a scale-down at most this long (not configurable on GKE).
AUTOSCALER_GRACE_SECONDS = 600
METRICS_API = {
    "External": "external.metrics.k8s.io",
    "Object": "custom.metrics.k8s.io",
    "Pods": "custom.metrics.k8s.io",
}


@dataclass(frozen=True)
class Workload:
    resource: EngineResource

    @property
    def manifest(self) -> Mapping[str, Any]:
        return self.resource.inputs

    @property
    def key(self) -> str:
        meta = self.manifest.get("metadata") or {}
        return f"{self.manifest.get('kind')}/{meta.get('namespace', '')}/{meta.get('name', '')}"

    @property
    def namespace(self) -> str:
        return str((self.manifest.get("metadata") or {}).get("namespace", "default"))

    @property
    def template(self) -> Mapping[str, Any]:
        return (self.manifest.get("spec") or {}).get("template") or {}

    @property
    def pod(self) -> Mapping[str, Any]:
        return self.template.get("spec") or {}

    @property
    def labels(self) -> Mapping[str, str]:
        return (self.template.get("metadata") or {}).get("labels") or {}

    @property
    def annotations(self) -> Mapping[str, str]:
        return (self.template.get("metadata") or {}).get("annotations") or {}

    @property
    def replicas(self) -> float | None:
        value = (self.manifest.get("spec") or {}).get("replicas")
        return None if value is None else float(value)

    def containers(self) -> list[Mapping[str, Any]]:
        return list(self.pod.get("containers") or [])

    def init_containers(self) -> list[Mapping[str, Any]]:
        return list(self.pod.get("initContainers") or [])

    @property
    def gpus(self) -> float:
        return sum(_number(((c.get("resources") or {}).get("limits") or {}).get(GPU)) for c in self.containers())

    def pools(self) -> set[str] | None:
        """Pools the scheduler may place the pods on; None when nothing restricts them to some."""
        selected = (self.pod.get("nodeSelector") or {}).get(POOL_LABEL)
        allowed: set[str] | None = {selected} if selected else None
        required = ((self.pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ) or {}
        for term in required.get("nodeSelectorTerms") or []:
            for expression in term.get("matchExpressions") or []:
                if expression.get("key") == POOL_LABEL and expression.get("operator") == "In":
                    values = set(expression.get("values") or [])
                    allowed = values if allowed is None else allowed & values
        return allowed


def serving_findings(resources: list[EngineResource], environment: str) -> list[Finding]:
    workloads = [Workload(r) for r in resources if r.type in WORKLOADS]
    findings: list[Finding] = []
    for workload in workloads:
        findings += _gpu_fit(workload)
        findings += _weights(workload)
        findings += _deprecated_model_flag(workload)
    findings += _weights_before_servers(workloads, resources)
    findings += _drain(workloads, resources)
    findings += _unused_pools(workloads, resources)
    findings += _gpu_capacity(workloads, resources)
    findings += _metrics_served(resources)
    findings += gateway_exposure_findings(resources, environment)
    findings += image_source_findings(resources, environment)
    findings += telemetry_findings(resources)
    findings += pod_security_findings(resources)
    return findings


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _gpu_fit(workload: Workload) -> list[Finding]:
    raw = workload.annotations.get(SHAPE_ANNOTATION)
    accelerator = (workload.pod.get("nodeSelector") or {}).get(ACCELERATOR_LABEL)
    if not raw or not accelerator or workload.gpus == 0:
        return []
    try:
        shape = ModelShape(**json.loads(raw))
        gpu = Gpu.of(str(accelerator))
    except (ValueError, TypeError, KeyError):
        return [
            Finding("LM0111", "error", workload.key, f"{SHAPE_ANNOTATION} is not a model shape", "re-run the program")
        ]
    server = next(
        (c for c in workload.containers() if _number(((c.get("resources") or {}).get("limits") or {}).get(GPU))), {}
    )
    args = [str(a) for a in server.get("args") or []]
    context = int(_flag(args, "--max-model-len") or shape.native_context)
    utilization = _flag(args, "--gpu-memory-utilization")
    if utilization is not None:
        gpu = Gpu(gpu.accelerator, gpu.memory_bytes, float(utilization))
    kv_dtype: KvCacheDtype = "fp8" if _flag(args, "--kv-cache-dtype") == "fp8" else "auto"
    fit = Fit(shape, gpu, int(_flag(args, "--tensor-parallel-size") or 1), context, kv_dtype)
    problem = fit.problem()
    if problem is None:
        return []
    return [
        Finding(
            "LM0111", "error", workload.key, f"vLLM would refuse to start: {problem}",
            "lower contextLength, or give the model more GPU memory (pool, gpusPerReplica, dtype)",
        )
    ]  # fmt: skip


def _fetched_files(workload: Workload) -> list[str] | None:
    for container in workload.init_containers():
        if container.get("name") == "fetch-model":
            command = [str(c) for c in container.get("command") or []]
            try:
                return [str(f["path"]) for f in json.loads(command[5])]
            except (IndexError, ValueError, KeyError, TypeError):
                return []
    return None


def _weights(workload: Workload) -> list[Finding]:
    files = _fetched_files(workload)
    if files is None or any(f.endswith(WEIGHT_SUFFIXES) for f in files):
        return []
    return [
        Finding(
            "LM0112", "error", workload.key, f"fetches {files or 'nothing'} and no weights: the server has no model to load",
            "list the version's weight files (llm-mesh models push writes them)",
        )
    ]  # fmt: skip


def _deprecated_model_flag(workload: Workload) -> list[Finding]:
    return [
        Finding(
            "LM0117", "warning", workload.key, f"container {c.get('name')!r} passes --model to `vllm serve`, which takes the model positionally",
            "give the model path as the first argument",
        )
        for c in workload.containers()
        if "vllm" in str(c.get("image", "")) and _flag([str(a) for a in c.get("args") or []], "--model") is not None
    ]  # fmt: skip


def _weights_before_servers(workloads: list[Workload], resources: list[EngineResource]) -> list[Finding]:
    jobs = {r.urn for r in resources if r.type == JOB}
    findings = []
    for workload in workloads:
        if _fetched_files(workload) is None or workload.replicas == 0:
            continue
        if not jobs & set(workload.resource.dependencies):
            findings.append(
                Finding(
                    "LM0118", "warning", workload.key, "starts its servers with nothing in the plan waiting for the weights to be in the store",
                    "make the Deployment depend on a weights gate Job",
                )
            )  # fmt: skip
    return findings


def _route_timeouts(resources: list[EngineResource]) -> Iterator[tuple[str, float]]:
    """(destination host, route timeout) for every HTTP route of every VirtualService."""
    for r in resources:
        if not (r.type.startswith("kubernetes:networking.istio.io/") and r.type.endswith(":VirtualService")):
            continue
        namespace = str((r.inputs.get("metadata") or {}).get("namespace", "default"))
        for route in (r.inputs.get("spec") or {}).get("http") or []:
            timeout = route.get("timeout")
            seconds = duration_seconds(timeout) if timeout else 0.0
            for destination in route.get("route") or []:
                host = str((destination.get("destination") or {}).get("host", ""))
                yield (host if "." in host else f"{host}.{namespace}.svc.cluster.local"), seconds


def _drain(workloads: list[Workload], resources: list[EngineResource]) -> list[Finding]:
    services = {}
    for r in resources:
        if r.type == "kubernetes:core/v1:Service":
            meta = r.inputs.get("metadata") or {}
            host = f"{meta.get('name')}.{meta.get('namespace', 'default')}.svc.cluster.local"
            services[host] = (str(meta.get("namespace", "default")), (r.inputs.get("spec") or {}).get("selector") or {})
    longest: dict[str, float] = {}
    for host, seconds in _route_timeouts(resources):
        if host in services:
            longest[host] = max(longest.get(host, 0.0), seconds)
    findings = []
    for workload in workloads:
        if workload.gpus == 0:
            continue
        timeouts = [
            t
            for host, t in longest.items()
            if services[host][0] == workload.namespace and services[host][1].items() <= workload.labels.items()
        ]
        if not timeouts:
            continue
        grace = _number(workload.pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
        has_pre_stop = any((c.get("lifecycle") or {}).get("preStop") for c in workload.containers())
        if grace <= max(timeouts) or not has_pre_stop:
            why = "no preStop hook waits for requests in flight" if has_pre_stop is False else ""
            if grace <= max(timeouts):
                why = f"terminationGracePeriodSeconds {grace:.0f} is not above the longest route timeout {max(timeouts):.0f}s"
            findings.append(
                Finding(
                    "LM0115", "error", workload.key, f"a scale-down or node upgrade cuts long generations: {why}",
                    "drain for longer than the route timeout, with a preStop hook that waits for requests in flight",
                )
            )  # fmt: skip
        elif grace > AUTOSCALER_GRACE_SECONDS and workload.annotations.get(SAFE_TO_EVICT) != "false":
            findings.append(
                Finding(
                    "LM0115", "error", workload.key,
                    f"the cluster autoscaler evicts a pod to remove its node with at most {AUTOSCALER_GRACE_SECONDS}s "
                    f"of grace, less than its {grace:.0f}s drain: a node scale-down cuts long generations",
                    f"annotate the pods {SAFE_TO_EVICT}: \"false\" (nodes go once empty; fewer replicas come from "
                    "the autoscaler's scale-down, with the whole grace)",
                )
            )  # fmt: skip
    return findings


def _unused_pools(workloads: list[Workload], resources: list[EngineResource]) -> list[Finding]:
    gpu_workloads = [w for w in workloads if w.gpus > 0]
    gpu_pools = [
        r for r in resources if r.type == NODE_POOL and (r.inputs.get("nodeConfig") or {}).get("guestAccelerators")
    ]
    if gpu_pools and not gpu_workloads:
        # No model at all: say so, rather than blame each pool (maybe one the user never wrote: the default pool). A
        # stack config without a model is refused before the program runs; this is for documents read from a file
        # (`pulumi preview --json` of a program or version that let one through).
        return [
            Finding(
                "LM0116", "error", "Stack", "the stack serves no model, so no GPU pool has anything to run",
                "add a model under llm-mesh:models (the README's \"Making your own stack\" shows one)",
            )
        ]  # fmt: skip
    findings = []
    for r in resources:
        if r.type != NODE_POOL:
            continue
        config = r.inputs.get("nodeConfig") or {}
        if not config.get("guestAccelerators"):
            continue
        pool = (config.get("labels") or {}).get(POOL_LABEL)
        if any((allowed := w.pools()) is None or pool in allowed for w in gpu_workloads):
            continue
        findings.append(
            Finding(
                "LM0116", "error", f"NodePool/{r.name}", f"GPU pool {pool!r}: no GPU workload of the plan may be scheduled on it",
                "name the pool in a model's gpuPool or overflowPools, or remove it",
            )
        )  # fmt: skip
    return findings


def _pool_gpus(resources: list[EngineResource]) -> dict[str, float | None]:
    """Each GPU pool's most GPUs (its most nodes × GPUs per node); None when the plan does not say its most nodes
    in total (a per-zone maximum without the zones)."""
    pools: dict[str, float | None] = {}
    for r in resources:
        config = r.inputs.get("nodeConfig") or {}
        accelerators = config.get("guestAccelerators") or []
        if r.type != NODE_POOL or not accelerators:
            continue
        per_node = sum(_number(a.get("count")) for a in accelerators)
        scaling = r.inputs.get("autoscaling") or {}
        zones = r.inputs.get("nodeLocations")
        if scaling.get("totalMaxNodeCount") is not None:
            nodes: float | None = _number(scaling["totalMaxNodeCount"])
        elif scaling.get("maxNodeCount") is not None and isinstance(zones, list):
            nodes = _number(scaling["maxNodeCount"]) * len(zones)
        elif not scaling and r.inputs.get("nodeCount") is not None:
            nodes = _number(r.inputs["nodeCount"]) * (len(zones) if isinstance(zones, list) else 1)
        else:
            nodes = None
        pools[str((config.get("labels") or {}).get(POOL_LABEL))] = None if nodes is None else nodes * per_node
    return pools


def _gpu_capacity(workloads: list[Workload], resources: list[EngineResource]) -> list[Finding]:
    """At their minimum replicas (an autoscaler's minReplicas where it owns the count), the GPU workloads that may
    only run on some pools must fit what those pools can ever hold: otherwise pods stay Pending for ever, and a
    canary step or a promotion never finishes rolling out."""
    floors: dict[str, float] = {}
    for r in resources:
        if r.type.endswith(":HorizontalPodAutoscaler"):
            spec = r.inputs.get("spec") or {}
            target = spec.get("scaleTargetRef") or {}
            namespace = (r.inputs.get("metadata") or {}).get("namespace", "")
            floors[f"{target.get('kind')}/{namespace}/{target.get('name')}"] = _number(spec.get("minReplicas") or 1)
    pools = _pool_gpus(resources)
    sets = {frozenset(allowed) for w in workloads if w.gpus > 0 and (allowed := w.pools())}
    findings = []
    for pool_set in sorted(sets, key=sorted):
        held = [pools.get(p) for p in pool_set]
        if not held or any(h is None for h in held):
            continue  # a pool whose most nodes the plan does not say: nothing to compare with
        inside = [w for w in workloads if w.gpus > 0 and (allowed := w.pools()) and allowed <= pool_set]
        needed = sum(w.gpus * (w.replicas if w.replicas is not None else floors.get(w.key, 1)) for w in inside)
        capacity = sum(h for h in held if h is not None)
        if needed > capacity:
            names = ", ".join(sorted(pool_set))
            findings.append(
                Finding(
                    "LM0119", "error", f"NodePool/{names}",
                    f"at their minimum replicas the GPU workloads on pools {names} need {needed:.0f} GPUs; the pools "
                    f"hold at most {capacity:.0f} ({', '.join(sorted(w.key for w in inside))})",
                    "raise the pools' maxNodes, or lower minReplicas (a canary taking traffic runs two pods)",
                )
            )  # fmt: skip
    return findings


def _metrics_served(resources: list[EngineResource]) -> list[Finding]:
    served = set()
    for r in resources:
        if r.type.endswith(":APIService"):
            served.add(str((r.inputs.get("spec") or {}).get("group", "")))
    findings = []
    for r in resources:
        if not r.type.endswith(":HorizontalPodAutoscaler"):
            continue
        for metric in (r.inputs.get("spec") or {}).get("metrics") or []:
            group = METRICS_API.get(str(metric.get("type")))
            if group and group not in served:
                meta = r.inputs.get("metadata") or {}
                findings.append(
                    Finding(
                        "LM0114", "error", f"HorizontalPodAutoscaler/{meta.get('namespace', '')}/{meta.get('name', '')}",
                        f"reads a {metric.get('type')} metric but no APIService serves {group}: it never scales",
                        "deploy a metrics adapter (the stack does when a model autoscales)",
                    )
                )  # fmt: skip
    return findings
