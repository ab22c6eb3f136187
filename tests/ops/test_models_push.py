"""`llm-mesh models push`, in process, against real HTTP endpoints on loopback: moto's S3 server and a GCS
emulator (started once for the module), on a temporary project whose stack file has comments and an anchor."""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from llm_mesh.cli import main
from llm_mesh.engine.stackfile import Project, read_stack_settings
from llm_mesh.ops.models_push import PushError, conflict, files_entry, open_destination, plan_push, push
from llm_mesh.ops.stack_edit import StackFileEdit
from llm_mesh.plan.config import ConfigError, config_from_pulumi
from tests.conftest import ROOT

CONFIG = b'{"architectures": ["LlamaForCausalLM"]}\n'
WEIGHTS = bytes(range(256)) * (36 * 1024)  # 9 MiB: above 8 MiB, so a resumable (GCS) or multipart (S3) upload
TOKENIZER = b'{"version": "1.0"}'
FOLDER = {"config.json": CONFIG, "model.safetensors": WEIGHTS, "tokenizer/tokenizer.json": TOKENIZER}
STORE = "llm-mesh-test-test-models"

STACK = """\
# test: a small stack for `llm-mesh models push`.
config:
  llm-mesh:environment: dev
  llm-mesh:gcp:
    project: llm-mesh-test
  llm-mesh:modelStore:
    s3:
      roleArn: arn:aws:iam::123456789012:role/transfer  # the transfer job's role
  llm-mesh:models:
    - name: llama
      shape:
        preset: llama-3.1-8b
      contextLength: 8192
      stable:
        version: v1
        files: &llama-files
          - path: config.json
          - path: model.safetensors
      # The canary tries the next version on 10% of requests.
      canary:
        version: v2
        files: *llama-files
      canaryWeight: 10  # percent
      mirror:
        version:
          version: v3
        percentage: 5
    # A second model, without a canary yet.
    - name: mistral
      shape:
        preset: llama-3.1-8b
      contextLength: 8192
      stable:
        version: m1
# Pushed versions get their files listed here by the command.
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def listing(indent: int) -> str:
    """The `files:` items a push of FOLDER writes, at the indentation of the track's keys."""
    pad = " " * (indent + 2)
    return "".join(
        f"{pad}- path: {path}\n{pad}  size: {len(body)}\n{pad}  sha256: {sha(body)}\n"
        for path, body in sorted(FOLDER.items())
    )


