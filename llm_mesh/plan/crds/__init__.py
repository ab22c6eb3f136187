"""The Gateway API and Inference Extension manifests vendored here (README.md: sources, tags, licence)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
GATEWAY_API_VERSION = "v1.5.1"
INFERENCE_EXTENSION_VERSION = "v1.0.2"
FILES = (f"gateway-api-{GATEWAY_API_VERSION}-standard.yaml", f"inference-extension-{INFERENCE_EXTENSION_VERSION}.yaml")


@functools.cache
def _parsed() -> tuple[dict[str, Any], ...]:
    manifests = []
    for file in FILES:
        with open(HERE / file) as f:
            manifests += [doc for doc in yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if doc]
    return tuple(manifests)


def inference_routing_manifests() -> list[dict[str, Any]]:
    """Every object of the vendored files, in their order (CRDs first, then the admission policy and binding)."""
    return list(_parsed())


def crd_schema(group: str, kind: str, version: str) -> dict[str, Any] | None:
    """The openAPIV3Schema of `kind` in `group` at `version`, as the vendored CRD serves it; None if none does."""
    for manifest in _parsed():
        spec = manifest.get("spec", {})
        if manifest["kind"] != "CustomResourceDefinition" or spec["group"] != group or spec["names"]["kind"] != kind:
            continue
        for served in spec["versions"]:
            if served["name"] == version and served.get("served"):
                schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
                return schema
    return None
