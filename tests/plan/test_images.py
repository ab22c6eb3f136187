"""Which images go through the stack's Artifact Registry mirror of Docker Hub, and under which path."""

from __future__ import annotations

import pytest

from llm_mesh.plan.config import docker_hub_path
from llm_mesh.plan.images import ISTIO_HUB, istio_hub, mirror_host, pulled_through, repository_id

HOST = "europe-west4-docker.pkg.dev/acme/llm-mesh-prod-dockerhub"
DIGEST = "@sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "path"),
    [
        ("vllm/vllm-openai" + DIGEST, "vllm/vllm-openai" + DIGEST),
        ("nginx:1.30", "library/nginx:1.30"),
        ("docker.io/otel/opentelemetry-collector-contrib:0.157.0", "otel/opentelemetry-collector-contrib:0.157.0"),
        ("docker.io/nginx", "library/nginx"),
        ("registry-1.docker.io/vllm/vllm-openai:v0.27.1", "vllm/vllm-openai:v0.27.1"),
        ("gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.15.2-gke.1", None),
        ("registry.k8s.io/gateway-api-inference-extension/epp:v1.5.0", None),
        ("localhost:5000/vllm", None),
        ("europe-west4-docker.pkg.dev/acme/own/vllm" + DIGEST, None),
    ],
)
def test_docker_hub_paths(image: str, path: str | None) -> None:
    assert docker_hub_path(image) == path


def test_only_docker_hub_images_change() -> None:
    assert pulled_through("vllm/vllm-openai" + DIGEST, HOST) == f"{HOST}/vllm/vllm-openai{DIGEST}"
    assert pulled_through("gcr.io/x/y:1", HOST) == "gcr.io/x/y:1"
    assert pulled_through("vllm/vllm-openai" + DIGEST, None) == "vllm/vllm-openai" + DIGEST
    assert istio_hub(HOST) == f"{HOST}/istio"
    assert istio_hub(None) == ISTIO_HUB == "docker.io/istio"


def test_the_mirror_is_the_clusters_own() -> None:
    assert mirror_host("acme", "europe-west4", repository_id("llm-mesh-prod")) == HOST