def replaced(text: str, old: str, new: str) -> str:
    """`text` with `old` (which must occur exactly once) replaced: an exact expected diff."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


class Stores:
    """The buckets on the loopback servers: one S3 registry, one GCS registry and the stack's GCS store."""

    def __init__(self, s3_endpoint: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.s3_endpoint = s3_endpoint
        self.s3: Any = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        self.gcs: Any = storage.Client(project="llm-mesh-test", credentials=AnonymousCredentials())

    def create(self) -> None:
        self.s3.create_bucket(Bucket="registry")
        self.gcs.create_bucket("registry-gcs")
        self.gcs.create_bucket(STORE)

    def empty(self) -> None:
        for item in self.s3.list_objects_v2(Bucket="registry").get("Contents", []):
            self.s3.delete_object(Bucket="registry", Key=item["Key"])
        for bucket in ("registry-gcs", STORE):
            for blob in self.gcs.list_blobs(bucket):
                blob.delete()

    def objects(self) -> dict[str, tuple[bytes, dict[str, str]]]:
        """Every object, by URL: its bytes and metadata."""
        found = {}
        for item in self.s3.list_objects_v2(Bucket="registry").get("Contents", []):
            got = self.s3.get_object(Bucket="registry", Key=item["Key"])
            found[f"s3://registry/{item['Key']}"] = (got["Body"].read(), got["Metadata"])
        for bucket in ("registry-gcs", STORE):
            for blob in self.gcs.list_blobs(bucket):
                found[f"gs://{bucket}/{blob.name}"] = (blob.download_as_bytes(), blob.metadata or {})
        return found


def pushed(prefix: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    """The objects a push of FOLDER leaves under `prefix`."""
    return {f"{prefix}{path}": (body, {"sha256": sha(body)}) for path, body in FOLDER.items()}


@pytest.fixture(scope="module")
def servers() -> Iterator[Stores]:
    from gcp_storage_emulator.server import create_server

    # google.api_core warns on import that a future release will drop this Python.
    warnings.filterwarnings("ignore", category=FutureWarning, module="google.api_core")
    env = pytest.MonkeyPatch()
    env.setenv("AWS_ACCESS_KEY_ID", "test")
    env.setenv("AWS_SECRET_ACCESS_KEY", "test")
    env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    s3.start()
    host, port = s3.get_host_and_port()
    gcs = create_server("127.0.0.1", 0, in_memory=True)
    gcs.start()
    env.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{gcs._api._httpd.server_port}")  # its port, no other way
    stores = Stores(f"http://{host}:{port}")
    stores.create()
    yield stores
    env.undo()
    gcs.stop()
    s3.stop()


@pytest.fixture
def stores(servers: Stores) -> Stores:
    servers.empty()
    return servers


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (root / "stacks" / "Pulumi.test.yaml").write_text(STACK)
    monkeypatch.chdir(root)  # error lines name the stack file relative to here
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    weights = tmp_path / "weights"
    for path, body in FOLDER.items():
        (weights / path).parent.mkdir(parents=True, exist_ok=True)
        (weights / path).write_bytes(body)
    return weights


def run(project: Path, *args: str) -> int:
    """`llm-mesh models push --stack test ...` (a later --stack wins)."""
    return main(["--project", str(project), "models", "push", "--stack", "test", *args])


def stack_text(project: Path) -> str:
    return (project / "stacks" / "Pulumi.test.yaml").read_text()


def progress(output: str) -> list[str]:
    return re.sub(r"done in \d+\.\d s", "done in T s", output).splitlines()


SIZES = {
    "config.json": f"{len(CONFIG)} B",
    "model.safetensors": "9.0 MiB",
    "tokenizer/tokenizer.json": f"{len(TOKENIZER)} B",
}


def row(number: int, path: str, state: str) -> str:
    return f"  [{number}/3] {path:<24}  {SIZES[path]:>10}  {state}"


def upload_lines() -> list[str]:
    return [
        line
        for number, path in enumerate(sorted(FOLDER), 1)
        for line in (row(number, path, "uploading"), row(number, path, "done in T s"))
    ]


def test_push_to_the_model_store_records_the_files(
    stores: Stores, project: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(project, "--model", "mistral", "--version", "m1", str(folder)) == 0
    output = capsys.readouterr()
    assert output.err == ""
    assert progress(output.out) == [
        f"Pushing mistral m1 (3 files, 9.0 MiB) from {folder} to gs://{STORE}/mistral/m1/",
        *upload_lines(),
        "Recorded the files of mistral m1 (stable) in stacks/Pulumi.test.yaml",
    ]
    assert stores.objects() == pushed(f"gs://{STORE}/mistral/m1/")
    # The list goes after the track's last key; the file's last comment stays last.
    assert stack_text(project) == replaced(
        STACK, "        version: m1\n", "        version: m1\n        files:\n" + listing(8)
    )


def test_push_to_an_s3_registry_writes_the_source_and_unshares_the_list(
    stores: Stores, project: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--model", "llama", "--version", "v2", str(folder), "--to", "s3://registry/llama/v2"]
    assert run(project, *args, "--s3-endpoint-url", stores.s3_endpoint) == 0
    output = capsys.readouterr()
    assert output.err == ""
    assert progress(output.out) == [
        "note: canary v2 shared its file list with llama stable v1 through the alias *llama-files; "
        "now it has its own, and theirs is unchanged",
        f"Pushing llama v2 (3 files, 9.0 MiB) from {folder} to s3://registry/llama/v2/",
        *upload_lines(),
        "Recorded the files of llama v2 (canary) in stacks/Pulumi.test.yaml",
    ]
    assert stores.objects() == pushed("s3://registry/llama/v2/")
    # Only the canary changes: stable keeps its list and its anchor.
    assert stack_text(project) == replaced(
        STACK,
        "        files: *llama-files\n",
        "        files:\n" + listing(8) + "        source: s3://registry/llama/v2/\n",
    )


def test_push_to_a_gcs_registry_fixes_a_version_without_files(
    stores: Stores, project: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(project, "--model", "llama", "--version", "v3", str(folder), "--to", "gs://registry-gcs/llama/v3/") == 0
    assert capsys.readouterr().err == ""
    assert stores.objects() == pushed("gs://registry-gcs/llama/v3/")
    assert stack_text(project) == replaced(
        STACK,
        "          version: v3\n",
        "          version: v3\n          source: gs://registry-gcs/llama/v3/\n          files:\n" + listing(10),
    )


def test_pushing_the_anchor_holder_leaves_the_alias_user_its_list(
    stores: Stores, project: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(project, "--model", "llama", "--version", "v1", str(folder)) == 0
    assert "note: stable v1 shared its file list with llama canary v2 through the alias *llama-files" in (
        capsys.readouterr().out
    )
    assert stores.objects() == pushed(f"gs://{STORE}/llama/v1/")
    # The anchor moves to the canary, which keeps the list it had; the comment above `canary:` stays there.
    old = "files: &llama-files\n          - path: config.json\n          - path: model.safetensors\n"
    after = stack_text(project)
    assert after == replaced(
        replaced(STACK, "        " + old, "        files:\n" + listing(8)),
        "        files: *llama-files\n",
        "        " + old,
    )
    before, now = (yaml.safe_load(t)["config"]["llm-mesh:models"][0] for t in (STACK, after))
    assert (
        now["canary"]["files"] == before["canary"]["files"] == [{"path": "config.json"}, {"path": "model.safetensors"}]
    )


def test_the_same_files_again_change_nothing(
    stores: Stores, project: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(project, "--model", "mistral", "--version", "m1", str(folder)) == 0
    capsys.readouterr()
    stack = project / "stacks" / "Pulumi.test.yaml"
    written, objects = stack.stat(), stores.objects()
    assert run(project, "--model", "mistral", "--version", "m1", str(folder)) == 0
    output = capsys.readouterr()
    assert output.err == ""
    assert output.out.splitlines() == [
        f"mistral m1 (3 files, 9.0 MiB) is already at gs://{STORE}/mistral/m1/ and recorded in "
        "stacks/Pulumi.test.yaml: nothing to do"
    ]
    assert stack.stat().st_mtime_ns == written.st_mtime_ns and stores.objects() == objects


class FailingAfter:
    """A destination whose uploads fail after the first `count`: a network that drops mid-push."""

    def __init__(self, real: Any, count: int) -> None:
        self.real, self.count = real, count

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def upload(self, local: Path, key: str, sha256: str) -> None:
        if self.count == 0:
            raise ConnectionError("connection reset by peer")
        self.count -= 1
        self.real.upload(local, key, sha256)


def test_an_interrupted_push_leaves_the_stack_file_and_resumes(
    stores: Stores, project: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Someone else's upload (no sha256 metadata) of the same bytes counts: the command hashes it.
    stores.gcs.bucket(STORE).blob("mistral/m1/tokenizer/tokenizer.json").upload_from_string(TOKENIZER)

    def flaky(url: str, project_id: str, endpoint: str | None) -> Any:
        return FailingAfter(open_destination(url, project_id, endpoint), 1)

    plan = plan_push(Project.find(project), "test", "mistral", "m1", folder, destination_for=flaky)
    assert [f["path"] for f in plan.to_upload] == ["config.json", "model.safetensors"]
    failure = "model.safetensors: upload failed (ConnectionError: connection reset by peer); stacks/Pulumi.test.yaml is unchanged"
    with pytest.raises(PushError, match=re.escape(failure)) as raised:
        push(plan, lambda line: None)
    assert raised.value.code == 1
    assert stack_text(project) == STACK
    assert set(stores.objects()) == {
        f"gs://{STORE}/mistral/m1/{path}" for path in ("config.json", "tokenizer/tokenizer.json")
    }
    assert run(project, "--model", "mistral", "--version", "m1", str(folder)) == 0
    assert progress(capsys.readouterr().out)[1:] == [
        row(1, "config.json", "already there"),
        row(2, "model.safetensors", "uploading"),
        row(2, "model.safetensors", "done in T s"),
        row(3, "tokenizer/tokenizer.json", "already there"),
        "Recorded the files of mistral m1 (stable) in stacks/Pulumi.test.yaml",
    ]
    assert stack_text(project) == replaced(
        STACK, "        version: m1\n", "        version: m1\n        files:\n" + listing(8)
    )


@dataclass
class Setup:
    project: Path
    folder: Path
    tmp: Path
    env: pytest.MonkeyPatch
    stores: Stores


def missing_folder(s: Setup) -> tuple[list[str], str]:
    nowhere = s.tmp / "nowhere"
    return ["--model", "mistral", "--version", "m1", str(nowhere)], (
        f"DIR {nowhere}: no such folder; name the folder that holds the version's files"
    )


def file_for_folder(s: Setup) -> tuple[list[str], str]:
    file = s.folder / "config.json"
    return ["--model", "mistral", "--version", "m1", str(file)], (
        f"DIR {file}: not a folder; name the folder that holds the version's files"
    )


def empty_folder(s: Setup) -> tuple[list[str], str]:
    (s.tmp / "empty" / "sub").mkdir(parents=True)
    return ["--model", "mistral", "--version", "m1", str(s.tmp / "empty")], (
        f"DIR {s.tmp / 'empty'}: holds no files; name the folder that holds the version's files"
    )


def dangling_link(s: Setup) -> tuple[list[str], str]:
    # Tests run as root, which reads a chmod 000 file; a link to nothing cannot be read by anyone.
    (s.folder / "model-00002.safetensors").symlink_to(s.tmp / "gone")
    return ["--model", "mistral", "--version", "m1", str(s.folder)], (
        f"DIR {s.folder}: cannot read model-00002.safetensors: a symbolic link to a missing file; "
        "fix it or remove it, then push again"
    )


def fifo(s: Setup) -> tuple[list[str], str]:
    os.mkfifo(s.folder / "tokenizer" / "pipe")
    return ["--model", "mistral", "--version", "m1", str(s.folder)], (
        f"DIR {s.folder}: cannot read tokenizer/pipe: not a regular file; remove it from the folder, then push again"
    )


def unknown_model(s: Setup) -> tuple[list[str], str]:
    return ["--model", "gemma", "--version", "g1", str(s.folder)], (
        "--model gemma: stacks/Pulumi.test.yaml has no model 'gemma' in llm-mesh:models (models: llama, mistral); "
        "add it first"
    )


def unknown_version(s: Setup) -> tuple[list[str], str]:
    return ["--model", "llama", "--version", "v9", str(s.folder)], (
        "--version v9: no track of llama names version 'v9' (stable v1, canary v2, mirror v3); "
        "set a track's version to v9 in stacks/Pulumi.test.yaml first"
    )


def recorded_other_files(s: Setup) -> tuple[list[str], str]:
    stack = s.project / "stacks" / "Pulumi.test.yaml"
    old = f"          - path: model.safetensors\n            size: {len(WEIGHTS) - 1}\n"
    stack.write_text(replaced(STACK, "        version: m1\n", f"        version: m1\n        files:\n{old}"))
    return ["--model", "mistral", "--version", "m1", str(s.folder)], (
        "--version m1: stacks/Pulumi.test.yaml already records other files for mistral stable m1 "
        "(config.json is in the folder but not in the stack file; and 2 more); "
        "a version's files do not change: push them as a new version and point a track at it; if the list came "
        "with a copied stack (the shipped prod stack's lists are an example registry's), it is not yours: delete "
        "that files: list, and every track's that shares it, and push again"
    )


def destination_holds_other_files(s: Setup) -> tuple[list[str], str]:
    s.stores.gcs.bucket(STORE).blob("mistral/m1/model.safetensors").upload_from_string(WEIGHTS[::-1])
    return ["--model", "mistral", "--version", "m1", str(s.folder)], (
        f"gs://{STORE}/mistral/m1/: already holds other files for mistral m1 (model.safetensors: sha256 "
        f"{sha(WEIGHTS)[:12]}... in the folder, {sha(WEIGHTS[::-1])[:12]}... at the destination); "
        "a version's files do not change: push them as a new version and point a track at it"
    )


def store_not_created(s: Setup) -> tuple[list[str], str]:
    (s.project / "stacks" / "Pulumi.fresh.yaml").write_text(STACK)
    return ["--stack", "fresh", "--model", "mistral", "--version", "m1", str(s.folder)], (
        "gs://llm-mesh-test-fresh-models: the stack's model store does not exist yet (the first `pulumi up` "
        "creates it); create it first, or push to a registry bucket with --to gs://BUCKET/PREFIX or s3://BUCKET/PREFIX"
    )


def registry_bucket_missing(s: Setup) -> tuple[list[str], str]:
    return ["--model", "llama", "--version", "v2", str(s.folder), "--to", "s3://nosuch/llama/v2", "--s3-endpoint-url", s.stores.s3_endpoint], (
        "--to s3://nosuch/llama/v2/: bucket s3://nosuch does not exist; create it or name another"
    )  # fmt: skip


def not_a_bucket_url(s: Setup) -> tuple[list[str], str]:
    return ["--model", "llama", "--version", "v2", str(s.folder), "--to", "registry/llama/v2"], (
        "--to registry/llama/v2: not a bucket location; use gs://BUCKET/PREFIX or s3://BUCKET/PREFIX"
    )


def imported_version_without_to(s: Setup) -> tuple[list[str], str]:
    stack = s.project / "stacks" / "Pulumi.test.yaml"
    source = "        source: s3://registry/llama/v2/\n"
    stack.write_text(replaced(STACK, "        version: v2\n", "        version: v2\n" + source))
    return ["--model", "llama", "--version", "v2", str(s.folder)], (
        "--version v2: llama canary v2 is imported from s3://registry/llama/v2/ by the transfer job, which fills "
        "the model store's copy from there; push there with --to s3://registry/llama/v2/"
    )


def imported_version_to_another_registry(s: Setup) -> tuple[list[str], str]:
    stack = s.project / "stacks" / "Pulumi.test.yaml"
    source = "        source: s3://registry/llama/v2/\n"
    stack.write_text(replaced(STACK, "        version: v2\n", "        version: v2\n" + source))
    return ["--model", "llama", "--version", "v2", str(s.folder), "--to", "gs://registry-gcs/llama/v2"], (
        "--to gs://registry-gcs/llama/v2/: llama canary v2 is imported from s3://registry/llama/v2/; pushing it "
        "elsewhere moves where the transfer job reads it: add --move to do that, or push there with "
        "--to s3://registry/llama/v2/"
    )


def test_move_pushes_an_imported_version_to_another_registry(
    stores: Stores, project: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = project / "stacks" / "Pulumi.test.yaml"
    source = "        source: s3://registry/llama/v2/\n"
    stack.write_text(replaced(STACK, "        version: v2\n", "        version: v2\n" + source))
    args = ["--model", "llama", "--version", "v2", str(folder), "--to", "gs://registry-gcs/llama/v2", "--move"]
    assert run(project, *args) == 0
    output = capsys.readouterr()
    assert output.err == ""
    assert "note: canary v2 moves: imported from s3://registry/llama/v2/, now from gs://registry-gcs/llama/v2/" in (
        progress(output.out)
    )
    assert stores.objects() == pushed("gs://registry-gcs/llama/v2/")
    assert "        source: gs://registry-gcs/llama/v2/\n" in stack_text(project)
    assert "s3://registry" not in stack_text(project)


def no_aws_credentials(s: Setup) -> tuple[list[str], str]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        s.env.delenv(name, raising=False)
    s.env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(s.tmp / "none"))
    s.env.setenv("AWS_CONFIG_FILE", str(s.tmp / "none"))
    s.env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # In process, boto3's default session would keep the credentials an earlier test found.
    s.env.setattr(boto3, "DEFAULT_SESSION", None)
    return ["--model", "llama", "--version", "v2", str(s.folder), "--to", "s3://registry/llama/v2", "--s3-endpoint-url", s.stores.s3_endpoint], (
        "s3://registry: no AWS credentials; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )  # fmt: skip


def no_google_credentials(s: Setup) -> tuple[list[str], str]:
    s.env.delenv("STORAGE_EMULATOR_HOST")
    s.env.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    s.env.setenv("CLOUDSDK_CONFIG", str(s.tmp / "gcloud"))
    s.env.setenv("NO_GCE_CHECK", "True")  # not on GCE: do not wait for the metadata server
    return ["--model", "mistral", "--version", "m1", str(s.folder)], (
        f"gs://{STORE}: no Google credentials; run `gcloud auth application-default login` "
        "or set GOOGLE_APPLICATION_CREDENTIALS"
    )


def config_error(s: Setup) -> tuple[list[str], str]:
    stack = s.project / "stacks" / "Pulumi.test.yaml"
    store = STACK[STACK.index("  llm-mesh:modelStore:") : STACK.index("  llm-mesh:models:")]
    stack.write_text(replaced(STACK, store, ""))
    return ["--model", "mistral", "--version", "m1", str(s.folder), "--to", "s3://registry/mistral/m1"], (
        "stacks/Pulumi.test.yaml: llm-mesh:models[1].stable.source = 's3://registry/mistral/m1/': "
        "s3:// sources need modelStore.s3 (roleArn or access keys)"
    )


REFUSALS: list[Callable[[Setup], tuple[list[str], str]]] = [
    missing_folder, file_for_folder, empty_folder, dangling_link, fifo, unknown_model, unknown_version,
    recorded_other_files, destination_holds_other_files, store_not_created, registry_bucket_missing,
    not_a_bucket_url, imported_version_without_to, imported_version_to_another_registry, no_aws_credentials, no_google_credentials, config_error,
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS, ids=lambda case: case.__name__)
def test_refusals_are_one_line_and_change_nothing(
    case: Callable[[Setup], tuple[list[str], str]],
    stores: Stores,
    project: Path,
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args, message = case(Setup(project, folder, tmp_path, monkeypatch, stores))
    stacks = {p: p.read_bytes() for p in (project / "stacks").iterdir()}
    objects = stores.objects()
    code = run(project, *args)
    output = capsys.readouterr()
    assert (code, output.err, output.out) == (2, f"error: {message}\n", "")
    assert {p: p.read_bytes() for p in (project / "stacks").iterdir()} == stacks
    monkeypatch.undo()  # the servers' environment back, to look at the buckets
    assert stores.objects() == objects


def test_a_folder_without_weights_is_a_config_error(
    stores: Stores, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_bytes(CONFIG)
    assert run(project, "--model", "mistral", "--version", "m1", str(tmp_path / "config-only")) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: stacks/Pulumi.test.yaml: llm-mesh:models[1].stable.files")
    assert stack_text(project) == STACK and stores.objects() == {}


def test_files_entry_lists_every_file_with_size_and_sha256(folder: Path) -> None:
    assert files_entry(folder) == [
        {"path": "config.json", "size": len(CONFIG), "sha256": sha(CONFIG)},
        {"path": "model.safetensors", "size": len(WEIGHTS), "sha256": sha(WEIGHTS)},
        {"path": "tokenizer/tokenizer.json", "size": len(TOKENIZER), "sha256": sha(TOKENIZER)},
    ]


def test_files_entry_leaves_out_hidden_tool_state(folder: Path) -> None:
    listed = files_entry(folder)
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "download.lock").write_bytes(b"x")
    (folder / ".DS_Store").write_bytes(b"x")
    assert files_entry(folder) == listed


LOCAL = [{"path": "a.json", "size": 2, "sha256": "a" * 64}, {"path": "w.safetensors", "size": 9, "sha256": "b" * 64}]


@pytest.mark.parametrize(
    ("recorded", "partial", "reason"),
    [
        (None, False, None),
        (LOCAL, False, None),
        ([{"path": "w.safetensors"}], False, None),  # paths alone: the folder may hold more
        ([{"path": "x.bin"}], False, "x.bin is there but not in the folder"),
        ([LOCAL[0]], False, "w.safetensors is in the folder but not there"),
        ([LOCAL[0]], True, None),  # an interrupted upload
        ([{**LOCAL[1], "size": 8}], True, "w.safetensors: 9 bytes in the folder, 8 there"),
        (
            [{**LOCAL[0], "sha256": "c" * 64}, {"path": "x.bin"}],
            False,
            "a.json: sha256 aaaaaaaaaaaa... in the folder, cccccccccccc... there; and 2 more",
        ),
        ("files", False, "the recorded files are not a list of {path, size, sha256}"),
    ],
)
def test_conflict(recorded: Any, partial: bool, reason: str | None) -> None:
    assert conflict(recorded, LOCAL, partial=partial) == reason


@pytest.mark.parametrize("path", sorted((ROOT / "stacks").glob("Pulumi.*.yaml")), ids=lambda p: p.name)
def test_the_project_stack_files_round_trip_byte_for_byte(path: Path) -> None:
    assert StackFileEdit.open(path).text() == path.read_text()


def test_a_canary_weight_edit_touches_one_value(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(STACK)
    edit = StackFileEdit.open(path)
    edit.set(edit.setting("llm-mesh:models", "llm-mesh")[0], "canaryWeight", 25)
    assert edit.save()
    assert path.read_text() == replaced(STACK, "canaryWeight: 10  # percent", "canaryWeight: 25  # percent")
    assert not edit.save()  # written once


def test_other_indentation_is_kept_and_unreproducible_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.flat.yaml"
    flat = "config:\n  llm-mesh:models:\n  - name: a\n    stable:\n      version: v1\n  # trailing\n"
    path.write_text(flat)
    edit = StackFileEdit.open(path)
    edit.set(edit.config["llm-mesh:models"][0]["stable"], "source", "gs://b/a/v1/")
    assert edit.text() == replaced(flat, "version: v1\n", "version: v1\n      source: gs://b/a/v1/\n")
    path.write_bytes(b"config:\r\n  llm-mesh:environment: dev\r\n")
    with pytest.raises(ValueError, match="cannot be edited without rewriting lines other than the edit"):
        StackFileEdit.open(path)


def test_a_placeholder_list_copied_from_another_stack_gives_way_to_the_pushed_files(
    stores: Stores, project: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A newcomer copied a stack whose model listed other files by path alone (never pushed), then pushes their
    own model's folder: the push records the folder's files in its place and says so, instead of a refusal whose
    advice loops."""
    stack = project / "stacks" / "Pulumi.test.yaml"
    copied = "        files:\n          - path: model-00001-of-00004.safetensors\n          - path: tokenizer.json\n"
    stack.write_text(replaced(STACK, "        version: m1\n", "        version: m1\n" + copied))
    assert run(project, "--model", "mistral", "--version", "m1", str(folder)) == 0
    output = capsys.readouterr()
    assert output.err == ""
    assert (
        "note: mistral stable m1: the stack file listed files by path only (never pushed); the folder's 3 files, "
        "with their sizes and sha256, take their place"
    ) in output.out.splitlines()
    assert stack_text(project) == replaced(
        STACK, "        version: m1\n", "        version: m1\n        files:\n" + listing(8)
    )
    assert stores.objects() == pushed(f"gs://{STORE}/mistral/m1/")


def test_a_prod_stack_takes_its_versions_one_push_at_a_time(
    stores: Stores, project: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prod refuses files without size and sha256, and the push that records them checks the whole stack file: the
    other versions, still listed by path alone, do not hold it up (pushing them is how they get both)."""
    digest = "@sha256:" + "ab" * 32
    hardened = (
        "  llm-mesh:environment: prod\n"
        f"  llm-mesh:inference:\n    image: vllm/vllm-openai{digest}\n"
        "  llm-mesh:gateway:\n    tlsCredentialName: llm-tls\n"
        "  llm-mesh:observability:\n    alerts:\n      emails: [oncall@example.com]\n"
    )
    text = replaced(STACK, "  llm-mesh:environment: dev\n", hardened)
    text = replaced(
        text,
        "  llm-mesh:modelStore:\n",
        f"  llm-mesh:modelStore:\n    serverImage: nginxinc/nginx-unprivileged{digest}\n",
    )
    text = replaced(text, "      mirror:\n        version:\n          version: v3\n        percentage: 5\n", "")
    stack = project / "stacks" / "Pulumi.test.yaml"
    stack.write_text(text)
    assert run(project, "--model", "mistral", "--version", "m1", str(folder)) == 0
    assert capsys.readouterr().err == ""
    assert stack.read_text() == replaced(
        text, "        version: m1\n", "        version: m1\n        files:\n" + listing(8)
    )
    with pytest.raises(ConfigError) as caught:
        config_from_pulumi(read_stack_settings(Project.find(project), "test").config)
    assert [line.split(" = ")[0] for line in caught.value.problems] == [
        "llm-mesh:models[0].stable.files[0]",
        "llm-mesh:models[0].stable.files[1]",
        "llm-mesh:models[0].canary.files[0]",
        "llm-mesh:models[0].canary.files[1]",
    ], "llama's versions are still to push"


def test_the_readmes_own_stack_walk_with_another_model(
    stores: Stores, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README "Making your own stack", as a newcomer does it: copy dev, change the project, the network and the
    model (Qwen2.5-7B here), push its folder to an S3 registry (on loopback), then preview, validate and policy."""
    from tests.conftest import FIXTURE_STACKS, isolated_sdk, project_with_stacks

    root = project_with_stacks(tmp_path / "project")
    dev = root / "stacks" / "Pulumi.dev.yaml"
    mine = root / "stacks" / "Pulumi.mine.yaml"
    mine.write_bytes(dev.read_bytes())  # cp stacks/Pulumi.dev.yaml stacks/Pulumi.mine.yaml
    text = mine.read_text()
    for old, new in (
        ("project: llm-mesh-dev", "project: acme-llm-lab"),
        ("cidrBlock: 203.0.113.0/24", "cidrBlock: 198.51.100.7/32"),
        ("- name: llama-31-8b", "- name: qwen-7b"),
        ("servedName: meta-llama/Llama-3.1-8B-Instruct", "servedName: Qwen/Qwen2.5-7B-Instruct"),
        ("preset: llama-3.1-8b", "preset: qwen2.5-7b"),
        (
            "  llm-mesh:observability:",
            "  llm-mesh:modelStore:\n    s3:\n      roleArn: arn:aws:iam::123456789012:role/transfer\n  llm-mesh:observability:",
        ),
    ):
        text = replaced(text, old, new)
    mine.write_text(text)
    assert (FIXTURE_STACKS / "Pulumi.dev.yaml").read_text() == dev.read_text(), "the copy is the user's"
    monkeypatch.chdir(root)
    push = ["models", "push", "--stack", "mine", "--model", "qwen-7b", "--version", "v1", str(folder)]
    to = ["--to", "s3://registry/qwen-7b/v1", "--s3-endpoint-url", stores.s3_endpoint]
    assert main(["--project", str(root), *push, *to]) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "the stack file listed files by path only (never pushed)" in said
    assert stores.objects() == pushed("s3://registry/qwen-7b/v1/")
    recorded = yaml.safe_load(mine.read_text())["config"]["llm-mesh:models"][0]["stable"]
    assert recorded["source"] == "s3://registry/qwen-7b/v1/"
    assert [f["path"] for f in recorded["files"]] == sorted(FOLDER)
    for command in (["preview"], ["validate"], ["policy"]):
        with isolated_sdk():  # the SDK's mocks are process-global: leave nothing for the next test
            code = main(["--project", str(root), *command, "--stack", "mine"])
        output = capsys.readouterr()
        assert code == 0, (command, output.out[-2000:], output.err)
