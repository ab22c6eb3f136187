"""The stack config's `observability` section: traces, logs, the availability goal and the alerts' thresholds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from llm_mesh.plan.config.fields import ConfigModel, Image

_IN_CLUSTER_HOST = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc\.cluster\.local$"
)
_NOTIFICATION_CHANNEL = re.compile(r"^projects/[^/\s]+/notificationChannels/[0-9]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(address: str) -> str:
    if not _EMAIL.match(address):
        raise ValueError("an email address (name@domain), told of every incident")
    return address


def _notification_channel(name: str) -> str:
    if not _NOTIFICATION_CHANNEL.match(name):
        raise ValueError(
            "a channel's resource name: projects/PROJECT/notificationChannels/ID "
            "(`gcloud beta monitoring channels list` prints them)"
        )
    return name


def _between(low: float, high: float, what: str, low_open: bool = False) -> AfterValidator:
    """A number in [low, high] (or (low, high]), refused with what it measures and the range."""

    def check(value: float) -> float:
        if value < low or value > high or (low_open and value == low):
            bound = f"above {low:g}" if low_open else f"at least {low:g}"
            raise ValueError(f"{what}: {bound} and at most {high:g}")
        return value

    return AfterValidator(check)


class AlertsConfig(ConfigModel):
    """Thresholds of the alert policies (one per model and track, one for the GPUs) and who is told."""

    # Cloud Monitoring notification channels by resource name (Slack, PagerDuty, ... made outside the stack).
    notification_channels: list[Annotated[str, AfterValidator(_notification_channel)]] = []
    # Email addresses the stack declares a notification channel for. Neither these nor channels: incidents open in
    # the console only, which prod refuses.
    emails: list[Annotated[str, AfterValidator(_email)]] = []
    # Share of a track's requests answered 5xx over 5 minutes.
    error_rate: Annotated[float, _between(0, 1, "a share of requests", low_open=True)] = 0.05
    # A track's P99 request latency at its sidecar: a whole (streamed) generation, so minutes are not unusual.
    latency_p99_seconds: Annotated[float, _between(0, 3600, "seconds", low_open=True)] = 120.0
    # Requests waiting for a GPU slot, summed over a track's replicas (the autoscaler aims at 10 per replica).
    queue_depth: Annotated[int, _between(1, 100_000, "requests waiting")] = 50
    # A node's GPUs busy this share of the time (DCGM), for 15 minutes: no headroom left for a burst.
    gpu_utilization_percent: Annotated[float, _between(0, 100, "a percentage", low_open=True)] = 95.0


class ObservabilityConfig(ConfigModel):
    # Percent of requests traced (Istio's sampling at the first proxy; vLLM follows the proxy's decision).
    tracing_sampling_percent: Annotated[float, _between(0, 100, "a percentage of requests")] = 1.0
    access_logs: bool = True
    # Where the stack deploys the OpenTelemetry Collector that receives the mesh's and vLLM's traces (OTLP/gRPC):
    # `<service>.<namespace>.svc.cluster.local`, so that nothing sends spans to a host the stack does not run.
    otel_collector_host: str = "opentelemetry-collector.observability.svc.cluster.local"
    otel_collector_port: int = Field(default=4317, ge=1, le=65535)
    # The collector's image (contrib: it carries the googlecloud exporter), pinned by digest in every environment:
    # the multi-arch index of the 0.157.0 release (re-check with `crane digest` when moving the tag).
    collector_image: Image = (
        "otel/opentelemetry-collector-contrib:0.157.0"
        "@sha256:f2f01157055a9b2aab9df7118e1f1c9abf345e99b23bc7a2bc791db374a7d0f6"
    )
    # vLLM's `--collect-detailed-traces all`: model and worker timings, at a cost on every request (vLLM's words:
    # "possibly costly and or blocking operations"), so off unless a stack asks for it.
    detailed_traces: bool = False
    # Share of each model's requests not answered 5xx over a rolling 28 days (the availability SLO).
    availability_goal: Annotated[float, _between(0.5, 0.9999, "a share of requests")] = 0.995
    alerts: AlertsConfig = AlertsConfig()

    @field_validator("otel_collector_host")
    @classmethod
    def _in_cluster(cls, host: str) -> str:
        if not _IN_CLUSTER_HOST.match(host):
            raise ValueError(
                "the stack deploys the collector itself: name it as <service>.<namespace>.svc.cluster.local"
            )
        return host

    @property
    def collector_name(self) -> str:
        return self.otel_collector_host.split(".")[0]

    @property
    def collector_namespace(self) -> str:
        return self.otel_collector_host.split(".")[1]
