import pytest

from llm_mesh.plan import gpu


@pytest.mark.parametrize(
    ("accelerator", "machine_type", "gpus"),
    [
        ("nvidia-l4", "g2-standard-8", 1),
        ("nvidia-l4", "g2-standard-24", 2),
        ("nvidia-l4", "g2-standard-48", 4),
        ("nvidia-l4", "g2-standard-96", 8),
        ("nvidia-tesla-a100", "a2-highgpu-4g", 4),
        ("nvidia-a100-80gb", "a2-ultragpu-8g", 8),
        ("nvidia-h100-80gb", "a3-highgpu-8g", 8),
        ("nvidia-h100-mega-80gb", "a3-megagpu-8g", 8),
        ("nvidia-h200-141gb", "a3-ultragpu-8g", 8),
    ],
)
def test_machine_type_fixes_gpu_count(accelerator: str, machine_type: str, gpus: int) -> None:
    assert gpu.machine_type_problem(accelerator, machine_type) is None
    assert gpu.gpus_per_node(accelerator, machine_type) == gpus


@pytest.mark.parametrize(
    ("accelerator", "machine_type", "family"),
    [
        ("nvidia-l4", "n2-standard-8", "g2-standard-*"),
        ("nvidia-l4", "a2-highgpu-1g", "g2-standard-*"),
        ("nvidia-tesla-a100", "a2-ultragpu-1g", "a2-highgpu-*"),
        ("nvidia-a100-80gb", "a2-highgpu-1g", "a2-ultragpu-*"),
        ("nvidia-h100-80gb", "a3-megagpu-8g", "a3-highgpu-*"),
        ("nvidia-h200-141gb", "a3-highgpu-8g", "a3-ultragpu-*"),
    ],
)
def test_wrong_family_is_named(accelerator: str, machine_type: str, family: str) -> None:
    problem = gpu.machine_type_problem(accelerator, machine_type)
    assert problem is not None and family in problem
    with pytest.raises(ValueError, match=family.replace("*", r"\*")):
        gpu.gpus_per_node(accelerator, machine_type)


def test_mig_only_on_capable_accelerators() -> None:
    assert gpu.mig_partition_problem("nvidia-a100-80gb", "1g.10gb") is None
    assert "no MIG" in (gpu.mig_partition_problem("nvidia-l4", "1g.10gb") or "")
    assert "looks like" in (gpu.mig_partition_problem("nvidia-h100-80gb", "half") or "")
