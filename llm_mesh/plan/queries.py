"""Every PromQL query of the platform, named, with the labels Istio, vLLM and DCGM really emit.

The dashboards, the alert policies and the canary analysis read these and nothing else, so that a tile, an
alert and a promotion decision always mean the same number. Series come from Google Cloud Managed Service
for Prometheus, which scrapes each server pod's merged endpoint (istio-proxy's and vLLM's metrics on 15020)
and labels every series with the pod's model and track (`llm_mesh_model`, `llm_mesh_track`, set by the
PodMonitoring). Istio's own labels say the same from the mesh's side: `destination_canonical_service` is the
model (its `app.kubernetes.io/name`) and `destination_canonical_revision` the track (its `version` label).
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_LABEL = "llm_mesh_model"
TRACK_LABEL = "llm_mesh_track"

# Metric names as the exporters write them.
ISTIO_REQUESTS = "istio_requests_total"
ISTIO_DURATION = "istio_request_duration_milliseconds_bucket"
VLLM_E2E = "vllm:e2e_request_latency_seconds_bucket"
VLLM_TTFT = "vllm:time_to_first_token_seconds_bucket"
# vLLM 0.27 (the pinned image): `time_per_output_token_seconds` is gone; inter-token latency replaces it.
VLLM_ITL = "vllm:inter_token_latency_seconds_bucket"
VLLM_INFERENCE = "vllm:request_inference_time_seconds_bucket"
# The bounds of vLLM 0.27's time-to-first-token histogram (vllm/v1/metrics/loggers.py). A limit between two bounds
# is judged by histogram_quantile's interpolation, not by the data: limits sit on a bound.
TTFT_BUCKET_BOUNDS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
)  # fmt: skip
VLLM_WAITING = "vllm:num_requests_waiting"
VLLM_RUNNING = "vllm:num_requests_running"
VLLM_PROMPT_TOKENS = "vllm:prompt_tokens_total"
VLLM_GENERATION_TOKENS = "vllm:generation_tokens_total"
VLLM_KV_CACHE = "vllm:kv_cache_usage_perc"
DCGM_UTIL = "DCGM_FI_DEV_GPU_UTIL"
DCGM_FB_USED = "DCGM_FI_DEV_FB_USED"
DCGM_FB_FREE = "DCGM_FI_DEV_FB_FREE"

# The endpoint picker's own (Gateway API Inference Extension v1.0.2: pkg/epp/metrics/metrics.go and
# pkg/epp/metrics/collectors/inference_pool.go): what it believes of each pool when it picks. The pool gauges carry
# the pool's `name`; the per-pod one also `model_server_pod`; the scheduler's histogram carries no label of its own
# (the picker's PodMonitoring adds `llm_mesh_picker`, the picker's name).
PICKER_POOL_QUEUE = "inference_pool_average_queue_size"
PICKER_POOL_KV_CACHE = "inference_pool_average_kv_cache_utilization"
PICKER_POOL_READY = "inference_pool_ready_pods"
PICKER_POD_QUEUE = "inference_pool_per_pod_queue_size"
PICKER_SCHEDULING = "inference_extension_scheduler_e2e_duration_seconds_bucket"
PICKER_LABEL = "llm_mesh_picker"
PICKER_METRICS = (PICKER_POOL_QUEUE, PICKER_POOL_KV_CACHE, PICKER_POOL_READY, PICKER_POD_QUEUE, PICKER_SCHEDULING)

METRICS = (
    ISTIO_REQUESTS, ISTIO_DURATION, VLLM_E2E, VLLM_TTFT, VLLM_ITL, VLLM_INFERENCE, VLLM_WAITING, VLLM_RUNNING, VLLM_PROMPT_TOKENS,
    VLLM_GENERATION_TOKENS, VLLM_KV_CACHE, DCGM_UTIL, DCGM_FB_USED, DCGM_FB_FREE,
)  # fmt: skip


@dataclass(frozen=True)
class Scope:
    """Which series a query reads: one model, optionally one track, in one namespace."""

    model: str
    namespace: str
    track: str | None = None

    def istio(self) -> str:
        """Istio's labels, as the server's own sidecar reports each request it received."""
        track = f',destination_canonical_revision="{self.track}"' if self.track else ""
        return (
            f'reporter="destination",destination_service_namespace="{self.namespace}",'
            f'destination_canonical_service="{self.model}"{track}'
        )

    def pods(self) -> str:
        """The labels the PodMonitoring puts on every series scraped from the model's pods."""
        track = f',{TRACK_LABEL}="{self.track}"' if self.track else ""
        return f'namespace="{self.namespace}",{MODEL_LABEL}="{self.model}"{track}'

    def by(self) -> str:
        """Group by track when the scope spans them (stable and canary side by side)."""
        return "" if self.track else f" by ({TRACK_LABEL})"

    def istio_by(self) -> str:
        return "" if self.track else " by (destination_canonical_revision)"


