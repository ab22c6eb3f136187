"""Reading a Pulumi project and its stack files the way the Pulumi CLI hands them to a program."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llm_mesh.errors import InputError, did_you_mean

# What the offline engine passes for a `secure:` value it cannot decrypt (no passphrase or cloud KMS here).
UNDECRYPTED_SECRET = "[secret]"


# What the Pulumi CLI reads from a stack file; anything else is ignored by it, so a typo (`confg:`) loses the config.
STACK_FILE_KEYS = frozenset({"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"})


class StackFileError(InputError):
    """A project or stack file that cannot be read as Pulumi reads it; the message names the file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML with each mapping's keys given once, as Pulumi's own reader of stack files requires (PyYAML would keep
    the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise StackFileError(
                    f"{self.name}:{line}:{key_node.start_mark.column + 1}: key {key!r} given twice (first at line "
                    f"{seen[key]}); Pulumi refuses a stack file with a duplicate key: keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise StackFileError(f"{path}: not UTF-8 text; save it as UTF-8 (Pulumi reads stack files as UTF-8)") from None
    try:
        loader = _UniqueKeyLoader(text)
        loader.name = str(path)
        try:
            document = loader.get_single_data() or {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise StackFileError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(document, dict):
        raise StackFileError(f"{path}: a YAML mapping was expected, found {type(document).__name__}")
    return document


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    stack_config_dir: Path

    @classmethod
    def find(cls, start: Path) -> Project:
        """The Pulumi project at `start` or the nearest folder above it."""
        start = start.resolve()  # the program runs from the project's folder: a relative path would not hold there
        for folder in (start, *start.parents):
            manifest = folder / "Pulumi.yaml"
            if manifest.is_file():
                document = _load_yaml(manifest)
                if not document.get("name"):
                    raise StackFileError(f"{manifest}: the project has no `name`")
                config_dir = folder / str(document.get("stackConfigDir", "."))
                return cls(folder, str(document["name"]), config_dir)
        raise FileNotFoundError(
            f"no Pulumi.yaml in {start} or any folder above it "
            "(fix: run from the project, or give --project the folder that holds Pulumi.yaml)"
        )

    def stack_file(self, stack: str) -> Path:
        return self.stack_config_dir / f"Pulumi.{stack}.yaml"

    def stacks(self) -> list[str]:
        return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in self.stack_config_dir.glob("Pulumi.*.yaml"))


@dataclass(frozen=True)
class StackSettings:
    """A stack's config as the language host passes it: strings, structured values as JSON text."""

    config: dict[str, str]
    secret_keys: list[str] = field(default_factory=list)


def is_pulumi_file(path: Path) -> bool:
    """Named as Pulumi names its project (Pulumi.yaml) and stack (Pulumi.<stack>.yaml) files."""
    return path.name.startswith("Pulumi.") and path.suffix in (".yaml", ".yml")


def _stack_named_by_file(text: str) -> str | None:
    """`dev` for `stacks/Pulumi.dev.yaml` or `Pulumi.dev.yaml`: a file given where a stack name belongs."""
    path = Path(text)
    if is_pulumi_file(path) and path.name.count(".") >= 2:
        return path.name.split(".", 1)[1].rsplit(".", 1)[0]
    return None


def read_stack_settings(project: Project, stack: str) -> StackSettings:
    path = project.stack_file(stack)
    if not path.is_file():
        known = project.stacks()
        meant = _stack_named_by_file(stack)
        if meant is not None:
            raise FileNotFoundError(f"--stack {stack} names a file; it takes the stack's name: use --stack {meant}")
        hint = did_you_mean(stack, known) + f"stacks here: {', '.join(known) or 'none'}"
        raise FileNotFoundError(f"{path}: no such stack file ({hint})")
    document = _load_yaml(path)
    for key in document:
        if key not in STACK_FILE_KEYS:
            hint = did_you_mean(key, sorted(STACK_FILE_KEYS))
            raise StackFileError(
                f"{path}: unknown top-level key {key!r}: {hint}(a stack file holds {', '.join(sorted(STACK_FILE_KEYS))})"
            )
    section = document.get("config") or {}
    if not isinstance(section, dict):
        raise StackFileError(f"{path}: `config` must be a mapping of keys to values")
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    written = [where for key, value in section.items() for where in _plain_secrets(value, _full_key(project, key))]
    if written:
        keys = ", ".join(written)
        command = f"`pulumi config set --secret --path '{written[0]}' VALUE`" + (
            " (and so on)" if len(written) > 1 else ""
        )
        raise StackFileError(
            f"{path}: {keys} {'is' if len(written) == 1 else 'are'} written in plain text in a file that is committed: "
            f"set {'it' if len(written) == 1 else 'each'} with {command} (Pulumi keeps it encrypted), or use "
            "modelStore.s3.roleArn instead of keys; and rotate what was written down"
        )
    for key, value in section.items():
        full_key = _full_key(project, key)
        plain = _plain(value)
        if _has_secure(value):
            # As the CLI does: a key holding any secret (even nested, from `config set --secret --path`) is secret.
            secret_keys.append(full_key)
        config[full_key] = plain if isinstance(plain, str) else json.dumps(plain)
    return StackSettings(config, secret_keys)


def _full_key(project: Project, key: str) -> str:
    return key if ":" in key else f"{project.name}:{key}"


# Config keys whose values are credentials (SecretStr in the schema: tests/config checks the two agree).
SECRET_KEYS = frozenset({"accessKeyId", "secretAccessKey"})


def _plain_secrets(value: Any, path: str) -> list[str]:
    """Paths of credential keys holding plain text rather than a `secure:` value."""
    found: list[str] = []
    if isinstance(value, dict) and not _is_secure(value):
        for key, item in value.items():
            where = f"{path}.{key}"
            if key in SECRET_KEYS and item is not None and not _is_secure(item):
                found.append(where)
            else:
                found += _plain_secrets(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _plain_secrets(item, f"{path}[{i}]")
    return found


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def _has_secure(value: Any) -> bool:
    if _is_secure(value):
        return True
    if isinstance(value, dict):
        return any(_has_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secure(v) for v in value)
    return False


def _plain(value: Any) -> Any:
    # YAML may give dates or other types; the CLI passes them on as their text.
    if _is_secure(value):
        return UNDECRYPTED_SECRET
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
