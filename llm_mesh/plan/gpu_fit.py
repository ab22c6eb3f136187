"""Will a model's server start on its pool's GPUs, and how much work fits beside the weights?

vLLM allocates `--gpu-memory-utilization` of each GPU, loads its share of the weights, keeps room for
activations and CUDA graphs, and gives the rest to the KV cache. It refuses to start when one sequence of
`--max-model-len` tokens does not fit in that cache. These functions make the same arithmetic before a
cluster does, so that the stack decides tensor parallelism, the context length and the memory fraction,
and config validation refuses a model that would crash-loop.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

GiB = 1024**3
MiB = 1024**2
KiB = 1024

WeightDtype = Literal["bfloat16", "float16", "fp8", "int8", "int4"]
KvCacheDtype = Literal["auto", "fp8"]
WEIGHT_BYTES: dict[str, float] = {"bfloat16": 2, "float16": 2, "fp8": 1, "int8": 1, "int4": 0.5}

# Total memory as CUDA reports it (torch.cuda.mem_get_info, which vLLM multiplies by its utilization): less than
# nvidia-smi's total by what the driver keeps. An L4 sold as 24 GB shows 22.03 GiB, as its OOM messages say.
GPU_MEMORY_GIB: dict[str, float] = {
    "nvidia-l4": 22.03,
    "nvidia-tesla-a100": 39.39,
    "nvidia-a100-80gb": 79.15,
    "nvidia-h100-80gb": 79.11,
    "nvidia-h100-mega-80gb": 79.11,
    "nvidia-h200-141gb": 139.8,
}
# vLLM's own default: the rest is headroom for the CUDA context and other processes.
EXCLUSIVE_UTILIZATION = 0.90
# What vLLM takes besides weights and KV cache, per GPU: the activation peak of its profiling run (at the default
# --max-num-batched-tokens), the CUDA graphs it captures (estimated and counted since v0.21) and non-torch
# allocations (NCCL, cuBLAS workspaces). About 2 GiB for 7-9B models.
ACTIVATION_RESERVE_BYTES = 2 * GiB
# Profiling varies between releases and drivers: only 90% of the computed cache is counted on, so that a context
# called "fits" here does not fail there by a few hundred MiB.
CACHE_MARGIN = 0.90
# The KV cache is allocated in blocks of 16 tokens: a usable context is a multiple of it.
BLOCK_TOKENS = 16
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
_MIG_MEMORY = re.compile(r"^\dg\.(\d+)gb$")


@dataclass(frozen=True)
class ModelShape:
    """What the memory arithmetic needs from a model's config.json."""

    parameters: float  # count, e.g. 8.03e9
    layers: int  # num_hidden_layers
    attention_heads: int  # num_attention_heads: tensor parallelism must divide it
    kv_heads: int  # num_key_value_heads (grouped-query attention)
    head_dim: int  # hidden_size / num_attention_heads, unless config.json states head_dim
    native_context: int  # max_position_embeddings
    dtype: WeightDtype = "bfloat16"

    @property
    def weight_bytes(self) -> float:
        return self.parameters * WEIGHT_BYTES[self.dtype]


# Known models, from their published config.json.
PRESETS: dict[str, ModelShape] = {
    "llama-3.1-8b": ModelShape(8.03e9, layers=32, attention_heads=32, kv_heads=8, head_dim=128, native_context=131072),
    "llama-3.1-70b": ModelShape(
        70.55e9, layers=80, attention_heads=64, kv_heads=8, head_dim=128, native_context=131072
    ),
    "mistral-7b-v0.3": ModelShape(
        7.25e9, layers=32, attention_heads=32, kv_heads=8, head_dim=128, native_context=32768
    ),
    "qwen2.5-7b": ModelShape(7.62e9, layers=28, attention_heads=28, kv_heads=4, head_dim=128, native_context=32768),
    "gemma-2-9b": ModelShape(9.24e9, layers=42, attention_heads=16, kv_heads=8, head_dim=256, native_context=8192),
}


@dataclass(frozen=True)
class Gpu:
    """The memory one replica sees per GPU: a whole GPU, a MIG slice, or a time-shared GPU."""

    accelerator: str
    memory_bytes: int
    # The memory fraction a server may take (vLLM's --gpu-memory-utilization).
    utilization: float = EXCLUSIVE_UTILIZATION

    @classmethod
    def of(cls, accelerator: str, mig_partition_size: str | None = None, shared_clients: int = 1) -> Gpu:
        memory = int(GPU_MEMORY_GIB[accelerator] * GiB)
        if mig_partition_size is not None:
            match = _MIG_MEMORY.match(mig_partition_size)
            if match:
                memory = int(match.group(1)) * 1000**3
        # Every client of a time-shared GPU gets its own share of the memory.
        return cls(accelerator, memory, round(EXCLUSIVE_UTILIZATION / shared_clients, 2))


