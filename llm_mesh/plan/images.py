"""Where the nodes pull each image from: Docker Hub's images through an Artifact Registry remote repository of the
stack's, in the cluster's region (no anonymous pull limit on the Cloud NAT address, a copy cached in-region).

A remote repository serves `<host>/<Docker Hub path>`, with Docker Hub's implicit `library/` for official images.
Images of other registries (gcr.io, registry.k8s.io) are pulled from where they are.
"""

from __future__ import annotations

from llm_mesh.plan.config import ModelVersion, ServedModel, StackConfig, docker_hub_path

# The Helm charts' default image hub for Istio's proxies, istiod and istio-cni.
ISTIO_HUB = "docker.io/istio"


def repository_id(cluster_name: str) -> str:
    """The remote repository's id: one per cluster, so that two stacks of a project never share a cache."""
    return f"{cluster_name}-dockerhub"


def mirror_host(project: str, region: str, repository: str) -> str:
    return f"{region}-docker.pkg.dev/{project}/{repository}"


def pulled_through(image: str, host: str | None) -> str:
    """The reference the nodes pull: through the mirror when it is Docker Hub's and there is a mirror."""
    path = docker_hub_path(image)
    return image if host is None or path is None else f"{host}/{path}"


def istio_hub(host: str | None) -> str:
    """The hub Istio's charts pull proxyv2, pilot and install-cni from (`global.hub`)."""
    return ISTIO_HUB if host is None else f"{host}/{ISTIO_HUB.removeprefix('docker.io/')}"


def through_mirror(config: StackConfig, host: str | None) -> StackConfig:
    """The stack's config with every Docker Hub image it runs pulled through the mirror (what components read)."""
    if host is None:
        return config

    def version(v: ModelVersion) -> ModelVersion:
        return v if v.image is None else v.model_copy(update={"image": pulled_through(v.image, host)})

    def model(m: ServedModel) -> ServedModel:
        return m.model_copy(
            update={
                "stable": version(m.stable),
                "canary": m.canary and version(m.canary),
                "mirror": m.mirror and m.mirror.model_copy(update={"version": version(m.mirror.version)}),
            }
        )

    inference = config.inference
    return config.model_copy(
        update={
            "inference": inference.model_copy(
                update={
                    "image": pulled_through(inference.image, host),
                    "metrics_adapter_image": pulled_through(inference.metrics_adapter_image, host),
                }
            ),
            "model_store": config.model_store.model_copy(
                update={"server_image": pulled_through(config.model_store.server_image, host)}
            ),
            "observability": config.observability.model_copy(
                update={"collector_image": pulled_through(config.observability.collector_image, host)}
            ),
            "models": [model(m) for m in config.models],
        }
    )