def qps(scope: Scope, window: str = "5m") -> str:
    """Requests per second the servers receive."""
    return f"sum{scope.istio_by()}(rate({ISTIO_REQUESTS}{{{scope.istio()}}}[{window}]))"


def good_rate(scope: Scope, window: str = "5m") -> str:
    """Requests per second answered with anything but 5xx."""
    return f'sum{scope.istio_by()}(rate({ISTIO_REQUESTS}{{{scope.istio()},response_code!~"5.."}}[{window}]))'


def success_rate(scope: Scope, window: str = "5m") -> str:
    """Share of requests not answered 5xx (0..1): what a canary is judged on.

    Good over total, as Flagger computes it: Istio writes a `response_code="5.."` series only once a 5xx has
    happened, so errors over total is an empty vector (no value at all) for a track that never failed. Good over
    total has a value whenever there was traffic, and none only when there was none."""
    return f"{good_rate(scope, window)} / {qps(scope, window)}"


def error_rate(scope: Scope, window: str = "5m") -> str:
    """Share of requests answered 5xx (0..1): 0, not an empty line, for a track with traffic and no error."""
    return f"1 - ({success_rate(scope, window)})"


def request_count(scope: Scope, window: str = "5m") -> str:
    """Requests in the window: too few, and no rate says anything."""
    return f"sum{scope.istio_by()}(increase({ISTIO_REQUESTS}{{{scope.istio()}}}[{window}]))"


def latency_quantile(scope: Scope, quantile: float, window: str = "5m") -> str:
    """Request latency in milliseconds at a quantile (0.5, 0.95, 0.99), as the sidecar measures it."""
    grouping = "le" if scope.track else "le, destination_canonical_revision"
    return f"histogram_quantile({quantile}, sum by ({grouping})(rate({ISTIO_DURATION}{{{scope.istio()}}}[{window}])))"


def _vllm_quantile(metric: str, scope: Scope, quantile: float, window: str) -> str:
    grouping = "le" if scope.track else f"le, {TRACK_LABEL}"
    return f"histogram_quantile({quantile}, sum by ({grouping})(rate({metric}{{{scope.pods()}}}[{window}])))"


def time_to_first_token(scope: Scope, quantile: float = 0.99, window: str = "5m") -> str:
    """Seconds until the first token, at a quantile (vLLM's own measure)."""
    return _vllm_quantile(VLLM_TTFT, scope, quantile, window)


def inter_token_latency(scope: Scope, quantile: float = 0.99, window: str = "5m") -> str:
    """Seconds between two generated tokens, at a quantile (vLLM's `inter_token_latency_seconds`)."""
    return _vllm_quantile(VLLM_ITL, scope, quantile, window)


def end_to_end_latency(scope: Scope, quantile: float = 0.99, window: str = "5m") -> str:
    """Seconds from arrival to the last token, in the server, at a quantile."""
    return _vllm_quantile(VLLM_E2E, scope, quantile, window)


def inference_time(scope: Scope, quantile: float = 0.99, window: str = "5m") -> str:
    """Seconds a request spent running on the GPU (prefill and decode, no queueing), at a quantile."""
    return _vllm_quantile(VLLM_INFERENCE, scope, quantile, window)


def queue_depth(scope: Scope) -> str:
    """Requests waiting for a GPU slot (what the autoscaler scales on)."""
    return f"sum{scope.by()}({VLLM_WAITING}{{{scope.pods()}}})"


def tokens_per_second(scope: Scope, window: str = "5m") -> str:
    """Generated tokens per second."""
    return f"sum{scope.by()}(rate({VLLM_GENERATION_TOKENS}{{{scope.pods()}}}[{window}]))"


def kv_cache_usage(scope: Scope) -> str:
    """Share of the KV cache in use (0..1), the fullest replica: near 1 the server queues or preempts."""
    return f"max{scope.by()}({VLLM_KV_CACHE}{{{scope.pods()}}})"


