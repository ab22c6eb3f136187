"""The stack config's `models` and `inference` sections: what each model serves, on which GPUs, from which files."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, field_validator, model_validator

from llm_mesh.errors import did_you_mean
from llm_mesh.plan import gpu_fit
from llm_mesh.plan.config.fields import ConfigModel, Image, Name, max_not_below_min
from llm_mesh.plan.config.problems import FieldProblem

# Files that hold a model's weights: a version without one serves nothing.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Server flags the stack decides from the fit and the topology; a user sets them through config keys.
DECIDED_FLAGS = {
    "--model": "the model path is the version's folder, given positionally",
    "--served-model-name": "set servedName",
    "--port": "the port is fixed by the Service",
    "--tensor-parallel-size": "set gpusPerReplica",
    "--max-model-len": "set contextLength",
    "--gpu-memory-utilization": "decided from the pool's GPU (and its sharing)",
    "--kv-cache-dtype": "set kvCacheDtype",
    "--otlp-traces-endpoint": "the stack points it at its own collector (observability.otelCollectorHost)",
    "--collect-detailed-traces": "set observability.detailedTraces",
}


class ArtifactFile(ConfigModel):
    """One file of a model version; size and sha256, where given, are checked by `llm-mesh models verify`."""

    path: str = Field(pattern=r"^[^/][^\s]*$")
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _stays_inside(cls, path: str) -> str:
        if ".." in path.split("/"):
            raise ValueError("a file path must stay inside the model version's folder (no '..')")
        return path


class ModelVersion(ConfigModel):
    version: Name
    # Where the artifacts come from: gs://bucket/prefix or s3://bucket/prefix. None: the model store's own
    # bucket at <model>/<version>/.
    source: str | None = Field(default=None, pattern=r"^(gs|s3)://[a-z0-9][-a-z0-9._]{1,61}[a-z0-9](/.*)?$")
    # Overrides inference.image for this version only.
    image: Image | None = None
    # The files the server needs, relative to the version's folder; fetched before the server starts.
    # `llm-mesh models push` uploads a folder and writes this list (sizes and sha256 included).
    files: list[ArtifactFile] = Field(min_length=1)

    @field_validator("files")
    @classmethod
    def _has_weights(cls, files: list[ArtifactFile]) -> list[ArtifactFile]:
        if not any(f.path.endswith(WEIGHT_SUFFIXES) for f in files):
            raise ValueError(
                f"lists no weights file ({', '.join('*' + s for s in WEIGHT_SUFFIXES)}): the server would start on "
                "a config alone; list every file of the version (`llm-mesh models push` writes them)"
            )
        return files


class Mirror(ConfigModel):
    """A shadow version that receives a copy of live requests; its answers are discarded."""

    version: ModelVersion
    percentage: float = Field(default=10.0, ge=0, le=100)


class ModelShapeConfig(ConfigModel):
    """What the GPU fit needs: a known model's preset, or the numbers from its config.json."""

    preset: str | None = None
    parameters_billions: float | None = Field(default=None, gt=0)
    layers: int | None = Field(default=None, ge=1)
    attention_heads: int | None = Field(default=None, ge=1)
    kv_heads: int | None = Field(default=None, ge=1)
    head_dim: int | None = Field(default=None, ge=1)
    native_context: int | None = Field(default=None, ge=1)
    # Overrides the preset's dtype, e.g. an fp8 build of a known model.
    dtype: gpu_fit.WeightDtype | None = None

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str | None) -> str | None:
        if preset is not None and preset not in gpu_fit.PRESETS:
            hint = did_you_mean(preset, gpu_fit.PRESETS)
            raise ValueError(
                f"unknown preset; {hint}known: {', '.join(gpu_fit.PRESETS)}; or give parametersBillions, layers, "
                "attentionHeads, kvHeads, headDim and nativeContext from the model's config.json"
            )
        return preset

    @model_validator(mode="after")
    def _preset_or_numbers(self) -> ModelShapeConfig:
        numbers = {
            "parametersBillions": self.parameters_billions,
            "layers": self.layers,
            "attentionHeads": self.attention_heads,
            "kvHeads": self.kv_heads,
            "headDim": self.head_dim,
            "nativeContext": self.native_context,
        }
        given = [k for k, v in numbers.items() if v is not None]
        if self.preset is not None and given:
            raise ValueError(f"give a preset or the numbers, not both (remove {', '.join(given)})")
        missing = [k for k, v in numbers.items() if v is None]
        if self.preset is None and missing:
            raise ValueError(f"without a preset, the fit needs {', '.join(missing)} (from the model's config.json)")
        return self

    def resolve(self) -> gpu_fit.ModelShape:
        if self.preset is not None:
            shape = gpu_fit.PRESETS[self.preset]
            return shape if self.dtype is None else dataclasses.replace(shape, dtype=self.dtype)
        assert self.parameters_billions and self.layers and self.attention_heads and self.kv_heads
        assert self.head_dim and self.native_context
        return gpu_fit.ModelShape(
            round(self.parameters_billions * 1e9),
            layers=self.layers,
            attention_heads=self.attention_heads,
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            native_context=self.native_context,
            dtype=self.dtype or "bfloat16",
        )


