"""The roles the deploying identity needs, from the resources each stack declares; the README lists them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from llm_mesh.plan.deploy_roles import ROLE_OF_TYPE, deploy_roles, unlisted_types
from tests.conftest import ROOT, STACKS


def resource_types(document: dict[str, Any]) -> set[str]:
    return {step["urn"].split("::")[2].rsplit("$", 1)[-1] for step in document["steps"]}


@pytest.mark.parametrize("stack", STACKS)
def test_every_google_cloud_resource_of_a_stack_has_its_role(previews: dict[str, Any], stack: str) -> None:
    assert unlisted_types(resource_types(previews[stack])) == []


def test_a_resource_type_without_a_role_is_named() -> None:
    assert unlisted_types({"gcp:pubsub/topic:Topic", *ROLE_OF_TYPE, "kubernetes:core/v1:Service"}) == [
        "gcp:pubsub/topic:Topic"
    ]


def test_the_readme_grants_the_deploy_account_exactly_the_roles_prod_needs(previews: dict[str, Any]) -> None:
    """The deploy section's list is what a prod `pulumi up` needs: no role missing, none to spare."""
    section = (ROOT / "README.md").read_text().split("### From GitHub Actions", 1)[1].split("\n## ", 1)[0]
    listed = section.split("<!-- deploy-roles -->", 2)[1]
    needed = deploy_roles(set().union(*(resource_types(previews[stack]) for stack in STACKS)))
    assert sorted(set(re.findall(r"`(roles/[\w.]+)`", listed))) == sorted(needed)
