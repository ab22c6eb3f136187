"""Decisions for the inference service: replicas per track, the server's command line, the model fetch, drain."""

from __future__ import annotations

import hashlib
import json
import math

from llm_mesh.mesh.base import duration_seconds
from llm_mesh.payloads import DRAIN_SERVER, FETCH_MODEL
from llm_mesh.plan.config import WEIGHT_SUFFIXES, ModelVersion, RoutingConfig, ServedModel
from llm_mesh.plan.gpu_fit import Fit
from llm_mesh.plan.observability import resource_attributes, trace_identity
from llm_mesh.plan.topology import MODEL_STORE, SERVER_PORT, ModelNames

JOB_NAME_LIMIT = 63
# Pods of a canary that takes traffic: one can go while the other serves (see `replicas`).
CANARY_MIN_SERVING = 2
MODEL_DIR = "/models"
# Weights of a large model take many minutes to load onto the GPUs: allow up to 30 minutes to start.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURES = 180
# What the pods run, shipped without comments or docstrings (llm_mesh.payloads).
FETCH_SOURCE = FETCH_MODEL
DRAIN_SOURCE = DRAIN_SERVER
# How long a pod waits for weights that are not in the store yet: inside the 45-minute rollout `pulumi up` allows.
WEIGHTS_WAIT_SECONDS = 40 * 60
# Endpoint removal reaching every Envoy, and the server's own exit after SIGTERM.
DRAIN_PROPAGATION_SECONDS = 10
SHUTDOWN_SECONDS = 20


def version_of(model: ServedModel, track: str) -> ModelVersion:
    versions = dict(model.tracks())
    if track not in versions:
        raise ValueError(f"model {model.name!r} has no {track} version")
    return versions[track]


def weights_gate_name(service: str, track: str, version: str) -> str:
    """The gate Job's name: one per track and version. Per version, since a Job's template cannot change and a new
    version is a new gate (the old one is replaced); per track, since a promotion gives stable the canary's version
    while the canary's gate, deleted in the same `pulumi up`, still holds its name, and Pulumi creates the
    replacement before it deletes: a shared name would meet AlreadyExists."""
    name = f"{service}-{track}-weights-{version}"
    if len(name) <= JOB_NAME_LIMIT:
        return name
    # Kubernetes copies a Job's name into its pods' `job-name` label, at most 63 characters: a long model and
    # version keep a readable start and a digest of the whole, so that two long names stay two names.
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: JOB_NAME_LIMIT - len(digest) - 1].rstrip('-.')}-{digest}"


def replicas(model: ServedModel, track: str) -> int | None:
    """None for stable when the autoscaler owns its count (declaring one would fight it on every `up`);
    a canary in proportion to its weight, never fewer than CANARY_MIN_SERVING while it takes traffic, and one
    warm replica at weight zero; a mirror, which serves no client, one. `minReplicas: 0` turns the model off:
    every track runs zero.

    The warm canary replica is what lets every weight change be one `pulumi up` that never routes to a subset
    without pods: the first step from 0 finds a ready pod, and a rollback to 0 leaves the pods in place while
    the route moves away (removing the canary version removes the replica). While the canary takes traffic,
    a single pod would take the canary's share of requests with it when it goes (a node upgrade, a spot
    preemption, a ComputeClass move: 503s until a new pod has loaded the weights); two, spread over nodes and
    held by a PodDisruptionBudget, keep the subset serving. A mirror's subset going empty fails no client."""
    if model.min_replicas == 0:
        return 0
    if track == "stable":
        return None
    if track == "canary":
        if model.canary_weight == 0:
            return 1
        return max(CANARY_MIN_SERVING, math.ceil(model.min_replicas * model.canary_weight / 100))
    return 1


def rollout_seconds(model: ServedModel, track: str, per_pod_seconds: int) -> int:
    """How long `pulumi up` waits for a track's rollout: GPU pods are replaced one at a time (maxSurge 1,
    maxUnavailable 0), each with up to `per_pod_seconds` for a node, the image, the weights and the start
    (Kubernetes' progress deadline, which restarts with each pod that becomes ready), so the whole rollout may
    take that once per pod: stable's at most maxReplicas."""
    count = replicas(model, track)
    pods = model.max_replicas if count is None else count
    return per_pod_seconds * max(1, pods)


def disruption_budgeted(model: ServedModel, track: str) -> bool:
    """Tracks whose pods a voluntary eviction takes one at a time: stable always, the canary while it serves."""
    count = replicas(model, track)
    return track == "stable" or (track == "canary" and count is not None and count >= CANARY_MIN_SERVING)


