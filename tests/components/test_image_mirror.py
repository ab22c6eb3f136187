"""The stack's Artifact Registry mirror of Docker Hub, and every image the nodes pull, as each preview declares."""

from __future__ import annotations

from typing import Any

import pytest

from components.image_mirror import ImageMirrorArgs
from llm_mesh.plan.config import ConfigError, docker_hub_path, parse_stack_config
from llm_mesh.plan.images import through_mirror
from tests.conftest import STACKS
from tests.helpers import PUSHED_FILES, prop, resource, served_model, version

REPOSITORY = "gcp:artifactregistry/repository:Repository"


def pulled_images(document: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for step in document["steps"]:
        walk(step.get("newState", {}).get("inputs", {}))
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_nodes_pull_docker_hub_images_through_the_stacks_remote_repository(
    previews: dict[str, Any], stack: str
) -> None:
    repository = resource(previews[stack], REPOSITORY, "images-dockerhub")["inputs"]
    assert repository["mode"] == "REMOTE_REPOSITORY" and repository["format"] == "DOCKER"
    assert repository["remoteRepositoryConfig"]["dockerRepository"] == {"publicRepository": "DOCKER_HUB"}
    host = f"{repository['location']}-docker.pkg.dev/{repository['project']}/{repository['repositoryId']}"
    assert repository["repositoryId"] == f"llm-mesh-{stack}-dockerhub"
    images = pulled_images(previews[stack])
    assert images, "the plan runs containers"
    for image in images:
        assert docker_hub_path(image) is None, f"{image} is pulled from Docker Hub"
        assert image.startswith((host + "/", "gcr.io/gke-release/")), image
    for chart in ("istiod-1-31", "istio-cni"):
        release = resource(previews[stack], "kubernetes:helm.sh/v3:Release", f"istio-{chart}")
        assert prop(release, "values.global.hub") == f"{host}/istio"


def test_prod_images_keep_their_digests_through_the_mirror(previews: dict[str, Any]) -> None:
    vllm = [i for i in pulled_images(previews["prod"]) if "/vllm/vllm-openai@" in i]
    assert vllm == [
        "us-central1-docker.pkg.dev/llm-mesh-prod/llm-mesh-prod-dockerhub/vllm/vllm-openai"
        "@sha256:0a51ea5b4ae2dc5d81890e5173f54203d2a3ae0cfffe51b8fd2afd4391bfd967"
    ]


def prod_config(**cluster: Any) -> dict[str, Any]:
    digest = "@sha256:" + "ab" * 32
    return {
        "environment": "prod",
        "gcp": {"project": "llm-mesh-test"},
        "cluster": cluster,
        "inference": {"image": "vllm/vllm-openai" + digest},
        "modelStore": {"serverImage": "nginxinc/nginx-unprivileged" + digest},
        "gateway": {"tlsCredentialName": "tls"},
        "models": [served_model(stable=version("v1", files=PUSHED_FILES))],
        "observability": {"alerts": {"emails": ["oncall@example.com"]}},
    }


def test_prod_refuses_to_pull_from_docker_hub_without_the_mirror() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(prod_config(imageMirror=False))
    assert caught.value.problems == [
        "llm-mesh:cluster.imageMirror = False: prod would pull inference.image, modelStore.serverImage, "
        "observability.collectorImage (and Istio) from Docker Hub, whose anonymous pull limit on the one Cloud NAT "
        "address stalls a scale-up; set it true (an Artifact Registry remote repository)"
    ]
    assert parse_stack_config(prod_config()).cluster.image_mirror, "on by default"
    staging = {**prod_config(imageMirror=False), "environment": "staging"}
    assert not parse_stack_config(staging).cluster.image_mirror, "outside prod, validate warns (LM0125)"


def test_without_the_mirror_no_repository_and_no_rewrite() -> None:
    config = parse_stack_config({**prod_config(imageMirror=False), "environment": "staging"})
    assert ImageMirrorArgs.from_config(config, "staging") is None
    assert through_mirror(config, None) is config
    mirrored = through_mirror(parse_stack_config(prod_config()), "europe-west4-docker.pkg.dev/p/r")
    assert mirrored.inference.image.startswith("europe-west4-docker.pkg.dev/p/r/vllm/vllm-openai@sha256:")
    assert mirrored.models[0].stable.image is None, "a track without its own image keeps the default"
