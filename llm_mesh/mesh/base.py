"""What every typed Istio object shares: strict models, Istio's camelCase field names, durations, metadata."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class IstioModel(BaseModel):
    """Unknown fields are errors: Istio would drop them silently and the intent would be lost."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    def wire(self) -> dict[str, Any]:
        """The object as Istio reads it: camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def duration_seconds(value: str) -> float:
    """Seconds in an Istio duration ('30s', '1m30s', '250ms'); ValueError when it is not one."""
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"{value!r} is not a duration; write e.g. '30s', '1m30s' or '250ms'")
    return sum(float(n) * _SECONDS[u] for n, u in parts)


def _duration(value: str) -> str:
    if duration_seconds(value) < 1e-3:
        raise ValueError(f"{value!r} is shorter than Istio's minimum of 1ms")
    return value


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(f"{value!r} is not a DNS label (lowercase letters, digits, '-', at most 63)")
    return value


Duration = Annotated[str, AfterValidator(_duration)]
DnsLabel = Annotated[str, AfterValidator(_dns_label)]
Percentage = Annotated[float, Field(ge=0, le=100)]


class ObjectMeta(IstioModel):
    name: DnsLabel
    namespace: DnsLabel
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class WorkloadSelector(IstioModel):
    match_labels: dict[str, str] = Field(min_length=1)


class IstioObject(IstioModel):
    """A whole Istio resource: renders to the manifest Kubernetes stores."""

    api_version: ClassVar[str]
    kind: ClassVar[str]
    metadata: ObjectMeta

    def manifest(self) -> dict[str, Any]:
        body = self.wire()
        return {"apiVersion": self.api_version, "kind": self.kind, **body}

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.metadata.namespace}/{self.metadata.name}"
