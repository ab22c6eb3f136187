"""Where a model's pods land when it prefers one pool and overflows to others.

A preferred node affinity only guides the scheduler among nodes that exist; the cluster autoscaler chooses which
pool to grow, and GKE's prefers the cheapest (spot). So a model with overflow pools gets a custom ComputeClass
that lists its pools in priority order: GKE grows the first until it cannot, then the next, and moves pods back
to the first when it has room again. GKE uses a pool it created by hand for a class only when the pool carries
the class's label and taint; pods select the class and tolerate the taint.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_mesh.plan.config import ServedModel, StackConfig

COMPUTE_CLASS_LABEL = "cloud.google.com/compute-class"


@dataclass(frozen=True)
class ComputeClassPlan:
    name: str
    pools: tuple[str, ...]  # priority order: the model's own pool first


def class_for(config: StackConfig, model: ServedModel) -> ComputeClassPlan | None:
    if not model.overflow_pools:
        return None
    pools = tuple(p.name for p in config.pools_for(model))
    return ComputeClassPlan(f"{pools[0]}-then-{'-'.join(pools[1:])}"[:63].rstrip("-"), pools)


def compute_classes(config: StackConfig) -> list[ComputeClassPlan]:
    """Each distinct class the models need, in the order the models name them."""
    found = [c for model in config.models if (c := class_for(config, model)) is not None]
    return list(dict.fromkeys(found))


def class_of_pools(config: StackConfig) -> dict[str, str]:
    """The class each pool carries (config validation ensures a pool is in one class at most)."""
    return {pool: plan.name for plan in compute_classes(config) for pool in plan.pools}
