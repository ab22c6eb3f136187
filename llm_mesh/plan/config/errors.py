"""Error reporting: every mistake in a stack config as one line naming the key, the value and the fix."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from typing import Any

# The one Pulumi import of the config: a RunError is printed by `pulumi up` without a Python traceback. The
# package loads this module on first use, so that the schema stays free of the Pulumi runtime.
from pulumi import RunError
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from llm_mesh.plan.config.fields import NAMESPACE
from llm_mesh.plan.config.problems import FieldProblem, KeyProblem, Problems
from llm_mesh.plan.config.stack import StackConfig

SECRET_KEYS = frozenset({"accessKeyId", "secretAccessKey", "access_key_id", "secret_access_key"})


class ConfigError(RunError):
    """The stack config is invalid; each line names a key, its value and the fix.

    A RunError, so that `pulumi up` prints the lines without a Python traceback.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def parse_stack_config(values: Mapping[str, Any]) -> StackConfig:
    """Validate the `llm-mesh:*` values of a stack (keys without the namespace) or raise ConfigError.

    Every mistake is reported in one run: pydantic checks the rules that span keys only once each key is
    valid, so after single-key mistakes the rules run again on a copy without the bad keys, and what they
    find about the other keys is reported too.
    """
    if not values:
        # Every required key would be reported missing: one line says what a stack needs instead.
        raise ConfigError([EMPTY_STACK])
    try:
        return StackConfig.model_validate(dict(values))
    except ValidationError as exc:
        errors = exc.errors()
    problems = [line for error in errors for line in _describe(error)]
    attempt: Any = copy.deepcopy(dict(values))
    for _ in range(3):
        single = [e for e in errors if not _is_cross_field(e)]
        if not single:
            break
        for error in single:
            _delete(attempt, tuple(error["loc"]))
        try:
            StackConfig.model_validate(attempt)
            break
        except ValidationError as again:
            errors = again.errors()
        problems += [line for e in errors if _is_cross_field(e) for line in _describe(e) if line not in problems]
    raise ConfigError(problems)


def _is_cross_field(error: Any) -> bool:
    return isinstance((error.get("ctx") or {}).get("error"), (KeyProblem, Problems))


def _delete(values: Any, loc: tuple[str | int, ...]) -> None:
    """Remove the value at a pydantic error location, so that the rest can be checked without it."""
    node = values
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(loc[-1], None)


def _describe(error: Any) -> list[str]:
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, Problems):
        return [_blame(p) for p in cause.problems]
    if isinstance(cause, KeyProblem):
        return [_blame(cause)]
    return [_describe_one(error)]


def _blame(problem: KeyProblem) -> str:
    return f"{NAMESPACE}:{problem.path} = {problem.value!r}: {problem}"


def _describe_one(error: Any) -> str:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, FieldProblem):
        return f"{_key_path((*loc, cause.field))} = {cause.value!r}: {cause}"
    if error["type"] == "int_parsing":
        number = 8192 if loc[-1] == "contextLength" else 2
        return f"{_key_path(loc)} = {error['input']!r}: write a whole number, e.g. {number}"
    if error["type"] == "list_type":
        given = error["input"]
        example = f"[{given}]" if isinstance(given, str) else "[a, b]"
        return f"{_key_path(loc)} = {given!r}: write a list, e.g. {example}"
    if error["type"] == "too_short" and str(loc[-1]) == "files":
        return f"{_key_path(loc)} = []: {MISSING_HINTS['files'].removeprefix('; ')}"
    if error["type"] in ("missing", "too_short") and str(loc[-1]) in REQUIRED_LISTS:
        value = "" if error["type"] == "missing" else f" = {error['input']!r}"
        return f"{_key_path(loc)}{value}: {REQUIRED_LISTS[str(loc[-1])]}"
    if error["type"] == "too_short" and isinstance(error["input"], list):
        return f"{_key_path(loc)} = []: list at least {ctx.get('min_length', 1)} entry"
    message = str(cause) if cause is not None else error["msg"]
    if error["type"] == "string_pattern_mismatch" and str(loc[-1]) in PATTERN_HINTS:
        message = PATTERN_HINTS[str(loc[-1])]
    if (
        error["type"] == "string_type"
        and isinstance(error["input"], (int, float))
        and not isinstance(error["input"], bool)
    ):
        message = "YAML read this as a number; write it in quotes, as text ('1.30', not 1.30, which is 1.3)"
    if error["type"] == "extra_forbidden":
        return f"{_key_path(loc)}: unknown key{_suggestion(loc)}"
    if error["type"] == "missing":
        return f"{_key_path(loc)}: required key is missing{MISSING_HINTS.get(str(loc[-1]), '')}"
    value = error["input"]
    holds_objects = isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict) for v in value))
    if holds_objects or any(str(part) in SECRET_KEYS for part in loc):
        # Objects may hold secrets, and a secret's value is never printed: name the key only.
        return f"{_key_path(loc)}: {message}"
    return f"{_key_path(loc)} = {value!r}: {message}"


