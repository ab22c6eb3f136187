"""`llm-mesh models push`: upload a model version's files and record them in the stack file.

Every check comes before the first upload (the folder, the stack file, the config the edit gives, the
destination and what it already holds), so a refusal changes nothing; the stack file is written last,
atomically, so an interrupted push leaves it as it was. Objects carry their sha256 as metadata: a push run
again finds them and skips them, which makes it resumable and, with the same files, a no-op.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from llm_mesh.engine.stackfile import Project, read_stack_settings
from llm_mesh.errors import CommandError
from llm_mesh.ops.artifacts import CHUNK, GcsStore, S3Store, store_problem
from llm_mesh.ops.stack_edit import StackFileEdit
from llm_mesh.plan.config import NAMESPACE, ConfigError, StackConfig, config_from_pulumi
from llm_mesh.plan.object_urls import ObjectUrl
from llm_mesh.words import count

MODELS = f"{NAMESPACE}:models"
TRACKS = ("stable", "canary", "mirror")
_BUCKET_URL = re.compile(r"^(gs|s3)://[a-z0-9][-a-z0-9._]{1,61}[a-z0-9](/.*)?$")  # as ModelVersion.source
_DO = "name the folder that holds the version's files"
_NEW_VERSION = "a version's files do not change: push them as a new version and point a track at it"
# A list that came with a copied stack (the shipped prod stack's are an example registry's) was never pushed here.
_COPIED_LIST = (
    "; if the list came with a copied stack (the shipped prod stack's lists are an example registry's), it is not "
    "yours: delete that files: list, and every track's that shares it, and push again"
)
# What the check of a push assumes of another version's file that has no size or sha256 yet.
UNCHECKED_STAND_IN = {"size": 0, "sha256": "0" * 64}


class PushError(CommandError):
    """A push refused (exit code 2: nothing changed) or failed part way (1: the stack file unchanged)."""


@dataclass(frozen=True)
class Stored:
    """An object already at the destination."""

    size: int
    sha256: str | None  # from the object's metadata: set by this command, absent on others' uploads


class Destination(Protocol):
    def exists(self) -> bool:
        """Whether the bucket exists."""

    def listing(self, prefix: str) -> dict[str, Stored]:
        """The objects under the prefix, by key."""

    def chunks(self, key: str) -> Iterator[bytes]:
        """The object's bytes, streamed."""

    def upload(self, local: Path, key: str, sha256: str) -> None:
        """Upload the file, resumable or multipart when large, with its sha256 as metadata."""


class GcsDestination(GcsStore):
    def exists(self) -> bool:
        return bool(self.bucket.exists())

    def listing(self, prefix: str) -> dict[str, Stored]:
        return {
            blob.name: Stored(int(blob.size), (blob.metadata or {}).get("sha256"))
            for blob in self.bucket.list_blobs(prefix=prefix)
        }

    def upload(self, local: Path, key: str, sha256: str) -> None:
        blob = self.bucket.blob(key)
        blob.metadata = {"sha256": sha256}
        blob.upload_from_filename(str(local))  # a resumable upload above 8 MiB, with a crc32c check


class S3Destination(S3Store):
    def exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise
        return True

    def listing(self, prefix: str) -> dict[str, Stored]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                # A listing has no metadata: ask each object (a model version has tens of files, not thousands).
                head = self.client.head_object(Bucket=self.bucket, Key=item["Key"])
                found[item["Key"]] = Stored(int(item["Size"]), head.get("Metadata", {}).get("sha256"))
        return found

    def upload(self, local: Path, key: str, sha256: str) -> None:
        # upload_file switches to a multipart upload above 8 MiB.
        self.client.upload_file(str(local), self.bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}})


def open_destination(url: str, project: str, s3_endpoint_url: str | None) -> Destination:
    where = ObjectUrl.parse(url)
    if where.scheme == "s3":
        return S3Destination(where.bucket, s3_endpoint_url)
    return GcsDestination(where.bucket, project)


@dataclass(frozen=True)
class PushPlan:
    """Everything a push will do, decided and checked; nothing done yet."""

    model: str
    version: str
    folder: Path
    url: str  # the version's folder at the destination, ending in "/"
    files: list[dict[str, Any]]  # path, size, sha256 of each file, sorted by path
    to_upload: list[dict[str, Any]]
    destination: Destination
    edit: StackFileEdit
    stack_label: str
    tracks: list[str]  # the tracks that name the version
    notes: list[str] = field(default_factory=list)

    @property
    def records_changed(self) -> bool:
        return self.edit.text() != self.edit.original


