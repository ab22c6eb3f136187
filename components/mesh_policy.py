"""MeshRouting and MeshSecurity: typed Istio objects declared in the order the mesh needs them."""

from __future__ import annotations

import pulumi

from components.shared.manifests import declare
from llm_mesh.mesh.base import IstioObject
from llm_mesh.plan.config import RoutingConfig
from llm_mesh.plan.routing import destination_rule, virtual_service
from llm_mesh.plan.topology import ModelNames


class MeshRouting(pulumi.ComponentResource):
    """One model's DestinationRule (subsets, mTLS, pools, outlier detection) and weighted VirtualService."""

    def __init__(
        self,
        name: str,
        names: ModelNames,
        routing: RoutingConfig,
        opts: pulumi.ResourceOptions | None = None,
        through_gateway: bool = True,
    ):
        super().__init__("llm-mesh:mesh:MeshRouting", name, None, opts)
        rule = declare(destination_rule(names, routing), pulumi.ResourceOptions(parent=self))
        # A VirtualService that names subsets before its DestinationRule exists sends 503s: declare it after.
        declare(
            virtual_service(names, routing, through_gateway), pulumi.ResourceOptions(parent=self, depends_on=[rule])
        )
        self.register_outputs({"host": names.host, "externalHost": names.external_host})


class MeshSecurity(pulumi.ComponentResource):
    """STRICT mTLS, allow-nothing per namespace, and the positive ALLOW rules."""

    def __init__(self, name: str, objects: list[IstioObject], opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:mesh:MeshSecurity", name, None, opts)
        for obj in objects:
            declare(obj, pulumi.ResourceOptions(parent=self))
        self.register_outputs({"policies": [obj.key for obj in objects]})