# What a value that does not match its pattern should look like (pydantic would print the regular expression).
PATTERN_HINTS = {
    "project": (
        "a GCP project id: 6-30 lowercase letters, digits and hyphens, starting with a letter and not ending with a "
        "hyphen (the id, not the display name: see `gcloud projects list`)"
    ),
    "source": "use gs://BUCKET/PREFIX or s3://BUCKET/PREFIX (a lowercase bucket name, 3-63 characters)",
    "cidrBlock": "a CIDR block such as 203.0.113.0/24",
    "masterIpv4CidrBlock": "a /28 private range such as 172.16.0.0/28",
    "kubernetesVersion": "a Kubernetes minor such as '1.34', quoted",
    "bucketName": "a Cloud Storage bucket name: 3-63 lowercase letters, digits, '-', '_' and '.'",
    "kmsKeyName": "projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY",
    "roleArn": "arn:aws:iam::<12-digit account>:role/<name>",
    "cpu": "a CPU quantity such as '4' or '500m'",
    "memory": "a memory quantity such as '32Gi' or '512Mi'",
    "cacheSize": "a size such as '100Gi'",
    "shmSize": "a size such as '16Gi'",
    "version": "a version such as '1.31.1'",
    "previousVersion": "a version such as '1.30.5'",
    "domain": "a DNS domain such as llm.example.com (lowercase)",
    "canaryHeader": "an HTTP header name in lowercase, such as x-llm-mesh-canary",
    "path": "a path relative to the version's folder, such as model-00001-of-00004.safetensors (no spaces)",
    "sha256": "64 lowercase hexadecimal digits",
}

MISSING_HINTS = {
    "environment": (
        "; say which environment this stack is: dev, staging or prod (prod is held to prod's rules: HTTPS, images "
        "pinned by digest, alerts that notify someone)"
    ),
    "files": (
        "; list the version's files, weights included: `llm-mesh models push --stack ENV --model NAME --version V "
        "DIR` uploads a model folder and writes them"
    ),
    "shape": "; the GPU fit needs it: e.g. shape: {preset: llama-3.1-8b}",
    "contextLength": "; the context served (vLLM's --max-model-len), e.g. contextLength: 8192",
}


# Lists a stack must fill: missing and empty are one mistake, with one message.
REQUIRED_LISTS = {
    "models": (
        f"no model to serve: add one under {NAMESPACE}:models (its name, shape, contextLength and stable version with "
        'its files; the README\'s "Making your own stack" shows one)'
    ),
}

EMPTY_STACK = (
    f"{NAMESPACE}:*: the stack sets no {NAMESPACE} config; a stack states at least {NAMESPACE}:environment (dev, "
    f"staging or prod), {NAMESPACE}:gcp.project and a model under {NAMESPACE}:models: start from a copy of "
    "stacks/Pulumi.dev.yaml"
)


def _key_path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            # Defaults are reported by field name; users wrote (and read) the camelCase key.
            path += ("." if path else "") + to_camel(part)
    return f"{NAMESPACE}:{path}"


def _suggestion(loc: tuple[str | int, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    # A key of the enclosing object, one level too deep: YAML indentation, not spelling.
    outer = _model_at(loc[:-2]) if len(loc) >= 2 else None
    if outer is not None and outer is not model and loc[-1] in {f.alias or n for n, f in outer.model_fields.items()}:
        where = f"a key of {_key_path(loc[:-2])}" if loc[:-2] else f"a config key of its own, {_key_path(loc[-1:])}"
        return f"; it is {where}: check its indentation"
    known = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (known keys: {', '.join(known)})"


def _model_at(parts: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The config model that the key path `parts` names (list indexes skipped), or None."""
    model: type[BaseModel] | None = StackConfig
    for part in parts:
        if isinstance(part, int) or model is None:
            continue
        model = _submodel(model, part)
    return model


def _submodel(model: type[BaseModel], alias: str) -> type[BaseModel] | None:
    for name, field in model.model_fields.items():
        if (field.alias or name) == alias:
            return _model_in(field.annotation)
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
