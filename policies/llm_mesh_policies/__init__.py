"""The llm-mesh policies, importable without starting the analyzer server (policies/__main__.py builds the pack)."""

from pulumi_policy import Policy

from llm_mesh_policies.inference import INFERENCE_POLICIES
from llm_mesh_policies.ingress import INGRESS_POLICIES
from llm_mesh_policies.mesh import MESH_POLICIES
from llm_mesh_policies.platform import PLATFORM_POLICIES

PACK_NAME = "llm-mesh-guardrails"
# The CLI takes the pack's version from PulumiPolicy.yaml (a Python pack reports 0.0.1 itself); a test keeps the two equal.
PACK_VERSION = "0.3.0"
POLICIES: list[Policy] = [*MESH_POLICIES, *INGRESS_POLICIES, *INFERENCE_POLICIES, *PLATFORM_POLICIES]

__all__ = ["PACK_NAME", "PACK_VERSION", "POLICIES"]
