"""The llm-mesh policy pack, as the Pulumi CLI runs it: `pulumi preview --policy-pack policies`.

The rules live in llm_mesh_policies so that `llm-mesh policy` and the tests call exactly this code without
starting the analyzer server that PolicyPack starts here.
"""

from llm_mesh_policies import PACK_NAME, POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