def files_entry(folder: Path) -> list[dict[str, Any]]:
    """Path (relative, with '/'), size and sha256 of every file under the folder, sorted by path."""
    if not folder.exists():
        raise PushError(f"DIR {folder}: no such folder; {_DO}")
    if not folder.is_dir():
        raise PushError(f"DIR {folder}: not a folder; {_DO}")

    def unreadable(error: OSError) -> None:  # os.walk would skip a folder it cannot list
        raise PushError(f"DIR {folder}: cannot read {error.filename}: {error.strerror}; fix it, then push again")

    entries = []
    # Links are followed: a Hugging Face snapshot is a folder of links into its blob store.
    for root, folders, names in os.walk(folder, onerror=unreadable, followlinks=True):
        # Hidden entries are tools' state, not the model: `.cache/huggingface` (huggingface-cli download
        # --local-dir), `.git`, `.DS_Store`.
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in names:
            if not name.startswith("."):
                entries.append(_entry(folder, Path(root, name)))
    if not entries:
        raise PushError(f"DIR {folder}: holds no files; {_DO}")
    return sorted(entries, key=lambda e: e["path"])


def _entry(folder: Path, path: Path) -> dict[str, Any]:
    relative = path.relative_to(folder).as_posix()
    what = f"DIR {folder}: cannot read {relative}"
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            # Opening a FIFO would wait forever; a socket or device is no model file either.
            raise PushError(f"{what}: not a regular file; remove it from the folder, then push again")
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                digest.update(chunk)
    except FileNotFoundError:
        reason = "a symbolic link to a missing file" if path.is_symlink() else "it vanished while being read"
        raise PushError(f"{what}: {reason}; fix it or remove it, then push again") from None
    except OSError as error:
        raise PushError(f"{what}: {error.strerror}; fix it or remove it, then push again") from None
    return {"path": relative, "size": info.st_size, "sha256": digest.hexdigest()}


def placeholder_list(recorded: Any) -> bool:
    """A files list of paths alone, no size or sha256 anywhere: a placeholder nothing was pushed for."""
    return (
        isinstance(recorded, list)
        and bool(recorded)
        and all(isinstance(e, dict) and set(e) == {"path"} for e in recorded)
    )


def conflict(recorded: Any, local: list[dict[str, Any]], *, partial: bool = False, there: str = "there") -> str | None:
    """Why the folder's files are not the content already recorded (in the stack file or at the
    destination), or None when they are.

    A record of paths alone (no size, no sha256) names files the folder must have, and may have more.
    partial: the record may lack files still to come (the objects of an interrupted upload).
    there: where the record is, for the message ("in the stack file").
    """
    if not recorded:
        return None
    if not isinstance(recorded, list) or not all(isinstance(e, dict) and "path" in e for e in recorded):
        return "the recorded files are not a list of {path, size, sha256}"
    in_folder = {f["path"]: f for f in local}
    in_record = {str(e["path"]): e for e in recorded}
    complete = partial is False and any(e.get("size") is not None or e.get("sha256") for e in recorded)
    problems = []
    for path in sorted(in_folder.keys() | in_record.keys()):
        mine, theirs = in_folder.get(path), in_record.get(path)
        if mine is None:
            problems.append(f"{path} is {there} but not in the folder")
        elif theirs is None:
            if complete:
                problems.append(f"{path} is in the folder but not {there}")
        elif theirs.get("size") is not None and theirs["size"] != mine["size"]:
            problems.append(f"{path}: {mine['size']} bytes in the folder, {theirs['size']} {there}")
        elif theirs.get("sha256") and theirs["sha256"] != mine["sha256"]:
            problems.append(
                f"{path}: sha256 {mine['sha256'][:12]}... in the folder, {theirs['sha256'][:12]}... {there}"
            )
    if not problems:
        return None
    return problems[0] + (f"; and {len(problems) - 1} more" if len(problems) > 1 else "")


