"""telemetry.istio.io/v1: Telemetry (tracing sample rate, access logs)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from llm_mesh.mesh.base import IstioModel, IstioObject, Percentage, WorkloadSelector

TELEMETRY = "telemetry.istio.io/v1"


class ProviderRef(IstioModel):
    name: str = Field(min_length=1)


class Tracing(IstioModel):
    providers: list[ProviderRef] | None = None
    random_sampling_percentage: Percentage | None = None


class AccessLogging(IstioModel):
    providers: list[ProviderRef] | None = None
    disabled: bool | None = None


class TelemetrySpec(IstioModel):
    selector: WorkloadSelector | None = None
    tracing: list[Tracing] | None = None
    access_logging: list[AccessLogging] | None = None


class Telemetry(IstioObject):
    api_version: ClassVar[str] = TELEMETRY
    kind: ClassVar[str] = "Telemetry"
    spec: TelemetrySpec
