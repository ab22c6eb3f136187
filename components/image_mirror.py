"""ImageMirror: an Artifact Registry remote repository of Docker Hub, in the cluster's region, that nodes pull
Docker Hub's images through (llm_mesh.plan.images says which images and under which paths)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from llm_mesh.plan.config import StackConfig
from llm_mesh.plan.gcp_names import cluster_name
from llm_mesh.plan.images import mirror_host, repository_id


@dataclass(frozen=True)
class ImageMirrorArgs:
    project: str
    region: str
    repository_id: str

    @classmethod
    def from_config(cls, config: StackConfig, stack: str) -> ImageMirrorArgs | None:
        """None when the stack pulls from the registries themselves (cluster.imageMirror: false)."""
        if not config.cluster.image_mirror:
            return None
        return cls(config.gcp.project, config.gcp.region, repository_id(cluster_name(config, stack)))

    @property
    def host(self) -> str:
        return mirror_host(self.project, self.region, self.repository_id)


class ImageMirror(pulumi.ComponentResource):
    """The repository alone: the nodes' service account reads it through its project-wide
    roles/artifactregistry.reader (components.cluster.NODE_ROLES)."""

    def __init__(self, name: str, args: ImageMirrorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:images:ImageMirror", name, None, opts)
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-dockerhub",
            project=args.project,
            location=args.region,
            repository_id=args.repository_id,
            format="DOCKER",
            mode="REMOTE_REPOSITORY",
            description="Docker Hub, cached for the cluster's nodes (llm-mesh)",
            remote_repository_config=gcp.artifactregistry.RepositoryRemoteRepositoryConfigArgs(
                description="Docker Hub",
                docker_repository=gcp.artifactregistry.RepositoryRemoteRepositoryConfigDockerRepositoryArgs(
                    public_repository="DOCKER_HUB"
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.host = args.host
        self.register_outputs({"host": self.host})
