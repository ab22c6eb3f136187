"""The GPU fit: the arithmetic vLLM does before it starts, made before a cluster does it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llm_mesh.plan.config import ConfigError, parse_stack_config
from llm_mesh.plan.gpu_fit import PRESETS, Fit, GiB, Gpu, choose_fit
from tests.helpers import PUSHED_FILES, served_model, version

LLAMA_8B = PRESETS["llama-3.1-8b"]
L4 = Gpu.of("nvidia-l4")


def test_llama_8b_kv_cache_is_128_kib_per_token() -> None:
    fit = Fit(LLAMA_8B, L4, 1, 8192)
    assert fit.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131072
    assert fit.shape.weight_bytes == 8.03e9 * 2


def test_native_context_does_not_fit_one_l4() -> None:
    # 22.03 GiB × 0.9 − 14.96 GiB of weights − 2 GiB reserve = 2.87 GiB; 90% of it is 21,152 tokens (16-token blocks).
    fit = Fit(LLAMA_8B, L4, 1, 131072)
    assert fit.cache_tokens == 21152
    assert not fit.fits
    assert fit.problem() == (
        "one 131072-token sequence needs 16.0 GiB of KV cache per GPU (128 KiB/token) but 1 × nvidia-l4 "
        "(tensor parallel 1) has 2.9 GiB after 15.0 GiB of weights per GPU; the largest context that fits (keeping "
        "a 10% margin) is 21152 tokens"
    )


def test_8k_context_fits_two_full_sequences_on_one_l4() -> None:
    fit = Fit(LLAMA_8B, L4, 1, 8192)
    assert fit.problem() is None and fit.full_sequences == 2
    assert fit.summary() == (
        "weights 15.0 GiB (bfloat16), KV cache 128 KiB/token, context 8192, 2 full-length sequences per replica "
        "(1 × nvidia-l4, gpu-memory-utilization 0.9)"
    )


def test_the_fewest_gpus_that_hold_a_full_sequence_are_chosen() -> None:
    assert choose_fit(LLAMA_8B, L4, 8192, gpus_available=2).tensor_parallel == 1
    two = choose_fit(LLAMA_8B, L4, 65536, gpus_available=2)
    assert two.tensor_parallel == 2 and two.fits
    # Each rank holds half the weights and half the KV heads: 8 KV heads over 2 ranks, 64 KiB per token per GPU.
    assert two.weights_per_gpu == LLAMA_8B.weight_bytes / 2
    assert two.kv_bytes_per_token_per_gpu == 64 * 1024
    one = choose_fit(LLAMA_8B, L4, 65536, gpus_available=1)
    assert one.tensor_parallel == 1 and not one.fits, "without the second GPU the same context does not fit"
    # Nothing fits on what a node has: the largest candidate is returned, and it says why.
    assert choose_fit(LLAMA_8B, L4, 131072, gpus_available=2).tensor_parallel == 2
    too_long = choose_fit(LLAMA_8B, L4, 131072, gpus_available=1)
    assert too_long.tensor_parallel == 1 and not too_long.fits


def test_tensor_parallelism_divides_the_attention_heads() -> None:
    qwen = PRESETS["qwen2.5-7b"]  # 28 attention heads: 8 ranks cannot split them
    assert choose_fit(qwen, Gpu.of("nvidia-l4"), 131072, gpus_available=8).tensor_parallel in (1, 2, 4)


def test_a_time_shared_gpu_gives_each_server_its_share() -> None:
    shared = Gpu.of("nvidia-l4", shared_clients=2)
    assert shared.utilization == 0.45
    assert Fit(LLAMA_8B, shared, 1, 8192).problem() is not None, "half an L4 cannot hold 15 GiB of weights"


def test_a_mig_slice_has_the_memory_its_profile_names() -> None:
    assert Gpu.of("nvidia-a100-80gb", "3g.40gb").memory_bytes == 40 * 1000**3
    assert Gpu.of("nvidia-a100-80gb").memory_bytes == int(79.15 * GiB), "what CUDA reports, not the marketing size"


def test_fp8_kv_cache_halves_the_cache_per_token() -> None:
    assert Fit(LLAMA_8B, L4, 1, 8192, "fp8").kv_bytes_per_token == 65536


BASE: dict[str, Any] = {
    "environment": "dev",
    "gcp": {"project": "llm-mesh-test"},
    "gpuPools": [{"name": "l4", "machineType": "g2-standard-8"}],
    "models": [served_model()],
}


def problems(**model_changes: Any) -> list[str]:
    config = copy.deepcopy(BASE)
    config["models"][0].update(model_changes)
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    return caught.value.problems


def test_config_refuses_a_context_that_does_not_fit_naming_the_largest_that_does() -> None:
    assert problems(contextLength=131072) == [
        "llm-mesh:models[0].contextLength = 131072: one 131072-token sequence needs 16.0 GiB of KV cache per GPU "
        "(128 KiB/token) but 1 × nvidia-l4 (tensor parallel 1) has 2.9 GiB after 15.0 GiB of weights per GPU; the "
        "largest context that fits (keeping a 10% margin) is 21152 tokens (pool 'l4')"
    ]


def test_config_refuses_weights_larger_than_the_pool() -> None:
    assert problems(shape={"preset": "llama-3.1-70b"}) == [
        "llm-mesh:models[0].gpuPool = 'l4': weights of 131.4 GiB (bfloat16) leave no room for a KV cache on "
        "1 × nvidia-l4 (tensor parallel 1) at gpu-memory-utilization 0.9; use a pool with more GPU memory or more "
        "GPUs per node, or a quantized dtype (pool 'l4')"
    ]


def test_config_decides_the_flags_it_computes() -> None:
    assert problems(args=["--max-model-len=4096"]) == [
        "llm-mesh:models[0].args = ['--max-model-len=4096']: --max-model-len is decided by the stack: set contextLength"
    ]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (
            {"preset": "llama-3-8b"},
            "llm-mesh:models[0].shape.preset = 'llama-3-8b': unknown preset; did you mean 'llama-3.1-8b'? known: "
            "llama-3.1-8b, llama-3.1-70b, mistral-7b-v0.3, qwen2.5-7b, gemma-2-9b; or give parametersBillions, layers, "
            "attentionHeads, kvHeads, headDim and nativeContext from the model's config.json",
        ),
        (
            {"preset": "llama-3.1-8b", "layers": 32},
            "llm-mesh:models[0].shape: give a preset or the numbers, not both (remove layers)",
        ),
        (
            {"layers": 32, "kvHeads": 8},
            "llm-mesh:models[0].shape: without a preset, the fit needs parametersBillions, attentionHeads, headDim, "
            "nativeContext (from the model's config.json)",
        ),
    ],
)
def test_shape_mistakes_name_the_fix(shape: dict[str, Any], expected: str) -> None:
    assert problems(shape=shape) == [expected]


def test_explicit_shape_matches_the_preset() -> None:
    numbers = {
        "parametersBillions": 8.03,
        "layers": 32,
        "attentionHeads": 32,
        "kvHeads": 8,
        "headDim": 128,
        "nativeContext": 131072,
    }
    config = copy.deepcopy(BASE)
    config["models"][0]["shape"] = numbers
    parsed = parse_stack_config(config)
    assert parsed.models[0].shape.resolve() == LLAMA_8B


def test_a_version_without_weights_is_refused() -> None:
    assert problems(stable={"version": "v1", "files": [{"path": "config.json"}]}) == [
        "llm-mesh:models[0].stable.files: lists no weights file (*.safetensors, *.bin, *.pt, *.pth, *.gguf): the "
        "server would start on a config alone; list every file of the version (`llm-mesh models push` writes them)"
    ]
    assert problems(stable={"version": "v1"}) == [
        "llm-mesh:models[0].stable.files: required key is missing; list the version's files, weights included: "
        "`llm-mesh models push --stack ENV --model NAME --version V DIR` uploads a model folder and writes them"
    ]


def pools_config(**model_changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    config["gpuPools"] = [
        {"name": "l4-ondemand", "machineType": "g2-standard-8"},
        {"name": "l4-spot", "machineType": "g2-standard-8", "spot": True},
    ]
    config["models"][0].update({"gpuPool": "l4-ondemand", **model_changes})
    return config


def test_a_pool_no_model_can_use_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(pools_config())
    assert caught.value.problems == [
        "llm-mesh:gpuPools[1].name = 'l4-spot': no model can run on this pool (pays for nodes nothing schedules "
        "on); name it in a model's gpuPool or overflowPools, or remove the pool"
    ]
    assert (
        parse_stack_config(pools_config(overflowPools=["l4-spot"]))
        .pools_for(parse_stack_config(pools_config(overflowPools=["l4-spot"])).models[0])[1]
        .name
        == "l4-spot"
    )


def test_an_overflow_pool_must_carry_the_same_gpu() -> None:
    config = pools_config(overflowPools=["l4-spot"])
    config["gpuPools"][1] = {
        "name": "l4-spot",
        "machineType": "g2-standard-8",
        "sharing": {"strategy": "TIME_SHARING", "maxSharedClientsPerGpu": 2},
    }
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    assert caught.value.problems == [
        "llm-mesh:models[0].overflowPools[0] = 'l4-spot': carries other GPUs than pool 'l4-ondemand' (accelerator, "
        "MIG partition or sharing); the server's flags are decided once, so an overflow pool must carry the same GPU"
    ]


LIMIT = {"requestsPerSecondPerPod": 20, "burstPerPod": 40}


def prod(**gateway: Any) -> dict[str, Any]:
    digest = "@sha256:" + "ab" * 32
    return {
        "environment": "prod",
        "gcp": {"project": "llm-mesh-test"},
        "inference": {"image": "vllm/vllm-openai" + digest},
        "modelStore": {"serverImage": "nginxinc/nginx-unprivileged" + digest},
        "gateway": {"tlsCredentialName": "tls", **gateway},
        "models": [served_model(stable=version("v1", files=PUSHED_FILES))],
        "observability": {"alerts": {"emails": ["oncall@example.com"]}},
    }


def test_prod_refuses_a_public_gateway_open_to_all_or_unlimited() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(prod(exposure="public", sourceRanges=["198.51.100.0/24", "0.0.0.0/0"]))
    assert caught.value.problems == [
        "llm-mesh:gateway.sourceRanges[1] = '0.0.0.0/0': admits every address; list the client networks",
        "llm-mesh:gateway.rateLimit = None: a public prod gateway needs a request rate limit; set "
        "requestsPerSecondPerPod and burstPerPod",
    ]
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(prod(exposure="public", rateLimit=LIMIT))
    assert caught.value.problems == [
        "llm-mesh:gateway.sourceRanges = []: a public prod gateway would admit any address on the internet; list the "
        "client networks (CIDRs), or set exposure: internal and put an L7 load balancer with Cloud Armor in front"
    ]
    assert parse_stack_config(prod()).gateway.exposure == "internal", "the default load balancer is internal"
    fronted = parse_stack_config(prod(exposure="public", sourceRanges=["198.51.100.0/24"], rateLimit=LIMIT))
    assert fronted.gateway.rate_limit is not None and fronted.gateway.rate_limit.burst_per_pod == 40
    staging = {**prod(exposure="public"), "environment": "staging"}
    assert parse_stack_config(staging).gateway.rate_limit is None, "outside prod, validate warns (LM0122, LM0124)"


def test_a_rate_limit_burst_below_its_rate_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(prod(rateLimit={"requestsPerSecondPerPod": 20, "burstPerPod": 5}))
    (problem,) = caught.value.problems
    assert problem.startswith("llm-mesh:gateway.rateLimit.burstPerPod = 5: ")
    assert "below requestsPerSecondPerPod (20)" in problem


def test_prod_public_inference_checks_the_token_audience() -> None:
    fronted = {"sourceRanges": ["198.51.100.0/24"], "rateLimit": LIMIT}
    jwt = {"issuer": "https://i", "jwksUri": "https://i/jwks", "audiences": ["llm-mesh"]}
    assert parse_stack_config({**prod(exposure="public", **fronted), "security": {"jwt": jwt}}).security.jwt is not None
    del jwt["audiences"]
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({**prod(exposure="public", **fronted), "security": {"jwt": jwt}})
    assert caught.value.problems == [
        "llm-mesh:security.jwt.audiences = []: without an audience any token of the issuer is accepted, also one "
        "minted for another application; name the audience your identity provider puts in tokens for this API"
    ]


def test_gke_release_images_count_as_pinned_and_other_tags_do_not() -> None:
    from llm_mesh.plan.config import image_pinned

    assert image_pinned("gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.15.1-gke.0")
    assert not image_pinned("gcr.io/gke-release/custom-metrics-stackdriver-adapter:latest")
    assert not image_pinned("docker.io/gke-release/x:v1.0.0-gke.1")
    assert image_pinned("vllm/vllm-openai@sha256:" + "0" * 64)


def test_overflow_grows_the_own_pool_first_through_a_compute_class() -> None:
    from llm_mesh.plan.placement import ComputeClassPlan, class_for, compute_classes

    config = parse_stack_config(pools_config(overflowPools=["l4-spot"]))
    plan = ComputeClassPlan("l4-ondemand-then-l4-spot", ("l4-ondemand", "l4-spot"))
    assert compute_classes(config) == [plan]
    assert class_for(config, config.models[0]) == plan
    alone = copy.deepcopy(BASE)
    assert compute_classes(parse_stack_config(alone)) == [], "a model on one pool needs no class"


def test_models_sharing_a_pool_must_share_its_order() -> None:
    config = pools_config(overflowPools=["l4-spot"])
    config["models"].append(served_model("other", gpuPool="l4-spot"))
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    assert caught.value.problems == [
        "llm-mesh:models[1].gpuPool = 'l4-spot': pool 'l4-spot' is already used in the order ['l4-ondemand', "
        "'l4-spot'] by another model; models sharing a pool must list the same pools in the same order (GKE places "
        "them by one compute class per pool)"
    ]