@dataclass(frozen=True)
class Fit:
    """How one replica of a model uses `tensor_parallel` GPUs at a given context length."""

    shape: ModelShape
    gpu: Gpu
    tensor_parallel: int
    context: int
    kv_cache_dtype: KvCacheDtype = "auto"

    @property
    def weights_per_gpu(self) -> float:
        return self.shape.weight_bytes / self.tensor_parallel

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V, every layer, every KV head, across the replica's GPUs."""
        element = 1 if self.kv_cache_dtype == "fp8" else 2
        return 2 * self.shape.layers * self.shape.kv_heads * self.shape.head_dim * element

    @property
    def kv_bytes_per_token_per_gpu(self) -> float:
        # Each rank holds its share of the KV heads; with more ranks than KV heads the heads are replicated.
        heads = max(1, math.ceil(self.shape.kv_heads / self.tensor_parallel))
        return self.kv_bytes_per_token * heads / self.shape.kv_heads

    @property
    def kv_budget_per_gpu(self) -> float:
        usable = self.gpu.memory_bytes * self.gpu.utilization
        return usable - self.weights_per_gpu - ACTIVATION_RESERVE_BYTES

    @property
    def cache_tokens(self) -> int:
        """Tokens the KV cache holds across all running sequences."""
        if self.kv_budget_per_gpu <= 0:
            return 0
        tokens = int(self.kv_budget_per_gpu * CACHE_MARGIN // self.kv_bytes_per_token_per_gpu)
        return tokens - tokens % BLOCK_TOKENS

    @property
    def largest_context(self) -> int:
        return min(self.cache_tokens, self.shape.native_context)

    @property
    def full_sequences(self) -> int:
        """How many sequences of the full context run at once on one replica."""
        return self.cache_tokens // self.context

    @property
    def fits(self) -> bool:
        return self.full_sequences >= 1 and self.context <= self.shape.native_context

    def problem(self) -> str | None:
        """Why vLLM would refuse to start with this fit, with the largest context that does fit; or None."""
        if self.context > self.shape.native_context:
            return f"the model's native context is {self.shape.native_context} tokens; serve at most that"
        if self.fits:
            return None
        where = f"{self.tensor_parallel} × {self.gpu.accelerator} (tensor parallel {self.tensor_parallel})"
        if self.kv_budget_per_gpu <= 0:
            return (
                f"weights of {gib(self.shape.weight_bytes)} ({self.shape.dtype}) leave no room for a KV cache on "
                f"{where} at gpu-memory-utilization {self.gpu.utilization}; use a pool with more GPU memory or "
                f"more GPUs per node, or a quantized dtype"
            )
        needed = self.context * self.kv_bytes_per_token_per_gpu
        return (
            f"one {self.context}-token sequence needs {gib(needed)} of KV cache per GPU "
            f"({kib(self.kv_bytes_per_token)}/token) but {where} has {gib(self.kv_budget_per_gpu)} after "
            f"{gib(self.weights_per_gpu)} of weights per GPU; the largest context that fits (keeping a "
            f"{1 - CACHE_MARGIN:.0%} margin) is {self.largest_context} tokens"
        )

    def summary(self) -> str:
        return (
            f"weights {gib(self.shape.weight_bytes)} ({self.shape.dtype}), KV cache {kib(self.kv_bytes_per_token)}/token, "
            f"context {self.context}, {self.full_sequences} full-length sequences per replica "
            f"({self.tensor_parallel} × {self.gpu.accelerator}, gpu-memory-utilization {self.gpu.utilization})"
        )


def choose_fit(
    shape: ModelShape,
    gpu: Gpu,
    context: int,
    gpus_available: int,
    tensor_parallel: int | None = None,
    kv_cache_dtype: KvCacheDtype = "auto",
) -> Fit:
    """The fit to deploy: the stated tensor parallelism, else the fewest GPUs (a divisor of the attention heads,
    at most a node's GPUs) on which a full-length sequence fits; else the largest such, which does not fit
    and says why."""
    if tensor_parallel is not None:
        return Fit(shape, gpu, tensor_parallel, context, kv_cache_dtype)
    candidates = [tp for tp in TENSOR_PARALLEL_SIZES if tp <= gpus_available and shape.attention_heads % tp == 0] or [1]
    fits = [Fit(shape, gpu, tp, context, kv_cache_dtype) for tp in candidates]
    return next((f for f in fits if f.fits), fits[-1])


def tensor_parallel_problem(shape: ModelShape, tensor_parallel: int) -> str | None:
    if shape.attention_heads % tensor_parallel:
        return f"tensor parallelism {tensor_parallel} must divide the model's {shape.attention_heads} attention heads"
    return None


def gib(value: float) -> str:
    return f"{value / GiB:.1f} GiB"


def kib(value: float) -> str:
    return f"{value / KiB:.0f} KiB"