def server_args(
    model: ServedModel, version: ModelVersion, fit: Fit, otlp_endpoint: str | None = None, detailed_traces: bool = False
) -> list[str]:
    """`vllm serve` (the image's entrypoint) over the fetched weights, given positionally, with the flags the
    GPU fit decided: one tensor-parallel rank per GPU, the context served, the memory fraction to take; and
    OpenTelemetry spans to the stack's collector (vLLM traces only the requests its sidecar sampled)."""
    args = [
        f"{MODEL_DIR}/{version.version}",
        "--served-model-name",
        model.served_name or model.name,
        "--port",
        str(SERVER_PORT),
        "--tensor-parallel-size",
        str(fit.tensor_parallel),
        "--max-model-len",
        str(fit.context),
        "--gpu-memory-utilization",
        str(fit.gpu.utilization),
    ]
    if fit.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", fit.kv_cache_dtype]
    if otlp_endpoint is not None:
        args += ["--otlp-traces-endpoint", otlp_endpoint]
        if detailed_traces:
            args += ["--collect-detailed-traces", "all"]
    return args + list(model.args)


def tracing_env(names: ModelNames, track: str, version: ModelVersion, environment: str) -> dict[str, str]:
    """The server's OpenTelemetry SDK settings: its service is the model (as Istio's canonical service), its
    resource says the track and version, and it speaks plaintext gRPC to its own sidecar, which adds mTLS (the
    SDK would otherwise try TLS to a `grpc://` endpoint)."""
    identity = trace_identity(names.model.name, track, version.version)
    return {
        "OTEL_SERVICE_NAME": names.model.name,
        "OTEL_RESOURCE_ATTRIBUTES": resource_attributes(identity, names.namespace, environment),
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true",
    }


def with_proxy_env(proxy_config: str, env: dict[str, str]) -> str:
    """A `proxy.istio.io/config` annotation with `env` added to the proxy's environment (proxyMetadata), which
    its span tags and access log read."""
    config = json.loads(proxy_config)
    config["proxyMetadata"] = {**config.get("proxyMetadata", {}), **env}
    return json.dumps(config, sort_keys=True)


def drain_deadline_seconds(routing: RoutingConfig) -> int:
    """A request may run as long as its route allows: the drain waits that long for the last one."""
    return int(duration_seconds(routing.timeout))


def grace_period_seconds(routing: RoutingConfig) -> int:
    """The pod's terminationGracePeriodSeconds: propagation, the longest request, then the server's exit."""
    return DRAIN_PROPAGATION_SECONDS + drain_deadline_seconds(routing) + SHUTDOWN_SECONDS


def drain_command(routing: RoutingConfig) -> list[str]:
    """The server's preStop hook (drain_server.py with the image's Python)."""
    return [
        "python3",
        "-c",
        DRAIN_SOURCE,
        str(SERVER_PORT),
        str(DRAIN_PROPAGATION_SECONDS),
        str(drain_deadline_seconds(routing)),
    ]


def weight_files(version: ModelVersion) -> list[str]:
    return [f.path for f in version.files if f.path.endswith(WEIGHT_SUFFIXES)]


def store_url(names: ModelNames, store_namespace: str, version: ModelVersion) -> str:
    return f"http://{MODEL_STORE}.{store_namespace}.svc.cluster.local/models/{names.model.name}/{version.version}"


def fetch_command(base_url: str, version: ModelVersion) -> list[str]:
    """The init container's command: fetch_model.py run by the server image's Python.

    It runs after the (native) istio-proxy sidecar is up, so the request to the model store goes through
    the mesh with mTLS like any other.
    """
    files = [artifact.model_dump(exclude_none=True) for artifact in version.files]
    return [
        "python3",
        "-c",
        FETCH_SOURCE,
        base_url,
        f"{MODEL_DIR}/{version.version}",
        json.dumps(files),
        str(WEIGHTS_WAIT_SECONDS),
    ]


# POSIX sh and wget --spider (BusyBox's or GNU's): what the model store's own small image has.
WEIGHTS_GATE_SCRIPT = """\
base="$1"; deadline=$(( $(date +%s) + $2 )); shift 2
for file in "$@"; do
  until wget -q --spider "$base/$file"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "missing in the model store: $file (llm-mesh models push, or the version's import job, puts it there)" >&2
      exit 1
    fi
    echo "waiting for $file"; sleep "${WEIGHTS_GATE_POLL_SECONDS:-15}"
  done
  echo "present: $file"
done
"""


def weights_gate_command(base_url: str, version: ModelVersion) -> list[str]:
    """The weights gate's command: every file of the version is served by the store, or it fails by the deadline.

    A Job that `pulumi up` waits for before it starts the servers, so the rollout order is store, import,
    weights present, servers, and a missing file is one clear failure instead of a crash-looping GPU pod.
    """
    return ["sh", "-c", WEIGHTS_GATE_SCRIPT, "weights-gate", base_url, str(WEIGHTS_WAIT_SECONDS)] + [
        f.path for f in version.files
    ]
