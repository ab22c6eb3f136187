"""GatewayApiCrds: the Gateway API's standard CRDs and the Inference Extension's, at the versions vendored in
llm_mesh/plan/crds/, for the models served through InferencePools.

Declared by the stack (not by GKE's managed Gateway API, which the cluster leaves off) so that the version the
plan's objects were checked against is the version in the cluster. pulumi-kubernetes applies them server-side:
the largest (HTTPRoute's) is beyond the 256 KiB a client-side apply's last-applied annotation may hold.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from llm_mesh.plan.crds import inference_routing_manifests


class GatewayApiCrds(pulumi.ComponentResource):
    """Each CRD of the vendored files, and the Gateway API's admission policy that refuses an older bundle over it."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:mesh:GatewayApiCrds", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.resources: list[pulumi.Resource] = [
            _declare(name, manifest, child) for manifest in inference_routing_manifests()
        ]
        self.register_outputs({})


def _declare(prefix: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.Resource:
    kind, metadata, spec = manifest["kind"], manifest["metadata"], manifest["spec"]
    name = f"{prefix}-{metadata['name']}"
    if kind == "CustomResourceDefinition":
        return k8s.apiextensions.v1.CustomResourceDefinition(name, metadata=metadata, spec=spec, opts=opts)
    if kind == "ValidatingAdmissionPolicy":
        return k8s.admissionregistration.v1.ValidatingAdmissionPolicy(name, metadata=metadata, spec=spec, opts=opts)
    if kind == "ValidatingAdmissionPolicyBinding":
        return k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            name, metadata=metadata, spec=spec, opts=opts
        )
    raise ValueError(f"{kind} {metadata['name']}: no declaration for this kind in the vendored CRD files")
