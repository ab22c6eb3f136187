"""GPU capacity and its list-price cost per hour, before and after a change, for a reviewer to see at once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_mesh.engine.summary import NODE_POOL_TYPE, GpuCapacity, pool_capacity
from llm_mesh.errors import InputError, read_problem
from llm_mesh.ops.diff import State

PRICES = Path(__file__).with_name("gpu_prices.json")


@dataclass(frozen=True)
class Prices:
    date: str
    currency: str
    region: str
    per_node_hour: dict[str, dict[str, float]]  # machine type -> {"onDemand": .., "spot": ..}

    @classmethod
    def load(cls, path: Path | None = None) -> Prices:
        source = path or PRICES
        try:
            data = json.loads(source.read_text())
        except (OSError, ValueError) as exc:
            raise read_problem("price table", source, exc) from None
        shape = (
            "it needs date, currency, region and machineTypes ({machine type: {onDemand, spot}}), as "
            "llm_mesh/ops/gpu_prices.json"
        )
        try:
            prices = cls(str(data["date"]), str(data["currency"]), str(data["region"]), dict(data["machineTypes"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"price table {source}: {exc} missing; {shape}") from None
        for machine, entry in prices.per_node_hour.items():
            for kind in ("onDemand", "spot"):
                value = entry.get(kind) if isinstance(entry, dict) else None
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InputError(
                        f"price table {source}: machineTypes.{machine}.{kind} = {value!r}: a price per node-hour "
                        f"(a number) is needed; {shape}"
                    )
        return prices

    def node_hour(self, capacity: GpuCapacity) -> float | None:
        entry = self.per_node_hour.get(capacity.machine_type)
        if entry is None:
            return None
        return float(entry["spot" if capacity.spot else "onDemand"])


@dataclass(frozen=True)
class Capacity:
    pools: list[GpuCapacity]

    @classmethod
    def of(cls, states: dict[str, State]) -> Capacity:
        return cls([c for s in states.values() if s.type == NODE_POOL_TYPE for c in pool_capacity(s.urn, s.inputs)])

    def gpus(self) -> tuple[int, int]:
        return sum(p.min_gpus for p in self.pools), sum(p.max_gpus for p in self.pools)

    def cost(self, prices: Prices) -> tuple[float, float, list[str]]:
        """Per hour at min and at max scale, and the machine types the table has no price for."""
        low = high = 0.0
        unpriced = []
        for pool in self.pools:
            price = prices.node_hour(pool)
            if price is None:
                unpriced.append(pool.machine_type)
                continue
            low += price * pool.min_nodes
            high += price * pool.max_nodes
        return low, high, unpriced


def capacity_line(before: Capacity, after: Capacity, prices: Prices) -> str:
    """`GPUs 4–28 → 4–30; list price $8.00–$26.40/h → ... (USD, us-central1, 2026-11-01)`."""
    if not before.pools and not after.pools:
        return "No GPU node pools before or after."
    (gb, gB), (ga, gA) = before.gpus(), after.gpus()
    (cb, cB, ub), (ca, cA, ua) = before.cost(prices), after.cost(prices)
    gpus = f"GPUs {gb}–{gB}" + ("" if (gb, gB) == (ga, gA) else f" → {ga}–{gA}")

    def side(low: float, high: float, unpriced: list[str]) -> str:
        # A pool without a price makes the side's total unknown: a partial sum would read as a saving.
        return "unknown" if unpriced else f"${low:.2f}–${high:.2f}/h"

    was, now = side(cb, cB, ub), side(ca, cA, ua)
    money = was if was == now else f"{was} → {now}"
    note = f" (not priced: {', '.join(sorted(set(ub + ua)))})" if ub or ua else ""
    return (
        f"{gpus} at min–max scale; GPU nodes at list price {money} "
        f"({prices.currency}, {prices.region}, prices of {prices.date}){note}"
    )


def as_json(capacity: Capacity, prices: Prices) -> dict[str, Any]:
    low, high, unpriced = capacity.cost(prices)
    gmin, gmax = capacity.gpus()
    return {"gpus": {"min": gmin, "max": gmax}, "costPerHour": {"min": round(low, 4), "max": round(high, 4)},
            "unpriced": sorted(set(unpriced))}  # fmt: skip
