"""Names Google Cloud accepts, derived from stack and config names that may not fit its rules."""

from __future__ import annotations

import hashlib
import re

from llm_mesh.plan.config import ConfigError, StackConfig

_CLUSTER_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")


def service_account_id(base: str, role: str) -> str:
    """An account id GCP accepts (6-30 chars, `[a-z][-a-z0-9]*[a-z0-9]`), unique per `base` and `role`.

    A short hash of `base` keeps ids apart when long names share their first characters (two stacks of one
    project), which truncation alone would merge.
    """
    clean = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
    if not clean or not clean[0].isalpha():
        clean = "lm-" + clean
    suffix = f"-{role}-{hashlib.sha256(f'{base}/{role}'.encode()).hexdigest()[:4]}"
    return clean[: 30 - len(suffix)].rstrip("-") + suffix


def cluster_name(config: StackConfig, stack: str) -> str:
    """`<cluster.name>-<stack>`, checked against GKE's rule before anything is declared."""
    name = f"{config.cluster.name}-{stack}".lower().replace("_", "-").replace(".", "-")
    if not _CLUSTER_NAME.match(name):
        raise ConfigError(
            [
                f"llm-mesh:cluster.name = {config.cluster.name!r}: with the stack name the cluster is {name!r}, "
                "which GKE refuses (at most 40 lowercase letters, digits and '-', starting with a letter); shorten it"
            ]
        )
    return name
