"""The stack configuration: one typed model, validated once at the edge.

A stack file (`stacks/Pulumi.<env>.yaml`) states only what differs from the defaults here, and the
defaults are the safe, production ones. Every mistake is reported as one line that names the key path
as the user wrote it (`llm-mesh:gpuPools[0].machineType`), the bad value and what is allowed, before
the program declares a single resource.

The schema is one module per section (`cluster`, `served_models`, `model_store`, `mesh`, `observability`,
`canary`, the whole in `stack`), the rules across keys in `rules`, the error reporting in `errors` and the
loading from Pulumi's runtime in `loading`. Importing the package loads the schema only: `errors` and
`loading` import Pulumi, and are loaded when one of their names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llm_mesh.plan.config.canary import CanaryConfig
from llm_mesh.plan.config.cluster import (
    AuthorizedNetwork,
    ClusterConfig,
    DriverVersion,
    GcpConfig,
    GpuPool,
    GpuSharing,
    MaintenanceWindow,
    ReleaseChannel,
    Reservation,
    SystemPool,
)
from llm_mesh.plan.config.fields import NAMESPACE, Duration, Image, Name, docker_hub_path, image_pinned
from llm_mesh.plan.config.mesh import (
    GatewayConfig,
    GatewayRateLimit,
    IstioChart,
    IstioConfig,
    JwtConfig,
    RoutingConfig,
    SecurityConfig,
    revision_of,
)
from llm_mesh.plan.config.model_store import ModelStoreConfig, S3Import
from llm_mesh.plan.config.observability import AlertsConfig, ObservabilityConfig
from llm_mesh.plan.config.served_models import (
    DECIDED_FLAGS,
    WEIGHT_SUFFIXES,
    ArtifactFile,
    Balancing,
    InferenceConfig,
    Mirror,
    ModelRouting,
    ModelShapeConfig,
    ModelVersion,
    ServedModel,
)
from llm_mesh.plan.config.stack import Environment, StackConfig

if TYPE_CHECKING:
    from llm_mesh.plan.config.errors import ConfigError, parse_stack_config
    from llm_mesh.plan.config.loading import PROVIDER_NAMESPACES, config_from_pulumi, load_stack_config

# The names that need Pulumi, by the module that holds them.
_LOADED_ON_USE = {
    "ConfigError": "errors",
    "parse_stack_config": "errors",
    "PROVIDER_NAMESPACES": "loading",
    "config_from_pulumi": "loading",
    "load_stack_config": "loading",
}


def __getattr__(name: str) -> Any:
    module = _LOADED_ON_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "DECIDED_FLAGS",
    "NAMESPACE",
    "PROVIDER_NAMESPACES",
    "WEIGHT_SUFFIXES",
    "AlertsConfig",
    "ArtifactFile",
    "AuthorizedNetwork",
    "Balancing",
    "CanaryConfig",
    "ClusterConfig",
    "ConfigError",
    "DriverVersion",
    "Duration",
    "Environment",
    "GatewayConfig",
    "GatewayRateLimit",
    "GcpConfig",
    "GpuPool",
    "GpuSharing",
    "Image",
    "InferenceConfig",
    "IstioChart",
    "IstioConfig",
    "JwtConfig",
    "MaintenanceWindow",
    "Mirror",
    "ModelRouting",
    "ModelShapeConfig",
    "ModelStoreConfig",
    "ModelVersion",
    "Name",
    "ObservabilityConfig",
    "ReleaseChannel",
    "Reservation",
    "RoutingConfig",
    "S3Import",
    "SecurityConfig",
    "ServedModel",
    "StackConfig",
    "SystemPool",
    "config_from_pulumi",
    "docker_hub_path",
    "image_pinned",
    "load_stack_config",
    "parse_stack_config",
    "revision_of",
]
