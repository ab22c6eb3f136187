"""Decisions for the inference service: replicas per track, the server's command line, the model fetch."""

from __future__ import annotations

import json
import math
from pathlib import Path

from llm_mesh.plan.config import ModelVersion, ServedModel
from llm_mesh.plan.topology import MODEL_STORE, ModelNames

SERVER_PORT = 8000
MODEL_DIR = "/models"
# Weights of a large model take many minutes to load onto the GPUs: allow up to 30 minutes to start.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURES = 180
FETCH_SOURCE = (Path(__file__).parent / "fetch_model.py").read_text()


def version_of(model: ServedModel, track: str) -> ModelVersion:
    versions = dict(model.tracks())
    if track not in versions:
        raise ValueError(f"model {model.name!r} has no {track} version")
    return versions[track]


def replicas(model: ServedModel, track: str) -> int | None:
    """None for stable when the autoscaler owns its count (declaring one would fight it on every `up`);
    a canary in proportion to its weight, zero at weight zero; a mirror, which serves no client, one.
    `minReplicas: 0` turns the model off: every track runs zero."""
    if model.min_replicas == 0:
        return 0
    if track == "stable":
        return None
    if track == "canary":
        if model.canary_weight == 0:
            return 0
        return max(1, math.ceil(model.min_replicas * model.canary_weight / 100))
    return 1


def server_args(model: ServedModel, version: ModelVersion) -> list[str]:
    """vLLM's OpenAI-compatible server over the fetched weights, one tensor-parallel rank per GPU."""
    return [
        "--model",
        f"{MODEL_DIR}/{version.version}",
        "--served-model-name",
        model.served_name or model.name,
        "--port",
        str(SERVER_PORT),
        "--tensor-parallel-size",
        str(model.gpus_per_replica),
        *model.args,
    ]


def store_url(names: ModelNames, store_namespace: str, version: ModelVersion) -> str:
    return f"http://{MODEL_STORE}.{store_namespace}.svc.cluster.local/models/{names.model.name}/{version.version}"


def fetch_command(base_url: str, version: ModelVersion) -> list[str]:
    """The init container's command: fetch_model.py run by the server image's Python.

    It runs after the (native) istio-proxy sidecar is up, so the request to the model store goes through
    the mesh with mTLS like any other.
    """
    files = [artifact.model_dump(exclude_none=True) for artifact in version.files]
    return ["python3", "-c", FETCH_SOURCE, base_url, f"{MODEL_DIR}/{version.version}", json.dumps(files)]