Balancing = Literal["mesh", "inference-pool"]


class ModelRouting(ConfigModel):
    """How the gateway chooses a replica for each request to this model."""

    # mesh: Istio's least-request balancing over the model's pods (through the ingress gateway's VirtualService).
    # inference-pool: a Gateway API HTTPRoute to an InferencePool per track, whose endpoint picker chooses the pod
    # for each request from the servers' queue depth and KV-cache use (the Gateway API Inference Extension).
    balancing: Balancing = "mesh"


class ServedModel(ConfigModel):
    name: Name
    # The model name clients send in the OpenAI `model` field; defaults to `name`.
    served_name: str | None = None
    # What the GPU fit needs, and the context length served (vLLM's --max-model-len).
    shape: ModelShapeConfig
    context_length: int = Field(ge=gpu_fit.BLOCK_TOKENS)
    kv_cache_dtype: gpu_fit.KvCacheDtype = "auto"
    # The pool the model prefers, and pools it may overflow to when that one is full (e.g. spot capacity).
    gpu_pool: Name | None = None
    overflow_pools: list[Name] = []
    # None: the fewest GPUs of the pool's nodes on which a full-length sequence fits.
    gpus_per_replica: int | None = Field(default=None, ge=1)
    stable: ModelVersion
    canary: ModelVersion | None = None
    # Percent of requests for the canary; the stable version takes the rest.
    canary_weight: int = 0
    mirror: Mirror | None = None
    routing: ModelRouting = ModelRouting()
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    cpu: str = Field(default="4", pattern=r"^\d+(\.\d+)?m?$")
    memory: str = Field(default="32Gi", pattern=r"^\d+(Mi|Gi)$")
    # Local disk for the fetched weights, and shared memory for the server's worker processes.
    cache_size: str = Field(default="100Gi", pattern=r"^\d+(Mi|Gi)$")
    shm_size: str = Field(default="16Gi", pattern=r"^\d+(Mi|Gi)$")
    # Extra server flags, e.g. ["--enable-prefix-caching"]; flags the stack decides are refused.
    args: list[str] = []

    @field_validator("args")
    @classmethod
    def _no_decided_flags(cls, args: list[str]) -> list[str]:
        for arg in args:
            flag = arg.split("=", 1)[0]
            if flag in DECIDED_FLAGS:
                raise ValueError(f"{flag} is decided by the stack: {DECIDED_FLAGS[flag]}")
        return args

    def tracks(self) -> list[tuple[str, ModelVersion]]:
        """The versions deployed, by track: stable always, canary and mirror when configured."""
        found = [("stable", self.stable)]
        if self.canary is not None:
            found.append(("canary", self.canary))
        if self.mirror is not None:
            found.append(("mirror", self.mirror.version))
        return found

    @property
    def pooled(self) -> bool:
        """Served through InferencePools and their endpoint picker rather than the mesh's balancing."""
        return self.routing.balancing == "inference-pool"

    @field_validator("canary_weight")
    @classmethod
    def _weight_is_a_percentage(cls, weight: int) -> int:
        if not 0 <= weight <= 100:
            raise ValueError("must be between 0 and 100 (percent of requests sent to the canary)")
        return weight

    @model_validator(mode="after")
    def _weight_needs_canary_and_memory_fits(self) -> ServedModel:
        # After the fields: a canary whose own keys are wrong is reported there, not as a missing canary.
        if self.canary_weight > 0 and self.canary is None:
            raise FieldProblem(
                "canaryWeight",
                self.canary_weight,
                "a canary weight needs a canary version; add canary: {version: ...} or set 0",
            )
        shm, memory = _bytes(self.shm_size), _bytes(self.memory)
        if memory < 8 * 1024**3:
            raise FieldProblem(
                "memory", self.memory, "vLLM needs several GiB of host memory to load weights and run: at least 8Gi"
            )
        if shm >= memory:
            raise FieldProblem(
                "shmSize",
                self.shm_size,
                f"a memory-backed /dev/shm counts against the container's memory ({self.memory}): keep it well below",
            )
        return self

    _max_not_below_min = max_not_below_min("Replicas")


class InferenceConfig(ConfigModel):
    # vLLM's OpenAI-compatible server; prod stacks pin it by digest.
    image: Image = "vllm/vllm-openai:v0.27.1"
    namespace: Name = "inference"
    # Serves managed-Prometheus series to the autoscalers (deployed when a model autoscales).
    metrics_adapter_image: Image = "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.15.2-gke.1"
    # The Inference Extension's endpoint picker, one per InferencePool (models with routing.balancing
    # inference-pool); prod stacks pin it by digest.
    endpoint_picker_image: Image = "registry.k8s.io/gateway-api-inference-extension/epp:v1.0.2"


def _bytes(quantity: str) -> int:
    """'32Gi' or '512Mi' (the forms the fields accept) in bytes."""
    return int(quantity[:-2]) * (1024**3 if quantity.endswith("Gi") else 1024**2)
