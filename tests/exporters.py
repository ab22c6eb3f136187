"""What the exporters the platform reads really write: metric names, label names, histogram buckets, written
from their sources at the versions the stacks run, never from llm_mesh.plan.queries (a misspelled constant
compared with itself passes). Series for a real Prometheus are built from these in tests/prometheus.py.

Sources, read 2026-12-02:
- Istio: istio/proxy 1.29.6 (8f4f693), source/extensions/filters/http/istio_stats/istio_stats.cc; the label list
  of istio.io's content/en/docs/reference/config/metrics/index.md. Histogram buckets are Envoy's defaults
  (source/common/stats/histogram_impl.cc, HistogramSettingsImpl::defaultBuckets): Istio sets none.
- vLLM 0.27.1 (the stacks' vllm/vllm-openai:v0.27.1): vllm/v1/metrics/loggers.py, PrometheusStatLogger, from the
  PyPI source release. prometheus_client adds `_total` to counters and `_bucket/_sum/_count` to histograms.
- dcgm-exporter 4.5.3-4.8.2 (691c927): etc/default-counters.csv; labels from
  internal/pkg/rendermetrics/render_metrics.go, pod mapping from internal/pkg/transformation/kubernetes.go.
- Gateway API Inference Extension v1.0.2 (cd03ff7), its endpoint picker: pkg/epp/metrics/metrics.go (the pool gauges,
  label `name`; the scheduler's histogram, no label, buckets as written there) and
  pkg/epp/metrics/collectors/inference_pool.go (the per-pod queue, labels `name` and `model_server_pod`).
- Managed Service for Prometheus (GoogleCloudPlatform/prometheus-engine, pkg/operator/apis/monitoring/v1):
  the target labels a PodMonitoring adds to every series.
"""

from __future__ import annotations

# --- Istio (istio_stats.cc): the labels of istio_requests_total and istio_request_duration_milliseconds.
ISTIO_LABELS = (
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_canonical_service", "source_canonical_revision", "source_cluster", "destination_workload",
    "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
    "destination_service", "destination_service_name", "destination_service_namespace",
    "destination_canonical_service", "destination_canonical_revision", "destination_cluster", "request_protocol",
    "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
)  # fmt: skip
ISTIO_COUNTERS = ("istio_requests_total",)
ISTIO_HISTOGRAMS = ("istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes")
# Envoy's default buckets, in milliseconds.
ISTIO_DURATION_BUCKETS = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
)  # fmt: skip

# --- vLLM 0.27.1 (PrometheusStatLogger): every series carries model_name and engine.
VLLM_LABELS = ("model_name", "engine")
VLLM_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
VLLM_COUNTERS = (
    "vllm:prompt_tokens", "vllm:generation_tokens", "vllm:request_success", "vllm:num_preemptions",
    "vllm:prefix_cache_queries", "vllm:prefix_cache_hits",
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
    1920.0, 7680.0,
)  # fmt: skip
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
VLLM_HISTOGRAMS = {
    "vllm:time_to_first_token_seconds": TTFT_BUCKETS,
    "vllm:inter_token_latency_seconds": ITL_BUCKETS,
    "vllm:request_time_per_output_token_seconds": ITL_BUCKETS,
    "vllm:e2e_request_latency_seconds": REQUEST_LATENCY_BUCKETS,
    "vllm:request_queue_time_seconds": REQUEST_LATENCY_BUCKETS,
    "vllm:request_inference_time_seconds": REQUEST_LATENCY_BUCKETS,
    "vllm:request_prefill_time_seconds": REQUEST_LATENCY_BUCKETS,
    "vllm:request_decode_time_seconds": REQUEST_LATENCY_BUCKETS,
}

# --- dcgm-exporter: default-counters.csv (gauges), labels of every GPU series, and the pod mapping's labels for
# a GPU a pod holds (GKE's managed exporter runs with it on).
DCGM_GAUGES = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP")
DCGM_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION")
DCGM_POD_LABELS = ("pod", "namespace", "container")

# --- The Inference Extension's endpoint picker, v1.0.2.
EPP_GAUGES = (
    "inference_pool_average_kv_cache_utilization", "inference_pool_average_queue_size", "inference_pool_ready_pods",
    "inference_pool_per_pod_queue_size",
)  # fmt: skip
EPP_LABELS = ("name", "model_server_pod")
EPP_HISTOGRAMS = {
    "inference_extension_scheduler_e2e_duration_seconds": (
        0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
    ),
}  # fmt: skip

# --- Managed Service for Prometheus: what a PodMonitoring's scrape adds (always, then metadata defaults), and the
# pod labels this platform's PodMonitorings copy (targetLabels.fromPod).
SCRAPE_LABELS = ("project_id", "location", "cluster", "namespace", "job", "instance", "container", "pod")
PLATFORM_POD_LABELS = ("llm_mesh_model", "llm_mesh_track", "llm_mesh_picker")


def series_names() -> set[str]:
    """Every metric name as a query sees it."""
    names = set(ISTIO_COUNTERS) | set(VLLM_GAUGES) | set(DCGM_GAUGES) | set(EPP_GAUGES)
    names |= {f"{counter}_total" for counter in VLLM_COUNTERS}
    for histogram in (*ISTIO_HISTOGRAMS, *VLLM_HISTOGRAMS, *EPP_HISTOGRAMS):
        names |= {f"{histogram}_{suffix}" for suffix in ("bucket", "sum", "count")}
    return names


def label_names() -> set[str]:
    """Every label a series read by the platform can carry."""
    return {
        *ISTIO_LABELS, *VLLM_LABELS, *DCGM_LABELS, *DCGM_POD_LABELS, *SCRAPE_LABELS, *PLATFORM_POD_LABELS, *EPP_LABELS,
        "le", "exported_pod", "exported_namespace", "exported_container",
    }  # fmt: skip
