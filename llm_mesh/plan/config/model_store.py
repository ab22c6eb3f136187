"""The stack config's `modelStore` section: the bucket the weights live in and how S3 sources are read."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from llm_mesh.plan.config.fields import ConfigModel, Image, Name


class S3Import(ConfigModel):
    """How the Storage Transfer Service reads `s3://` sources: an IAM role, or access keys kept as secrets."""

    role_arn: str | None = Field(default=None, pattern=r"^arn:aws:iam::\d{12}:role/.+$")
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    # An S3-compatible registry other than AWS: its endpoint, region, and the transfer agent pool that reaches it.
    endpoint: str | None = None
    region: str | None = None
    agent_pool: str | None = None

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> S3Import:
        keys = (self.access_key_id is not None, self.secret_access_key is not None)
        if keys[0] != keys[1]:
            raise ValueError("set both accessKeyId and secretAccessKey (as secrets), or neither")
        if self.endpoint is None and self.role_arn is None and not keys[0]:
            raise ValueError("AWS S3 needs roleArn or accessKeyId/secretAccessKey")
        if self.endpoint is not None and self.agent_pool is None:
            raise ValueError("an S3-compatible endpoint is reached through transfer agents: set agentPool")
        return self


class ModelStoreConfig(ConfigModel):
    # None: "<project>-<stack>-models", which is unique per project and stack.
    bucket_name: str | None = Field(default=None, pattern=r"^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$")
    location: str | None = None
    kms_key_name: str | None = Field(
        default=None, pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$"
    )
    noncurrent_version_retention_days: int = Field(default=30, ge=1)
    server_image: Image = "nginxinc/nginx-unprivileged:1.30.5-alpine"
    namespace: Name = "model-store"
    replicas: int = Field(default=2, ge=1)
    s3: S3Import | None = None
