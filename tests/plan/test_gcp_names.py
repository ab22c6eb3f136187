"""Names GCP accepts, whatever the stack and config names."""

from __future__ import annotations

import re

import pytest

from llm_mesh.plan.config import ConfigError, parse_stack_config
from llm_mesh.plan.gcp_names import cluster_name, service_account_id
from tests.helpers import served_model

ACCOUNT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")


@pytest.mark.parametrize(
    "base",
    [
        "llm-mesh-prod",
        "a",
        "models.example.com",
        "1234-models",
        "x" * 63,
        "a-very-long-project-name-1234-prod-models",
        "Bucket_Name",
    ],
)
def test_service_account_ids_follow_gcp_rules(base: str) -> None:
    account = service_account_id(base, "read")
    assert ACCOUNT_ID.match(account), account


def test_long_names_sharing_a_prefix_stay_apart() -> None:
    prefix = "a-very-long-project-name-12345"
    ids = {service_account_id(f"{prefix}-{stack}-models", "read") for stack in ("dev", "staging", "prod")}
    assert len(ids) == 3


def test_cluster_name_too_long_is_a_config_error() -> None:
    minimal = {"environment": "dev", "gcp": {"project": "llm-mesh-test"}, "models": [served_model()]}
    config = parse_stack_config({**minimal, "cluster": {"name": "a" * 38}})
    assert cluster_name(parse_stack_config(minimal), "dev") == "llm-mesh-dev"
    with pytest.raises(
        ConfigError, match=r"llm-mesh:cluster.name = 'a{38}': with the stack name the cluster is 'a{38}-staging'"
    ):
        cluster_name(config, "staging")
