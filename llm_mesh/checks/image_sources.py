"""Where the nodes pull each image from. Docker Hub admits a limited number of anonymous pulls per address, and a
private cluster's nodes all share the Cloud NAT address: a scale-up of many nodes stalls on it, and GKE's image
streaming never applies to a Docker Hub image. Code: LM0125 a container, or an Istio chart's hub, pulled straight
from Docker Hub (error in prod, warning elsewhere); the stack's cluster.imageMirror sends them through Artifact
Registry instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from llm_mesh.checks.findings import Finding
from llm_mesh.checks.kube_objects import HELM_RELEASE
from llm_mesh.checks.pod_security import POD_TEMPLATES
from llm_mesh.engine.readers import EngineResource
from llm_mesh.plan.config import docker_hub_path
from llm_mesh.plan.images import ISTIO_HUB  # what the released charts pull from when the values name no hub

# Istio's charts that run images of their own hub (the gateway's proxy comes from istiod's injection template).
ISTIO_IMAGE_CHARTS = {"istiod", "cni"}
FIX = "set cluster.imageMirror: true, which pulls them through the stack's Artifact Registry remote repository"


def image_source_findings(resources: list[EngineResource], environment: str) -> list[Finding]:
    severity: Literal["error", "warning"] = "error" if environment == "prod" else "warning"
    findings = []
    for key, container, image in _pod_images(resources):
        if docker_hub_path(image) is not None:
            message = f"container {container!r} pulls {image} straight from Docker Hub"
            findings.append(Finding("LM0125", severity, key, message, FIX))
    for r in resources:
        if r.type != HELM_RELEASE or r.inputs.get("chart") not in ISTIO_IMAGE_CHARTS:
            continue
        hub = str(((r.inputs.get("values") or {}).get("global") or {}).get("hub") or ISTIO_HUB)
        if docker_hub_path(f"{hub}/proxyv2") is not None:
            key = f"Release/{r.inputs.get('namespace', 'default')}/{r.inputs.get('name') or r.name}"
            findings.append(Finding("LM0125", severity, key, f"pulls Istio's images from Docker Hub ({hub})", FIX))
    return findings


def _pod_images(resources: list[EngineResource]) -> Iterator[tuple[str, str, str]]:
    """Each container's (init containers' too) workload key, name and image."""
    for r in resources:
        if r.type not in POD_TEMPLATES:
            continue
        meta: Mapping[str, Any] = r.inputs.get("metadata") or {}
        key = f"{r.inputs.get('kind')}/{meta.get('namespace', '')}/{meta.get('name', '')}"
        pod = ((r.inputs.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            if isinstance(container.get("image"), str):
                yield key, str(container.get("name", "")), container["image"]
