"""The one way typed Istio objects become Pulumi resources."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from llm_mesh.mesh.base import IstioObject


def declare(obj: IstioObject, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    """A CustomResource named `<namespace>-<name>`, its body exactly the validated manifest."""
    manifest = obj.manifest()
    return k8s.apiextensions.CustomResource(
        f"{obj.metadata.namespace}-{obj.metadata.name}",
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        spec=manifest["spec"],
        opts=opts,
    )
