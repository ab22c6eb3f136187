"""A real Prometheus (Debian's package, as `make` installs it into .venv/prometheus) over a TSDB backfilled with
series shaped as Istio's sidecars, vLLM and dcgm-exporter write them (tests/exporters.py), one namespace per
scenario, all queried at one instant, AT.

Backfilling takes OpenMetrics text (`promtool tsdb create-blocks-from openmetrics`); the server then answers the
same HTTP API as managed Prometheus's frontend. It starts in about a second, once per test process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import exporters
from tests.conftest import ROOT

BIN = Path(os.environ.get("LLM_MESH_PROMETHEUS_BIN", ROOT / ".venv" / "prometheus" / "usr" / "bin"))
START = 1_767_225_600  # 2026-01-01T00:00:00Z: fixed, so every run reads the same numbers
AT = START + 1800  # the instant every test queries: 30 minutes of series behind it
STEP = 15  # seconds between samples, the PodMonitorings' interval
MODEL = "llama"
SERVED_NAME = "meta-llama/Llama-3.1-8B-Instruct"
GPU_MODEL = "NVIDIA L4"


@dataclass(frozen=True)
class Gpu:
    node: str
    utilization: float  # percent
    # dcgm-exporter names the pod holding the GPU `pod`; a scrape that adds a `pod` of its own renames it.
    renamed_by_scrape: bool = False


@dataclass(frozen=True)
class Track:
    """One track's traffic and what its servers measured (every request alike)."""

    rps: float = 0.0  # requests per second reaching the server's sidecar
    errors: float = 0.0  # share of them answered 503
    latency_ms: float = 800.0
    ttft_s: float = 0.3
    scraped: bool = True  # vLLM's own series (False: the server's metrics were never scraped)
    gpus: tuple[Gpu, ...] = ()


@dataclass(frozen=True)
class Scenario:
    namespace: str
    tracks: dict[str, Track] = field(default_factory=dict)


SCENARIOS = {
    "error-free": Scenario(
        "s-error-free",
        {
            "stable": Track(rps=2.0, gpus=(Gpu("gke-gpu-node-a", 96.0),)),
            "canary": Track(rps=1.0, gpus=(Gpu("gke-gpu-node-b", 20.0, renamed_by_scrape=True),)),
        },
    ),
    "errors": Scenario("s-errors", {"stable": Track(rps=2.0), "canary": Track(rps=1.0, errors=0.1)}),
    # The canary's pod is up and scraped, and no request reached it: Istio wrote no series for it at all.
    "idle": Scenario("s-idle", {"stable": Track(rps=2.0), "canary": Track(rps=0.0)}),
    "unscraped": Scenario("s-unscraped", {"stable": Track(rps=2.0), "canary": Track(rps=1.0, scraped=False)}),
    "slow": Scenario("s-slow", {"stable": Track(rps=2.0), "canary": Track(rps=1.0, latency_ms=4000, ttft_s=3.0)}),
}


def _labels(labels: dict[str, str]) -> str:
    assert set(labels) <= exporters.label_names(), sorted(set(labels) - exporters.label_names())
    return ",".join(f'{name}="{value}"' for name, value in labels.items())


def _counter(name: str, labels: dict[str, str], per_second: float) -> Iterator[str]:
    assert name in exporters.series_names(), name
    text = _labels(labels)
    for t in range(START, AT + 1, STEP):
        yield f"{name}{{{text}}} {per_second * (t - START):g} {t}"


def _gauge(name: str, labels: dict[str, str], value: float) -> Iterator[str]:
    assert name in exporters.series_names(), name
    text = _labels(labels)
    for t in range(START, AT + 1, STEP):
        yield f"{name}{{{text}}} {value:g} {t}"


def _histogram(
    name: str, labels: dict[str, str], buckets: tuple[float, ...], per_second: float, value: float
) -> Iterator[str]:
    """Every observation `value`, `per_second` of them: a bucket counts them from the first bound at or above."""
    for le in (*buckets, float("inf")):
        bound = "+Inf" if le == float("inf") else f"{le:g}"
        yield from _counter(f"{name}_bucket", {**labels, "le": bound}, per_second if value <= le else 0.0)
    yield from _counter(f"{name}_count", labels, per_second)
    yield from _counter(f"{name}_sum", labels, per_second * value)


def _pod(track: str) -> str:
    return f"{MODEL}-{track}-5d8f7c9b4-x2k9q"


