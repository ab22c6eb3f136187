"""telemetry.istio.io/v1: Telemetry (tracing sample rate and span tags, access logs)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from llm_mesh.mesh.base import IstioModel, IstioObject, Percentage, WorkloadSelector

TELEMETRY = "telemetry.istio.io/v1"


class ProviderRef(IstioModel):
    name: str = Field(min_length=1)


class LiteralTag(IstioModel):
    value: str


class EnvironmentTag(IstioModel):
    """The value of one of the proxy's environment variables; no tag at all when it is unset and no default."""

    name: str = Field(min_length=1)
    default_value: str | None = None


class HeaderTag(IstioModel):
    name: str = Field(min_length=1)
    default_value: str | None = None


class CustomTag(IstioModel):
    """One span tag: exactly one of a literal, an environment variable of the proxy, or a request header."""

    literal: LiteralTag | None = None
    environment: EnvironmentTag | None = None
    header: HeaderTag | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CustomTag:
        if sum(kind is not None for kind in (self.literal, self.environment, self.header)) != 1:
            raise ValueError("a custom tag takes exactly one of literal, environment or header")
        return self


class Tracing(IstioModel):
    providers: list[ProviderRef] | None = None
    random_sampling_percentage: Percentage | None = None
    custom_tags: dict[str, CustomTag] | None = None
    disable_span_reporting: bool | None = None


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