def plan_push(
    project: Project,
    stack: str,
    model: str,
    version: str,
    folder: Path,
    to: str | None = None,
    s3_endpoint_url: str | None = None,
    destination_for: Callable[[str, str, str | None], Destination] = open_destination,
    move: bool = False,
) -> PushPlan:
    """Check everything a push needs and decide what it will do; raises PushError or ConfigError."""
    # The folder first: without the files nothing else about the push matters.
    if not folder.is_dir():
        raise PushError(f"DIR {folder}: {'not a folder' if folder.exists() else 'no such folder'}; {_DO}")
    if to is not None and not _BUCKET_URL.match(to):
        raise PushError(f"--to {to}: not a bucket location; use gs://BUCKET/PREFIX or s3://BUCKET/PREFIX")
    read_stack_settings(project, stack)  # the reader's own one-line errors for a missing or malformed file
    path = project.stack_file(stack)
    label = path.relative_to(project.root).as_posix() if path.is_relative_to(project.root) else str(path)
    edit = StackFileEdit.open(path)
    models = edit.setting(MODELS, project.name)
    models = models if isinstance(models, CommentedSeq) else CommentedSeq()
    index, tracks = _targets(models, label, model, version)
    url = _url(to) if to is not None else None
    for track, node in tracks:
        source = node.get("source")
        if url is None and source:
            raise PushError(
                f"--version {version}: {model} {track} {version} is imported from {source} by the transfer job, "
                f"which fills the model store's copy from there; push there with --to {source}"
            )
        if url is not None and source and _url(str(source)) != url and not move:
            # The servers' weights would come from elsewhere from the next `pulumi up` on: only on purpose.
            raise PushError(
                f"--to {url}: {model} {track} {version} is imported from {source}; pushing it elsewhere moves "
                f"where the transfer job reads it: add --move to do that, or push there with --to {source}"
            )
    local = files_entry(folder)
    replaced_placeholders = []
    for track, node in tracks:
        recorded = _plain(node.get("files"))
        reason = conflict(recorded, local, there="in the stack file")
        if reason and placeholder_list(recorded):
            # Paths alone were never pushed (nothing says what they hold): a list copied from another stack, or
            # written ahead of the files. The folder's files take its place, and the push says so.
            replaced_placeholders.append(track)
            continue
        if reason:
            what = f"{model} {track} {version}"
            raise PushError(
                f"--version {version}: {label} already records other files for {what} ({reason}); {_NEW_VERSION}"
                f"{_COPIED_LIST}"
            )
    notes = _record(edit, models, tracks, local, url)
    for track in replaced_placeholders:
        notes.append(
            f"note: {model} {track} {version}: the stack file listed files by path only (never pushed); the folder's "
            f"{len(local)} files, with their sizes and sha256, take their place"
        )
    config = _validated(project, stack, edit.text(), index, [t for t, _ in tracks], local)
    url = url or f"gs://{config.bucket_name(stack)}/{model}/{version}/"
    destination, stored = _reach(url, config, to is None, s3_endpoint_url, destination_for, local)
    reason = conflict(stored, local, partial=True, there="at the destination")
    if reason:
        raise PushError(f"{url}: already holds other files for {model} {version} ({reason}); {_NEW_VERSION}")
    present = {s["path"] for s in stored}
    return PushPlan(
        model=model,
        version=version,
        folder=folder,
        url=url,
        files=local,
        to_upload=[f for f in local if f["path"] not in present],
        destination=destination,
        edit=edit,
        stack_label=label,
        tracks=[track for track, _ in tracks],
        notes=notes,
    )


def push(plan: PushPlan, report: Callable[[str], None]) -> None:
    """Upload what is missing, then record the files; progress goes to `report`, a line at a time."""
    total = sum(f["size"] for f in plan.files)
    what = f"{plan.model} {plan.version} ({count(len(plan.files), 'file')}, {human_size(total)})"
    if not plan.to_upload and not plan.records_changed:
        report(f"{what} is already at {plan.url} and recorded in {plan.stack_label}: nothing to do")
        return
    report(f"Pushing {what} from {plan.folder} to {plan.url}")
    width = max(len(f["path"]) for f in plan.files)
    where = ObjectUrl.parse(plan.url)
    for number, entry in enumerate(plan.files, 1):
        position = f"[{number:>{len(str(len(plan.files)))}}/{len(plan.files)}]"
        line = f"  {position} {entry['path']:<{width}}  {human_size(entry['size']):>10}"
        if entry not in plan.to_upload:
            report(f"{line}  already there")
            continue
        report(f"{line}  uploading")
        started = time.monotonic()
        try:
            plan.destination.upload(plan.folder / entry["path"], where.key(entry["path"]), entry["sha256"])
        except Exception as error:  # network, permissions, quota: the stack file is still untouched
            raise PushError(
                f"{plan.url}{entry['path']}: upload failed ({_one_line(error)}); {plan.stack_label} is unchanged: "
                "push again to resume (uploaded files are skipped)",
                code=1,
            ) from None
        report(f"{line}  done in {time.monotonic() - started:.1f} s")
    if plan.edit.save():
        report(f"Recorded the files of {plan.model} {plan.version} ({', '.join(plan.tracks)}) in {plan.stack_label}")
    else:
        report(f"{plan.stack_label} already records these files")


