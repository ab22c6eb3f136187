"""`llm-mesh models verify` against real HTTP endpoints on loopback: moto's S3 server and a GCS emulator."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from tests.conftest import ROOT, Cli, CliResult
from tests.helpers import FIT

CONFIG = b'{"architectures": ["LlamaForCausalLM"]}'
WEIGHTS = bytes(range(256)) * 4096  # 1 MiB
TOKENIZER = b'{"version": "1.0"}'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    client.create_bucket(Bucket="registry")
    for key, body in {
        "llama/v1/config.json": CONFIG,
        "llama/v1/model.safetensors": WEIGHTS,
        "llama/v1/tokenizer.json": TOKENIZER,
        "llama/v2/config.json": CONFIG,
        "llama/v2/model.safetensors": WEIGHTS[: len(WEIGHTS) // 2],  # truncated upload
        "llama/v3/config.json": CONFIG,
        "llama/v3/model.safetensors": WEIGHTS[::-1],  # same size, other bytes
    }.items():
        client.put_object(Bucket="registry", Key=key, Body=body)
    yield endpoint
    server.stop()


def project_with(tmp_path: Path, models: list[dict[str, Any]]) -> Path:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks").mkdir()
    config = {
        "llm-mesh:environment": "dev",
        "llm-mesh:gcp": {"project": "llm-mesh-test"},
        "llm-mesh:modelStore": {"s3": {"roleArn": "arn:aws:iam::123456789012:role/transfer"}},
        "llm-mesh:models": [{**FIT, **model} for model in models],
    }
    (tmp_path / "stacks" / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


def files(*entries: tuple[str, bytes | None]) -> list[dict[str, Any]]:
    return [
        {"path": path, "size": len(body), "sha256": sha(body)} if body is not None else {"path": path}
        for path, body in entries
    ]


Verify = Callable[..., CliResult]


@pytest.fixture
def verify(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Verify:
    """`llm-mesh --project PROJECT models verify --stack test --s3-endpoint-url ENDPOINT ...`, in this process."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # A process of its own would start without the credentials boto3's default session kept from earlier tests.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)

    def run(project: Path, endpoint: str, *extra: str) -> CliResult:
        return cli(
            "--project", str(project), "models", "verify", "--stack", "test", "--s3-endpoint-url", endpoint, *extra
        )

    return run


def test_present_artifacts_pass(s3_endpoint: str, tmp_path: Path, verify: Verify) -> None:
    stable = {
        "version": "v1",
        "source": "s3://registry/llama/v1/",
        "files": files(("config.json", CONFIG), ("model.safetensors", WEIGHTS), ("tokenizer.json", None)),
    }
    result = verify(project_with(tmp_path, [{"name": "llama", "stable": stable}]), s3_endpoint)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 of 3 files ok" in result.stdout


def test_missing_truncated_and_wrong_checksum_are_each_named(s3_endpoint: str, tmp_path: Path, verify: Verify) -> None:
    models = [
        {
            "name": "llama",
            "stable": {"version": "v1", "source": "s3://registry/llama/v1/", "files": files(("config.json", CONFIG), ("generation_config.json", None), ("model.safetensors", WEIGHTS))},
            "canary": {"version": "v2", "source": "s3://registry/llama/v2/", "files": files(("model.safetensors", WEIGHTS))},
            "canaryWeight": 10,
            "mirror": {"version": {"version": "v3", "source": "s3://registry/llama/v3", "files": files(("model.safetensors", WEIGHTS))}},
        }
    ]  # fmt: skip
    project = project_with(tmp_path, models)
    result = verify(project, s3_endpoint, "--format", "json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    statuses = {(f["track"], f["file"]): (f["status"], f["detail"]) for f in report["files"]}
    assert statuses[("stable", "config.json")][0] == "ok"
    assert statuses[("stable", "generation_config.json")] == (
        "missing",
        "s3://registry/llama/v1/generation_config.json does not exist",
    )
    assert statuses[("canary", "model.safetensors")] == (
        "size differs",
        f"{len(WEIGHTS) // 2} bytes, config says {len(WEIGHTS)}",
    )
    status, detail = statuses[("mirror", "model.safetensors")]
    assert status == "sha256 differs" and detail.startswith(sha(WEIGHTS[::-1]))
    assert report["problems"] == 3
    text = verify(project, s3_endpoint)
    assert "2 of 5 files ok; 3 missing or different" in text.stdout
    assert "generation_config.json" in text.stdout and "missing" in text.stdout


def test_unreachable_endpoint_is_one_line_not_a_table(tmp_path: Path, verify: Verify) -> None:
    stable = {"version": "v1", "source": "s3://registry/llama/v1/", "files": files(("model.safetensors", None))}
    result = verify(project_with(tmp_path, [{"name": "llama", "stable": stable}]), "http://127.0.0.1:9")
    assert result.returncode == 2, "a store nothing can be read from is unusable input, not a finding per file"
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: s3://registry: cannot be reached (") and line.endswith(
        "check the endpoint (--s3-endpoint-url) and the network"
    )


@pytest.fixture(scope="module")
def gcs_emulator() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    host = f"http://127.0.0.1:{server._api._httpd.server_port}"  # the emulator exposes its port no other way
    patch = pytest.MonkeyPatch()
    patch.setenv("STORAGE_EMULATOR_HOST", host)
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket = storage.Client(project="llm-mesh-test", credentials=AnonymousCredentials()).create_bucket(
        "llm-mesh-test-test-models"
    )
    bucket.blob("llama/v1/config.json").upload_from_string(CONFIG)
    yield host
    patch.undo()
    server.stop()


@pytest.mark.usefixtures("gcs_emulator")
def test_default_source_is_the_model_store_bucket(tmp_path: Path, verify: Verify) -> None:
    stable = {"version": "v1", "files": files(("config.json", CONFIG), ("model.safetensors", None))}
    result = verify(
        project_with(tmp_path, [{"name": "llama", "stable": stable}]), "http://127.0.0.1:9", "--format", "json"
    )
    report = json.loads(result.stdout)
    rows = {f["file"]: f for f in report["files"]}
    assert rows["config.json"]["source"] == "gs://llm-mesh-test-test-models/llama/v1/"
    assert rows["config.json"]["status"] == "ok"
    assert rows["model.safetensors"]["status"] == "missing"
    assert result.returncode == 1