def _scrape(namespace: str, track: str) -> dict[str, str]:
    """What managed Prometheus adds to each series scraped from a server pod by the model's PodMonitoring."""
    return {
        "project_id": "acme-llm-prod", "location": "europe-west4", "cluster": "llm-mesh-prod",
        "namespace": namespace, "job": MODEL, "instance": f"{_pod(track)}:15020", "pod": _pod(track),
        "container": "istio-proxy", "llm_mesh_model": MODEL, "llm_mesh_track": track,
    }  # fmt: skip


def _istio(namespace: str, track: str, code: str) -> dict[str, str]:
    """As the server's sidecar reports a request from the ingress gateway."""
    return {
        "reporter": "destination", "source_workload": "istio-ingressgateway",
        "source_workload_namespace": "istio-ingress",
        "source_principal": "spiffe://cluster.local/ns/istio-ingress/sa/istio-ingressgateway",
        "source_app": "istio-ingressgateway", "source_version": "unknown",
        "source_canonical_service": "istio-ingressgateway", "source_canonical_revision": "latest",
        "source_cluster": "Kubernetes", "destination_workload": f"{MODEL}-{track}",
        "destination_workload_namespace": namespace,
        "destination_principal": f"spiffe://cluster.local/ns/{namespace}/sa/{MODEL}",
        "destination_app": MODEL, "destination_version": track,
        "destination_service": f"{MODEL}.{namespace}.svc.cluster.local", "destination_service_name": MODEL,
        "destination_service_namespace": namespace, "destination_canonical_service": MODEL,
        "destination_canonical_revision": track, "destination_cluster": "Kubernetes", "request_protocol": "http",
        "response_code": code, "grpc_response_status": "", "response_flags": "-" if code == "200" else "UF",
        "connection_security_policy": "mutual_tls",
    }  # fmt: skip


def _track_series(namespace: str, name: str, track: Track) -> Iterator[str]:
    scrape = _scrape(namespace, name)
    # Istio creates a series per response code once such a response happened, and none before.
    for code, share in (("200", 1 - track.errors), ("503", track.errors)):
        if track.rps * share > 0:
            labels = {**_istio(namespace, name, code), **scrape}
            yield from _counter("istio_requests_total", labels, track.rps * share)
            yield from _histogram(
                "istio_request_duration_milliseconds",
                labels,
                exporters.ISTIO_DURATION_BUCKETS,
                track.rps * share,
                track.latency_ms,
            )
            # The gateway's sidecar reports the same requests from its side (reporter="source"), scraped from the
            # gateway pod in its own namespace.
            gateway = {
                **_istio(namespace, name, code), "reporter": "source", "project_id": "acme-llm-prod",
                "location": "europe-west4", "cluster": "llm-mesh-prod", "namespace": "istio-ingress",
                "job": "ingress-gateway", "instance": "istio-ingressgateway-6c9f7-abcde:15020",
                "pod": "istio-ingressgateway-6c9f7-abcde", "container": "istio-proxy",
            }  # fmt: skip
            yield from _counter("istio_requests_total", gateway, track.rps * share)
    if track.scraped:
        # vLLM registers its series at start: they exist, at 0, before the first request.
        vllm = {"model_name": SERVED_NAME, "engine": "0", **scrape, "container": "vllm"}
        yield from _gauge("vllm:num_requests_running", vllm, min(track.rps, 4))
        yield from _gauge("vllm:num_requests_waiting", vllm, 0)
        yield from _gauge("vllm:kv_cache_usage_perc", vllm, 0.4)
        yield from _counter("vllm:generation_tokens_total", vllm, track.rps * 200)
        yield from _counter("vllm:prompt_tokens_total", vllm, track.rps * 500)
        for metric, value in (
            ("vllm:time_to_first_token_seconds", track.ttft_s),
            ("vllm:inter_token_latency_seconds", 0.02),
            ("vllm:e2e_request_latency_seconds", track.latency_ms / 1000),
            ("vllm:request_inference_time_seconds", track.latency_ms / 1000 * 0.9),
        ):
            yield from _histogram(metric, vllm, exporters.VLLM_HISTOGRAMS[metric], track.rps, value)
    for i, gpu in enumerate(track.gpus):
        held = {"pod": _pod(name), "namespace": namespace, "container": "vllm"}
        if gpu.renamed_by_scrape:
            held = {f"exported_{key}": value for key, value in held.items()}
            held |= {"pod": f"dcgm-exporter-{i}", "namespace": "gke-managed-system", "container": "dcgm-exporter"}
        dcgm = {
            "gpu": "0", "UUID": f"GPU-{namespace}-{name}-{i}", "pci_bus_id": "00000000:00:04.0", "device": "nvidia0",
            "modelName": GPU_MODEL, "Hostname": gpu.node, "DCGM_FI_DRIVER_VERSION": "550.90.07", **held,
        }  # fmt: skip
        yield from _gauge("DCGM_FI_DEV_GPU_UTIL", dcgm, gpu.utilization)
        yield from _gauge("DCGM_FI_DEV_FB_USED", dcgm, 20000 * gpu.utilization / 100)
        yield from _gauge("DCGM_FI_DEV_FB_FREE", dcgm, 22000 - 20000 * gpu.utilization / 100)


