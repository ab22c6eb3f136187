"""Preflight of model artifacts: every file a served version needs exists at its source, with the size and
sha256 that config states. S3 sources are read with boto3, GCS sources with the Cloud Storage client.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from llm_mesh.errors import CommandError
from llm_mesh.plan.config import ArtifactFile, StackConfig
from llm_mesh.plan.object_urls import ObjectUrl

Status = Literal["ok", "missing", "size differs", "sha256 differs", "unreadable"]
CHUNK = 8 << 20


@dataclass(frozen=True)
class VersionSource:
    model: str
    track: str
    version: str
    url: str  # s3://bucket/prefix/ or gs://bucket/prefix/
    files: list[ArtifactFile]

    @property
    def location(self) -> ObjectUrl:
        return ObjectUrl.parse(self.url)


@dataclass(frozen=True)
class FileCheck:
    source: VersionSource
    file: ArtifactFile
    status: Status
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class ObjectStore(Protocol):
    def size(self, key: str) -> int | None:
        """The object's size, or None when it does not exist."""

    def chunks(self, key: str) -> Iterator[bytes]:
        """The object's bytes, streamed."""


def sources(config: StackConfig, stack: str) -> list[VersionSource]:
    """Each version the stack serves (stable, canary, mirror) and where its artifacts come from."""
    found = []
    bucket = config.bucket_name(stack)
    for model in config.models:
        for track, version in model.tracks():
            url = version.source or f"gs://{bucket}/{model.name}/{version.version}/"
            found.append(VersionSource(model.name, track, version.version, url, list(version.files)))
    return found


def verify(checks: list[VersionSource], store_for: Callable[[VersionSource], ObjectStore]) -> list[FileCheck]:
    results = []
    for source in checks:
        store = store_for(source)
        for artifact in source.files:
            results.append(_check(store, source, artifact))
    return results


def _check(store: ObjectStore, source: VersionSource, artifact: ArtifactFile) -> FileCheck:
    key = source.location.key(artifact.path)
    try:
        size = store.size(key)
        if size is None:
            return FileCheck(source, artifact, "missing", f"{source.url.rstrip('/')}/{artifact.path} does not exist")
        if artifact.size is not None and size != artifact.size:
            return FileCheck(source, artifact, "size differs", f"{size} bytes, config says {artifact.size}")
        if artifact.sha256 is not None:
            digest = hashlib.sha256()
            for chunk in store.chunks(key):
                digest.update(chunk)
            if digest.hexdigest() != artifact.sha256:
                return FileCheck(
                    source, artifact, "sha256 differs", f"{digest.hexdigest()}, config says {artifact.sha256}"
                )
    except Exception as error:
        # No credentials, or a store that does not answer, concern every file: one line for the user, not a table.
        problem = store_problem(error)
        if problem:
            raise StoreUnusable(f"{source.location.scheme}://{source.location.bucket}: {problem}") from None
        # Anything else (access to one object denied, say) is that file's finding.
        return FileCheck(source, artifact, "unreadable", f"{type(error).__name__}: {error}")
    return FileCheck(source, artifact, "ok", f"{size} bytes")


class S3Store:
    def __init__(self, bucket: str, endpoint_url: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url)

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def chunks(self, key: str) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        yield from iter(lambda: body.read(CHUNK), b"")


class GcsStore:
    def __init__(self, bucket: str, project: str | None = None) -> None:
        # google.api_core warns on import that a future release will drop this Python; not this tool's news.
        warnings.filterwarnings("ignore", category=FutureWarning, module="google.api_core")
        from google.cloud import storage

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(project=project or "emulator", credentials=AnonymousCredentials())
        else:
            client = storage.Client(project=project)
        self.bucket: Any = client.bucket(bucket)

    def size(self, key: str) -> int | None:
        blob = self.bucket.get_blob(key)
        return None if blob is None else int(blob.size)

    def chunks(self, key: str) -> Iterator[bytes]:
        with self.bucket.blob(key).open("rb") as stream:
            yield from iter(lambda: stream.read(CHUNK), b"")


class StoreUnusable(CommandError):
    """A store no file can be read from (no credentials, no answer); the message says what to do."""


def store_problem(error: Exception) -> str | None:
    """What to do about a client failure that concerns the whole store, or None for one about a single object."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError
    from google.auth.exceptions import DefaultCredentialsError

    if isinstance(error, DefaultCredentialsError):
        return (
            "no Google credentials; run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
        )
    if isinstance(error, NoCredentialsError):
        return "no AWS credentials; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if isinstance(error, (EndpointConnectionError, ConnectionError)) or "ConnectionError" in type(error).__name__:
        return f"cannot be reached ({error}); check the endpoint (--s3-endpoint-url) and the network"
    return None


def default_stores(project: str, s3_endpoint_url: str | None) -> Callable[[VersionSource], ObjectStore]:
    """One client per bucket, made on first use."""
    stores: dict[tuple[str, str], ObjectStore] = {}

    def store_for(source: VersionSource) -> ObjectStore:
        where = source.location
        key = (where.scheme, where.bucket)
        if key not in stores:
            try:
                stores[key] = (
                    S3Store(where.bucket, s3_endpoint_url) if where.scheme == "s3" else GcsStore(where.bucket, project)
                )
            except Exception as error:
                problem = store_problem(error)
                if problem is None:
                    raise
                raise StoreUnusable(f"{where.scheme}://{where.bucket}: {problem}") from None
        return stores[key]

    return store_for


def canary_problems(config: StackConfig, stack: str, model: str) -> list[str]:
    """`models verify` for the canary version alone, before a progression steps on weights that are not there.
    Raises StoreUnusable when the store cannot be read at all (credentials, endpoint)."""
    wanted = [s for s in sources(config, stack) if s.model == model and s.track == "canary"]
    results = verify(wanted, default_stores(config.gcp.project, None))
    return [f"canary artifact {r.file.path}: {r.status} ({r.detail})" for r in results if not r.ok]
