"""The whole stack config: every section, the rules across them, and the questions the program asks of it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import Field, model_validator

from llm_mesh.plan import gpu_fit
from llm_mesh.plan.config import rules
from llm_mesh.plan.config.canary import CanaryConfig
from llm_mesh.plan.config.cluster import ClusterConfig, GcpConfig, GpuPool, default_gpu_pools
from llm_mesh.plan.config.fields import ConfigModel
from llm_mesh.plan.config.mesh import GatewayConfig, IstioConfig, RoutingConfig, SecurityConfig
from llm_mesh.plan.config.model_store import ModelStoreConfig
from llm_mesh.plan.config.observability import ObservabilityConfig
from llm_mesh.plan.config.problems import Problems
from llm_mesh.plan.config.served_models import InferenceConfig, ModelVersion, ServedModel

Environment = Literal["dev", "staging", "prod"]


class StackConfig(ConfigModel):
    # Stated by every stack: a default would make a stack that forgot it prod, or a prod stack that forgot it dev.
    environment: Environment
    gcp: GcpConfig
    cluster: ClusterConfig = ClusterConfig()
    gpu_pools: list[GpuPool] = Field(default_factory=default_gpu_pools, min_length=1)
    inference: InferenceConfig = InferenceConfig()
    # At least one: a stack with nothing to serve would pay for GPU nodes (the default pool's too) that run nothing.
    models: list[ServedModel] = Field(min_length=1)
    model_store: ModelStoreConfig = ModelStoreConfig()
    istio: IstioConfig = IstioConfig()
    gateway: GatewayConfig = GatewayConfig()
    routing: RoutingConfig = RoutingConfig()
    security: SecurityConfig = SecurityConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    canary: CanaryConfig = CanaryConfig()

    @model_validator(mode="after")
    def _cross_field_rules(self) -> StackConfig:
        """Every rule that spans keys, each reporting all its problems, so that one run shows every mistake."""
        problems = list(rules.names_and_pools(self))
        problems += rules.models_fit_their_gpus(self)
        problems += rules.not_anonymous_in_prod(self)
        problems += rules.s3_sources_need_access(self)
        problems += rules.prod_hardened(self)
        problems += rules.prod_weights_checked(self)
        problems += rules.one_version_one_definition(self)
        problems += rules.pools_served_by_the_gateway(self)
        if problems:
            raise Problems(problems)
        return self

    def pools_for(self, model: ServedModel) -> list[GpuPool]:
        """The pools a model may run on: its own first, then its overflow pools."""
        by_name = {p.name: p for p in self.gpu_pools}
        return [self.pool_for(model)] + [by_name[n] for n in model.overflow_pools if n in by_name]

    def _fit_on(self, model: ServedModel, pool: GpuPool) -> gpu_fit.Fit:
        sharing = pool.sharing.max_shared_clients_per_gpu if pool.sharing else 1
        gpu_ = gpu_fit.Gpu.of(pool.accelerator, pool.mig_partition_size, sharing)
        return gpu_fit.choose_fit(
            model.shape.resolve(),
            gpu_,
            model.context_length,
            pool.gpu_count,
            model.gpus_per_replica,
            model.kv_cache_dtype,
        )

    def fit_for(self, model: ServedModel) -> gpu_fit.Fit:
        """The fit the servers run with: decided on the model's own pool (overflow pools are checked to hold it)."""
        return self._fit_on(model, self.pool_for(model))

    def versions(self) -> Iterable[tuple[str, ModelVersion]]:
        """Every model version the stack serves, with its config key."""
        for i, model in enumerate(self.models):
            for track, version in model.tracks():
                yield f"models[{i}].{'mirror.version' if track == 'mirror' else track}", version

    @property
    def secrets_encrypted(self) -> bool:
        """Secrets encrypted with the stack's own KMS key: as cluster.secretsEncryption says, on in prod by default."""
        chosen = self.cluster.secrets_encryption
        return self.environment == "prod" if chosen is None else chosen

    def bucket_name(self, stack: str) -> str:
        return self.model_store.bucket_name or f"{self.gcp.project}-{stack}-models"

    def images(self) -> Iterable[tuple[str, str]]:
        """Every container image the stack runs, with the config key that chooses it."""
        yield "inference.image", self.inference.image
        yield "modelStore.serverImage", self.model_store.server_image
        if self.autoscaled_models():
            yield "inference.metricsAdapterImage", self.inference.metrics_adapter_image
        if self.pooled_models():
            yield "inference.endpointPickerImage", self.inference.endpoint_picker_image
        yield "observability.collectorImage", self.observability.collector_image
        for path, version in self.versions():
            if version.image is not None:
                yield f"{path}.image", version.image

    def autoscaled_models(self) -> list[ServedModel]:
        """Models whose stable track the autoscaler sizes (every model that runs at all)."""
        return [m for m in self.models if m.min_replicas > 0]

    def pooled_models(self) -> list[ServedModel]:
        """Models the gateway serves through InferencePools (routing.balancing: inference-pool)."""
        return [m for m in self.models if m.pooled]

    def pool_for(self, model: ServedModel) -> GpuPool:
        return next((p for p in self.gpu_pools if p.name == model.gpu_pool), self.gpu_pools[0])
