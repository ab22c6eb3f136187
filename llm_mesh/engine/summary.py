"""What a reader of a preview wants to know at a glance, computed from the preview document itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NODE_POOL_TYPE = "gcp:container/nodePool:NodePool"


@dataclass(frozen=True)
class GpuCapacity:
    pool: str
    accelerator: str
    min_gpus: int
    max_gpus: int
    spot: bool
    machine_type: str = ""
    min_nodes: int = 0
    max_nodes: int = 0

    def __str__(self) -> str:
        kind = "spot" if self.spot else "on-demand"
        return f"{self.min_gpus}–{self.max_gpus} × {self.accelerator} ({kind}, pool {self.pool})"


def pool_capacity(urn: str, inputs: dict[str, Any]) -> list[GpuCapacity]:
    """GPU range of one node pool, from its declared autoscaling totals (none without accelerators)."""
    node_config = inputs.get("nodeConfig") or {}
    scaling = inputs.get("autoscaling") or {}
    low, high = int(scaling.get("totalMinNodeCount", 0)), int(scaling.get("totalMaxNodeCount", 0))
    return [
        GpuCapacity(
            pool=urn.rsplit("::", 1)[-1],
            accelerator=str(accelerator.get("type")),
            min_gpus=int(accelerator.get("count", 0)) * low,
            max_gpus=int(accelerator.get("count", 0)) * high,
            spot=bool(node_config.get("spot")),
            machine_type=str(node_config.get("machineType", "")),
            min_nodes=low,
            max_nodes=high,
        )
        for accelerator in node_config.get("guestAccelerators") or []
    ]


def gpu_capacity(document: dict[str, Any]) -> list[GpuCapacity]:
    """GPU range of every node pool with accelerators."""
    capacity = []
    for step in document["steps"]:
        state = step.get("newState") or {}
        if state.get("type") == NODE_POOL_TYPE:
            capacity += pool_capacity(step["urn"], state.get("inputs") or {})
    return capacity
