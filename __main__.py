"""llm-mesh: a GPU inference platform on GKE behind Istio, one `pulumi up` per environment."""

import pulumi

from components.cluster import GpuCluster, GpuClusterArgs
from llm_mesh.config import load_stack_config

# Validated before anything is declared: a bad stack file stops here with the key, the value and the fix.
config = load_stack_config()
stack = pulumi.get_stack()

cluster = GpuCluster("gpu", GpuClusterArgs.from_config(config, stack))

pulumi.export("environment", config.environment)
pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("clusterEndpoint", cluster.endpoint)
pulumi.export("kubeconfig", cluster.kubeconfig)
