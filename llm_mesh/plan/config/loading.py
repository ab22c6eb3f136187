"""Loading the stack config from what Pulumi hands the program."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pulumi.runtime import config as pulumi_config

from llm_mesh.plan.config.errors import EMPTY_STACK, ConfigError, parse_stack_config
from llm_mesh.plan.config.fields import NAMESPACE
from llm_mesh.plan.config.stack import StackConfig

# Config namespaces a stack may hold besides ours: the providers' own settings (gcp:project, kubernetes:...).
PROVIDER_NAMESPACES = frozenset({"gcp", "kubernetes", "pulumi"})


def config_from_pulumi(raw: Mapping[str, Any]) -> StackConfig:
    """Validate the config bag Pulumi hands a program (`"llm-mesh:key": value-or-JSON-string`).

    A key in a namespace nothing reads (`llm-mes:models`) is a typo whose value would silently vanish: refused.
    """
    values: dict[str, Any] = {}
    prefix = NAMESPACE + ":"
    foreign, meant = [], []
    for key, value in raw.items():
        if key.startswith(prefix):
            values[key[len(prefix) :]] = _decode(value)
        elif key.split(":", 1)[0] not in PROVIDER_NAMESPACES:
            namespace, _, rest = key.partition(":")
            foreign.append(
                f"{key}: unknown config namespace {namespace!r}, read by nothing; did you mean '{prefix}{rest}'? "
                f"(this program reads {prefix}*; providers read {', '.join(sorted(PROVIDER_NAMESPACES))}:*)"
            )
            meant.append(rest)
    try:
        config = parse_stack_config(values)
    except ConfigError as exc:
        # What a misspelled key was meant to set is missing: the typo is the mistake to report, once.
        missing = tuple(f"{prefix}{key}:" for key in meant if key not in values)
        problems = [p for p in exc.problems if not p.startswith((*missing, EMPTY_STACK))] if foreign else exc.problems
        raise ConfigError(foreign + problems) from None
    if foreign:
        raise ConfigError(foreign)
    return config


def load_stack_config() -> StackConfig:
    """The running program's stack config: what `pulumi up` (or the offline engine) handed it."""
    bag = {**pulumi_config.get_config_env(), **pulumi_config.CONFIG.get()}
    return config_from_pulumi(bag)


def _decode(value: Any) -> Any:
    # Pulumi passes structured config as JSON text and scalars as plain strings.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
