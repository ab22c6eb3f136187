"""The stack config's `canary` section: how `llm-mesh canary run` moves a canary."""

from __future__ import annotations

from pydantic import Field

from llm_mesh.plan.config.fields import ConfigModel, Duration


class CanaryConfig(ConfigModel):
    """How `llm-mesh canary run` moves a canary: step size, cadence, and what a healthy canary must show."""

    # Percent added per healthy check; the last step before promotion is maxWeight.
    step: int = Field(default=10, ge=1, le=100)
    max_weight: int = Field(default=50, ge=1, le=100)
    # Time between checks, and the window each check's queries look back over.
    interval: Duration = "5m"
    window: Duration = "5m"
    # Fewer canary requests than this in the window and no judgement is made (no traffic never promotes).
    min_requests: int = Field(default=100, ge=1)
    min_success_rate: float = Field(default=0.99, gt=0, le=1)
    # The canary's P99 latency may exceed stable's by at most this factor.
    max_latency_ratio: float = Field(default=1.25, ge=1)
    max_ttft_seconds: float = Field(default=2.0, gt=0)
    # Failed checks in one run before the canary is rolled back.
    failed_checks: int = Field(default=3, ge=1)
    # A Prometheus-compatible query API: the managed Prometheus frontend (port-forwarded) or a Prometheus.
    prometheus_url: str = Field(default="http://localhost:9090", pattern=r"^https?://")
