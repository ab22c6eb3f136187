"""The llm-mesh policies, importable without starting the analyzer server (policies/__main__.py builds the pack)."""

from pulumi_policy import Policy

from llm_mesh_policies.mesh import MESH_POLICIES
from llm_mesh_policies.platform import PLATFORM_POLICIES

PACK_NAME = "llm-mesh-guardrails"
POLICIES: list[Policy] = [*MESH_POLICIES, *PLATFORM_POLICIES]

__all__ = ["PACK_NAME", "POLICIES"]