def human_size(size: int) -> str:
    exponent = 0
    while size >= 1024 ** (exponent + 1) and exponent < 4:
        exponent += 1
    return f"{size} B" if exponent == 0 else f"{size / 1024**exponent:.1f} {'KMGT'[exponent - 1]}iB"


def _targets(models: CommentedSeq, label: str, model: str, version: str) -> tuple[int, list[tuple[str, CommentedMap]]]:
    """The model's index in llm-mesh:models and its tracks that name the version."""
    names = [str(m.get("name")) for m in models if isinstance(m, CommentedMap)]
    if model not in names:
        known = f"models: {', '.join(names)}" if names else "it serves no models"
        raise PushError(f"--model {model}: {label} has no model {model!r} in {MODELS} ({known}); add it first")
    index = names.index(model)
    tracks = _tracks(models[index])
    named = [(track, node) for track, node in tracks if str(node.get("version")) == version]
    if not named:
        versions = ", ".join(f"{track} {node.get('version')}" for track, node in tracks)
        raise PushError(
            f"--version {version}: no track of {model} names version {version!r} ({versions}); "
            f"set a track's version to {version} in {label} first"
        )
    return index, named


def _tracks(model: CommentedMap) -> list[tuple[str, CommentedMap]]:
    mirror = model.get("mirror")
    nodes = [model.get("stable"), model.get("canary"), mirror.get("version") if isinstance(mirror, dict) else None]
    return [(track, node) for track, node in zip(TRACKS, nodes, strict=True) if isinstance(node, CommentedMap)]


def _url(to: str) -> str:
    where = ObjectUrl.parse(to)
    return f"{where.scheme}://{where.bucket}/{where.prefix}"


def _plain(node: Any) -> Any:
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, dict):
        return {str(key): _plain(value) for key, value in node.items()}
    return node


def _record(
    edit: StackFileEdit,
    models: CommentedSeq,
    tracks: list[tuple[str, CommentedMap]],
    local: list[dict[str, Any]],
    url: str | None,
) -> list[str]:
    """Write files (and source) into the tracks, in memory; notes on what else changes."""
    notes = []
    for track, node in tracks:
        source = node.get("source")
        if url is not None and (not source or _url(str(source)) != url):
            if source:
                notes.append(f"note: {track} {node.get('version')} moves: imported from {source}, now from {url}")
            edit.set(node, "source", url)
    # Tracks naming this version whose lists are the same node (a YAML alias) keep sharing one new list.
    groups: dict[int, list[tuple[str, CommentedMap]]] = {}
    for track, node in tracks:
        old = node.get("files")
        if not _same(_plain(old), local):
            groups.setdefault(id(old) if isinstance(old, CommentedSeq) else id(node), []).append((track, node))
    for members in groups.values():
        old = members[0][1].get("files")
        new = CommentedSeq(CommentedMap(entry) for entry in local)
        if isinstance(old, CommentedSeq):
            ours = {id(node) for _, node in members}
            others = [parent for parent, _ in edit.occurrences(old) if id(parent) not in ours]
            anchor = old.yaml_anchor()
            if others:
                # Another track's files stay as they are (and keep their anchor, even if no alias is left).
                if anchor is not None:
                    old.yaml_set_anchor(anchor.value, always_dump=True)
                tracks_text = ", ".join(f"{track} {node.get('version')}" for track, node in members)
                alias = f" through the alias *{anchor.value}" if anchor is not None else ""
                notes.append(
                    f"note: {tracks_text} shared its file list with {_name(others, models)}{alias}; "
                    "now it has its own, and theirs is unchanged"
                )
            elif anchor is not None and len(members) > 1:
                new.yaml_set_anchor(anchor.value)
        for _, node in members:
            edit.set(node, "files", new)
    return notes


