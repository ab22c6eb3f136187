"""The stack config's `canary` section: how `llm-mesh canary run` moves a canary."""

from __future__ import annotations

from pydantic import Field, field_validator

from llm_mesh.plan import queries
from llm_mesh.plan.config.fields import ConfigModel, Duration


class CanaryConfig(ConfigModel):
    """How `llm-mesh canary run` moves a canary: step size, cadence, and what a healthy canary must show."""

    # Percent added per healthy check; the last step before promotion is maxWeight.
    step: int = Field(default=10, ge=1, le=100)
    # At most 99: at 100 stable takes no traffic, has no latency to compare with, and no check could pass.
    max_weight: int = Field(default=50, ge=1, le=99)
    # Time between checks, and the window each check's queries look back over.
    interval: Duration = "5m"
    window: Duration = "5m"
    # Fewer canary requests than this in the window and no judgement is made (no traffic never promotes).
    min_requests: int = Field(default=100, ge=1)
    min_success_rate: float = Field(default=0.99, gt=0, le=1)
    # The canary's P99 latency may exceed stable's by at most this factor.
    max_latency_ratio: float = Field(default=1.25, ge=1)
    # On a bound of vLLM's time-to-first-token histogram (1, 2.5, 5, ...): between two, interpolation decides.
    max_ttft_seconds: float = Field(default=2.5, gt=0)
    # Failed checks in one run before the canary is rolled back.
    failed_checks: int = Field(default=3, ge=1)
    # Checks in a row without enough traffic before the canary is rolled back: a canary no request reaches is
    # not being tested (a wrong route, a header nobody sends), and waiting longer proves nothing.
    no_traffic_checks: int = Field(default=6, ge=1)
    # A Prometheus-compatible query API: the managed Prometheus frontend (port-forwarded) or a Prometheus.
    prometheus_url: str = Field(default="http://localhost:9090", pattern=r"^https?://")

    @field_validator("max_ttft_seconds")
    @classmethod
    def _on_a_bucket_bound(cls, limit: float) -> float:
        if limit in queries.TTFT_BUCKET_BOUNDS:
            return limit
        below = max((b for b in queries.TTFT_BUCKET_BOUNDS if b < limit), default=None)
        above = min((b for b in queries.TTFT_BUCKET_BOUNDS if b > limit), default=None)
        nearest = " or ".join(f"{b:g}" for b in (below, above) if b is not None)
        raise ValueError(
            f"{limit:g} s lies between two bounds of vLLM's time-to-first-token histogram, so interpolation, not "
            f"the data, would decide; use {nearest}"
        )
