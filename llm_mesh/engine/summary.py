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

    def __str__(self) -> str:
        kind = "spot" if self.spot else "on-demand"
        return f"{self.min_gpus}–{self.max_gpus} × {self.accelerator} ({kind}, pool {self.pool})"


def gpu_capacity(document: dict[str, Any]) -> list[GpuCapacity]:
    """GPU range of every node pool with accelerators, from the declared autoscaling totals."""
    capacity = []
    for step in document["steps"]:
        state = step.get("newState") or {}
        if state.get("type") != NODE_POOL_TYPE:
            continue
        inputs = state.get("inputs") or {}
        node_config = inputs.get("nodeConfig") or {}
        scaling = inputs.get("autoscaling") or {}
        for accelerator in node_config.get("guestAccelerators") or []:
            per_node = int(accelerator.get("count", 0))
            capacity.append(
                GpuCapacity(
                    pool=step["urn"].rsplit("::", 1)[-1],
                    accelerator=str(accelerator.get("type")),
                    min_gpus=per_node * int(scaling.get("totalMinNodeCount", 0)),
                    max_gpus=per_node * int(scaling.get("totalMaxNodeCount", 0)),
                    spot=bool(node_config.get("spot")),
                )
            )
    return capacity