def _same(recorded: Any, local: list[dict[str, Any]]) -> bool:
    """Whether the record is exactly these entries, in any order."""
    if not isinstance(recorded, list) or not all(isinstance(e, dict) for e in recorded):
        return False
    return sorted(recorded, key=lambda e: str(e.get("path"))) == local


def _name(parents: list[Any], models: CommentedSeq) -> str:
    """Track maps as `model track version`, for a note."""
    labels = {
        id(node): f"{model.get('name')} {track} {node.get('version')}"
        for model in models
        if isinstance(model, CommentedMap)
        for track, node in _tracks(model)
    }
    return ", ".join(labels.get(id(parent), "another key") for parent in parents)


def _validated(
    project: Project, stack: str, text: str, index: int, tracks: list[str], local: list[dict[str, Any]]
) -> StackConfig:
    """The config the edited stack file gives, read as the program would read it; raises ConfigError.

    Other versions without files are not this push's business (pushing them is how they get files): for the
    check they stand in with the pushed list, and problems with those stand-ins are not reported. Nor are their
    files without size or sha256, which prod refuses: pushing them is how they get both.
    """
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / project.stack_file(stack).name).write_text(text, encoding="utf-8")
        settings = read_stack_settings(dataclasses.replace(project, stack_config_dir=Path(scratch)), stack)
    values = dict(settings.config)
    models = json.loads(values[MODELS])
    stand_ins = []
    for i, model in enumerate(models):
        for track in TRACKS:
            node = model.get(track)
            node = node.get("version") if track == "mirror" and isinstance(node, dict) else node
            if not isinstance(node, dict) or (i == index and track in tracks):
                continue
            if "files" not in node:
                node["files"] = local
                key = f"{NAMESPACE}:models[{i}].{'mirror.version' if track == 'mirror' else track}.files"
                stand_ins.append(re.compile(re.escape(key) + r"\b"))
            elif isinstance(node["files"], list):
                node["files"] = [{**UNCHECKED_STAND_IN, **e} if isinstance(e, dict) else e for e in node["files"]]
    values[MODELS] = json.dumps(models)
    try:
        return config_from_pulumi(values)
    except ConfigError as error:
        problems = [p for p in error.problems if not any(s.match(p) for s in stand_ins)]
        raise ConfigError(problems or error.problems) from None


def _reach(
    url: str,
    config: StackConfig,
    model_store: bool,
    s3_endpoint_url: str | None,
    destination_for: Callable[[str, str, str | None], Destination],
    local: list[dict[str, Any]],
) -> tuple[Destination, list[dict[str, Any]]]:
    """The destination, and what it already holds of the version (path, size, sha256, relative paths)."""
    where = ObjectUrl.parse(url)
    bucket = f"{where.scheme}://{where.bucket}"
    try:
        destination = destination_for(url, config.gcp.project, s3_endpoint_url)
        if not destination.exists():
            if model_store:
                raise PushError(
                    f"{bucket}: the stack's model store does not exist yet (the first `pulumi up` creates it); "
                    "create it first, or push to a registry bucket with --to gs://BUCKET/PREFIX or s3://BUCKET/PREFIX"
                )
            raise PushError(f"--to {url}: bucket {bucket} does not exist; create it or name another")
        sizes = {f["path"]: f["size"] for f in local}
        stored = []
        for key, found in sorted(destination.listing(where.prefix).items()):
            path = key[len(where.prefix) :]
            if not path or path.endswith("/"):
                continue  # a folder placeholder, not a file
            sha256 = found.sha256
            if sha256 is None and sizes.get(path) == found.size:
                # Uploaded by something else: only its bytes can tell.
                digest = hashlib.sha256()
                for chunk in destination.chunks(key):
                    digest.update(chunk)
                sha256 = digest.hexdigest()
            stored.append({"path": path, "size": found.size, "sha256": sha256})
    except PushError:
        raise
    except Exception as error:
        raise PushError(f"{bucket}: {_unreachable(error)}") from None
    return destination, stored


def _unreachable(error: Exception) -> str:
    return (
        store_problem(error) or f"cannot be reached ({_one_line(error)}); check the name, the network and your access"
    )


def _one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"