# The endpoint pickers of a pooled model's stable pool, two of them, each with its own view of the same servers.
PICKER_NAMESPACE = "s-pooled"
PICKER_POOL = f"{MODEL}-stable"
PICKER_VIEWS = {
    "a": {"queue": 3.0, "kv": 0.5, "pods": {"server-1": 5.0, "server-2": 1.0}},
    "b": {"queue": 2.0, "kv": 0.7, "pods": {"server-1": 4.0, "server-2": 0.0}},
}
PICKER_CHOICE_S = 0.003  # every choice takes this long; 10 a second per picker


def _picker_series() -> Iterator[str]:
    picker = f"{PICKER_POOL}-epp"
    for replica, view in PICKER_VIEWS.items():
        pod = f"{picker}-6c9d8f7b5-{replica}"
        scrape = {
            "project_id": "acme-llm-prod", "location": "europe-west4", "cluster": "llm-mesh-prod",
            "namespace": PICKER_NAMESPACE, "job": picker, "instance": f"{pod}:9090", "pod": pod, "container": "epp",
            "llm_mesh_picker": picker,
        }  # fmt: skip
        pool = {**scrape, "name": PICKER_POOL}
        yield from _gauge("inference_pool_average_queue_size", pool, view["queue"])  # type: ignore[arg-type]
        yield from _gauge("inference_pool_average_kv_cache_utilization", pool, view["kv"])  # type: ignore[arg-type]
        yield from _gauge("inference_pool_ready_pods", pool, 2.0)
        for server, queue in view["pods"].items():  # type: ignore[attr-defined]
            yield from _gauge("inference_pool_per_pod_queue_size", {**pool, "model_server_pod": server}, queue)
        histogram = "inference_extension_scheduler_e2e_duration_seconds"
        yield from _histogram(histogram, scrape, exporters.EPP_HISTOGRAMS[histogram], 10.0, PICKER_CHOICE_S)


def openmetrics() -> str:
    lines = [
        line
        for scenario in SCENARIOS.values()
        for name, track in scenario.tracks.items()
        for line in _track_series(scenario.namespace, name, track)
    ]
    lines += _picker_series()
    return "\n".join([*lines, "# EOF"]) + "\n"


class Prometheus:
    """The server over the scenarios' TSDB, on a free loopback port; `stop` ends it."""

    def __init__(self, folder: Path) -> None:
        for tool in ("prometheus", "promtool"):
            if not (BIN / tool).is_file():
                raise RuntimeError(
                    f"{BIN / tool} is missing: `make unit` (or `make test`) installs Debian's prometheus package "
                    "there; or set LLM_MESH_PROMETHEUS_BIN to a folder holding prometheus and promtool"
                )
        (folder / "series.om").write_text(openmetrics())
        subprocess.run(
            [
                BIN / "promtool",
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "-q",
                folder / "series.om",
                folder / "data",
            ],
            check=True,
            capture_output=True,
        )
        (folder / "prometheus.yml").write_text("scrape_configs: []\n")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._log = (folder / "prometheus.log").open("w")
        self._process = subprocess.Popen(
            [
                BIN / "prometheus",
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                # Retention counts from the newest block, not the clock: keep the fixed past.
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start: {(folder / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant query's result at AT; raises on a query Prometheus refuses."""
        params = urllib.parse.urlencode({"query": promql, "time": AT})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def values(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Each series of the result by its labels."""
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in self.query(promql)}

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._log.close()


def start(folder: Path | None = None) -> Prometheus:
    return Prometheus(folder or Path(tempfile.mkdtemp(prefix="llm-mesh-prometheus-")))
