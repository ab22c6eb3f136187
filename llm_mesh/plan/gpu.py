"""Which GCE machine types carry which NVIDIA accelerator, and how many of them.

Pure data and functions: the config model uses them to reject a pool before anything is declared, the
cluster component to fill `guest_accelerators`, the preview summary to state GPU capacity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Accelerator = Literal[
    "nvidia-l4",
    "nvidia-tesla-a100",
    "nvidia-a100-80gb",
    "nvidia-h100-80gb",
    "nvidia-h100-mega-80gb",
    "nvidia-h200-141gb",
]


@dataclass(frozen=True)
class MachineFamily:
    """The machine types that carry one accelerator, as GKE sells them."""

    accelerator: str
    pattern: str  # shown to humans: "g2-standard-*"
    gpus_by_machine_type: dict[str, int]

    def gpus(self, machine_type: str) -> int | None:
        return self.gpus_by_machine_type.get(machine_type)


def _g2() -> dict[str, int]:
    # G2: one L4 per VM, except g2-standard-24 (2), -48 (4) and -96 (8).
    sizes = {4: 1, 8: 1, 12: 1, 16: 1, 24: 2, 32: 1, 48: 4, 96: 8}
    return {f"g2-standard-{vcpus}": gpus for vcpus, gpus in sizes.items()}


def _by_suffix(prefix: str, counts: tuple[int, ...]) -> dict[str, int]:
    return {f"{prefix}-{n}g": n for n in counts}


FAMILIES: dict[str, MachineFamily] = {
    "nvidia-l4": MachineFamily("nvidia-l4", "g2-standard-*", _g2()),
    "nvidia-tesla-a100": MachineFamily(
        "nvidia-tesla-a100", "a2-highgpu-*", {**_by_suffix("a2-highgpu", (1, 2, 4, 8)), "a2-megagpu-16g": 16}
    ),
    "nvidia-a100-80gb": MachineFamily("nvidia-a100-80gb", "a2-ultragpu-*", _by_suffix("a2-ultragpu", (1, 2, 4, 8))),
    "nvidia-h100-80gb": MachineFamily("nvidia-h100-80gb", "a3-highgpu-*", _by_suffix("a3-highgpu", (1, 2, 4, 8))),
    "nvidia-h100-mega-80gb": MachineFamily("nvidia-h100-mega-80gb", "a3-megagpu-*", {"a3-megagpu-8g": 8}),
    "nvidia-h200-141gb": MachineFamily("nvidia-h200-141gb", "a3-ultragpu-*", {"a3-ultragpu-8g": 8}),
}

_MIG_PROFILE = re.compile(r"^[1-7]g\.\d+gb$")
# MIG partitions exist on A100 and H100/H200 only; L4 has no MIG.
MIG_CAPABLE = frozenset(
    {"nvidia-tesla-a100", "nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h100-mega-80gb", "nvidia-h200-141gb"}
)


def machine_type_problem(accelerator: str, machine_type: str) -> str | None:
    """Why `machine_type` cannot carry `accelerator`, or None when it can."""
    family = FAMILIES[accelerator]
    if family.gpus(machine_type) is not None:
        return None
    choices = ", ".join(family.gpus_by_machine_type)
    return f"{accelerator} needs a {family.pattern} machine type ({choices})"


def gpus_per_node(accelerator: str, machine_type: str) -> int:
    """How many GPUs GKE attaches to one node of this machine type (the machine type fixes it)."""
    count = FAMILIES[accelerator].gpus(machine_type)
    if count is None:
        raise ValueError(machine_type_problem(accelerator, machine_type))
    return count


def mig_partition_problem(accelerator: str, partition_size: str) -> str | None:
    """Why a MIG partition size is wrong for this accelerator, or None."""
    if accelerator not in MIG_CAPABLE:
        return f"{accelerator} has no MIG partitions; remove migPartitionSize or use an A100/H100/H200 pool"
    if not _MIG_PROFILE.match(partition_size):
        return "a MIG partition size looks like '1g.10gb' (slices 1-7, memory in GB)"
    return None