def _pool(namespace: str, pool: str) -> str:
    return f'namespace="{namespace}",name="{pool}"'


# Each pool has two pickers, each with its own view: the busier one is shown (they differ when one just started).
def picker_pool_queue(namespace: str, pool: str) -> str:
    """Requests waiting per replica of the pool, on average, as its picker last read the servers."""
    return f"max({PICKER_POOL_QUEUE}{{{_pool(namespace, pool)}}})"


def picker_pool_kv_cache(namespace: str, pool: str) -> str:
    """The pool's average KV-cache use (0..1), as its picker last read the servers."""
    return f"max({PICKER_POOL_KV_CACHE}{{{_pool(namespace, pool)}}})"


def picker_ready_pods(namespace: str, pool: str) -> str:
    """Pods the picker may choose from: below the Deployment's ready count, the picker has not seen them yet."""
    return f"max({PICKER_POOL_READY}{{{_pool(namespace, pool)}}})"


def picker_pod_queue(namespace: str, pool: str) -> str:
    """Each server's queue as the picker saw it when choosing: the replica it avoids is the one with the longest."""
    return f"max by (model_server_pod)({PICKER_POD_QUEUE}{{{_pool(namespace, pool)}}})"


def picker_scheduling_latency(namespace: str, picker: str, quantile: float = 0.99, window: str = "5m") -> str:
    """How long the picker takes to choose (the time it adds to every request before its first byte)."""
    selector = f'namespace="{namespace}",{PICKER_LABEL}="{picker}"'
    return f"histogram_quantile({quantile:g}, sum by (le)(rate({PICKER_SCHEDULING}{{{selector}}}[{window}])))"


# dcgm-exporter's own label for the node: the exporter writes its host name, which GKE's managed DCGM sets to the
# node's name. Its series carry no `node` label (the scrape adds none by default).
GPU_NODE_LABEL = "Hostname"


def gpu_utilization() -> str:
    """Percent of time the GPUs were busy, averaged per node (GKE's DCGM exporter)."""
    return f"avg by ({GPU_NODE_LABEL})({DCGM_UTIL})"


def gpu_memory_used_share() -> str:
    """Share of the GPUs' memory in use, per node."""
    used, free = (f"sum by ({GPU_NODE_LABEL})({metric})" for metric in (DCGM_FB_USED, DCGM_FB_FREE))
    return f"{used} / ({used} + {free})"


def gpu_utilization_by_track(scope: Scope) -> str:
    """Percent of time the model's GPUs were busy, per track: each GPU series is matched to the server pod that
    holds it. dcgm-exporter names the GPU's pod `pod`; a scrape that adds a `pod` of its own (the exporter's)
    renames it `exported_pod`, which is taken where present. The server pods' series (scraped by the model's
    PodMonitoring) say which model and track a pod serves."""
    gpus = f'label_replace({DCGM_UTIL}, "pod", "$1", "exported_pod", "(.+)")'
    pods = f"group by (pod, {MODEL_LABEL}, {TRACK_LABEL})({VLLM_RUNNING}{{{scope.pods()}}})"
    grouping = MODEL_LABEL if scope.track else f"{MODEL_LABEL}, {TRACK_LABEL}"
    return f"avg by ({grouping})({gpus} * on (pod) group_left ({MODEL_LABEL}, {TRACK_LABEL}) {pods})"


def gateway_requests(namespace: str, window: str = "5m") -> str:
    """Requests per second the ingress gateway answers, by model and response code: the 401/403 of a refused token
    and the 503 of a model without ready pods happen here and never reach a server's sidecar."""
    return (
        f"sum by (destination_canonical_service, response_code)"
        f'(rate({ISTIO_REQUESTS}{{reporter="source",namespace="{namespace}"}}[{window}]))'
    )


def above(query: str, threshold: float) -> str:
    """The series of `query` whose value is above `threshold`: an alert condition fires on each."""
    return f"({query}) > {threshold:g}"


def with_traffic(condition: str, scope: Scope, min_requests: int, window: str = "5m") -> str:
    """`condition` only where the track served at least `min_requests` in the window: a ratio of two requests
    says nothing (both sides group by the destination's revision, so they match series by series)."""
    return f"{condition} and ({request_count(scope, window)}) >= {min_requests}"
