"""What every section of the stack config shares: the strict camelCase base model and the field types."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from llm_mesh.mesh.base import duration_seconds

NAMESPACE = "llm-mesh"

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# GKE's release registry publishes each build under a new `-gke.N` tag and never moves one: as fixed as a digest.
_GKE_RELEASE = re.compile(r"^gcr\.io/gke-release/[a-z0-9/_-]+:v[0-9.]+-gke\.[0-9]+$")


def image_pinned(image: str) -> bool:
    """A digest, or a GKE release build (which GKE's own add-ons reference by tag)."""
    return bool(_DIGEST.search(image) or _GKE_RELEASE.match(image))


DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")


def docker_hub_path(image: str) -> str | None:
    """The image's path on Docker Hub ('library/nginx@sha256:…'), or None when another registry serves it."""
    first, _, rest = image.partition("/")
    if rest and first in DOCKER_HUB_HOSTS:
        image = rest
    elif rest and ("." in first or ":" in first or first == "localhost"):
        return None  # a registry host: gcr.io/…, registry.k8s.io/…, localhost:5000/…
    return image if "/" in image else f"library/{image}"


_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
CIDR = r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$"


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError("use lowercase letters, digits and '-', starting with a letter, at most 40 characters")
    return value


def _image(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError("an image reference looks like 'registry/repo:tag' or 'registry/repo@sha256:<digest>'")
    return value


def max_not_below_min(what: Literal["Nodes", "Replicas"]) -> Any:
    """The validator of a range's upper bound, `max<what>`, refused when below `min<what>` (`maxNodes` under
    `minNodes`); assigned in the class body of a section with both fields."""

    def check(high: int, info: ValidationInfo) -> int:
        low = info.data.get(f"min_{what.lower()}")
        if low is not None and low > high:
            raise ValueError(f"max{what} must be at least min{what} ({low})")
        return high

    return field_validator(f"max_{what.lower()}")(check)


def _duration(value: str) -> str:
    duration_seconds(value)  # raises with the accepted forms
    return value


Name = Annotated[str, AfterValidator(_dns_label)]
Duration = Annotated[str, AfterValidator(_duration)]
Image = Annotated[str, AfterValidator(_image)]


class ConfigModel(BaseModel):
    """Strict and camelCase, as Pulumi config keys are written."""

    # validate_default: cross-field rules (min <= max) must also hold when one side is a default.
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, validate_default=True
    )
