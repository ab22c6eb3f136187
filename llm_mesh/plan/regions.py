"""Where a cluster can run: the GCP regions GKE runs in and their zones, pinned in gcp_regions.json.

The plan is made offline, so the list is data kept with the code: a region or zone that is not in it is a typo
that would otherwise surface only when `pulumi up` asks GKE for it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

REGIONS_FILE = Path(__file__).with_name("gcp_regions.json")
# Each region with its zones' full names (us-central1 -> us-central1-a, ...).
REGIONS: dict[str, tuple[str, ...]] = {
    region: tuple(f"{region}-{letter}" for letter in letters)
    for region, letters in json.loads(REGIONS_FILE.read_text())["regions"].items()
}
_WHERE = "`gcloud compute regions list` shows them; one opened since goes in llm_mesh/plan/gcp_regions.json"


def region_problem(region: str) -> str | None:
    """Why `region` is not one GKE runs in, naming the nearest real ones; None when it is."""
    if region in REGIONS:
        return None
    owner = next((name for name, zones in REGIONS.items() if region in zones), None)
    if owner is not None:
        return f"a zone, not a region: set region: {owner} (zones go in gcp.zones)"
    close = [repr(name) for name in nearest(region, REGIONS)]
    hint = f"; did you mean {_either(close)}? " if close else " "
    return f"not a GCP region GKE runs in{hint}({_WHERE})"


def zone_problem(zone: str, region: str) -> str | None:
    """Why `zone` is not a zone of `region` (a known region), listing the region's zones; None when it is one."""
    zones = REGIONS[region]
    if zone in zones:
        return None
    where = f"is not in region {region!r}" if not zone.startswith(region + "-") else f"is not a zone of {region}"
    return f"zone {zone!r} {where}; use {_either(zones)}"


def nearest(word: str, known: Iterable[str]) -> list[str]:
    """The known names closest to `word` (those that tie for closest, three at most), when close enough to be a typo."""
    scores = {name: difflib.SequenceMatcher(None, word, name).ratio() for name in known}
    best = max(scores.values(), default=0.0)
    return [name for name, score in scores.items() if score == best][:3] if best >= 0.8 else []


def _either(names: Sequence[str]) -> str:
    """`a`, `a or b`, `a, b or c`."""
    return " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)
