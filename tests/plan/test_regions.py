"""The pinned GCP regions and zones the stack config accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llm_mesh.engine.stackfile import Project, read_stack_settings
from llm_mesh.plan.config import config_from_pulumi
from llm_mesh.plan.regions import REGIONS, nearest, region_problem, zone_problem


def test_the_pinned_list_is_regions_and_their_zones() -> None:
    assert len(REGIONS) >= 40
    for region, zones in REGIONS.items():
        assert re.fullmatch(r"[a-z]+-[a-z]+[0-9]+", region), region
        assert len(zones) >= 3 and all(re.fullmatch(re.escape(region) + r"-[a-z]", zone) for zone in zones), zones
    assert REGIONS["us-central1"] == ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_runs_where_the_list_says_gke_does(stack: str) -> None:
    config = config_from_pulumi(read_stack_settings(Project.find(Path(__file__).parent), stack).config)
    assert region_problem(config.gcp.region) is None
    assert [zone_problem(zone, config.gcp.region) for zone in config.gcp.zones] == [None] * len(config.gcp.zones)


def test_the_nearest_names_are_the_closest_ones_only() -> None:
    assert nearest("europe-west99", REGIONS) == ["europe-west9"]
    assert nearest("us-central2", REGIONS) == ["us-central1"]
    assert nearest("europe-west", REGIONS) == ["europe-west1", "europe-west2", "europe-west3"]
    assert nearest("mars-north1", REGIONS) == []
