"""The stack configuration: one typed model, validated once at the edge.

A stack file (`stacks/Pulumi.<env>.yaml`) states only what differs from the defaults here, and the
defaults are the safe, production ones. Every mistake is reported as one line that names the key path
as the user wrote it (`llm-mesh:gpuPools[0].machineType`), the bad value and what is allowed, before
the program declares a single resource.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Literal

from pulumi import RunError
from pulumi.runtime import config as pulumi_config
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from llm_mesh.errors import did_you_mean
from llm_mesh.mesh.base import duration_seconds
from llm_mesh.mesh.networking import RETRY_CONDITIONS
from llm_mesh.plan import gpu, gpu_fit, queries

NAMESPACE = "llm-mesh"
SECRET_KEYS = frozenset({"accessKeyId", "secretAccessKey", "access_key_id", "secret_access_key"})

Environment = Literal["dev", "staging", "prod"]
ReleaseChannel = Literal["RAPID", "REGULAR", "STABLE"]
IstioChart = Literal["base", "cni", "istiod", "gateway"]
DriverVersion = Literal["DEFAULT", "LATEST", "INSTALLATION_DISABLED"]

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# GKE's release registry publishes each build under a new `-gke.N` tag and never moves one: as fixed as a digest.
_GKE_RELEASE = re.compile(r"^gcr\.io/gke-release/[a-z0-9/_-]+:v[0-9.]+-gke\.[0-9]+$")


def image_pinned(image: str) -> bool:
    """A digest, or a GKE release build (which GKE's own add-ons reference by tag)."""
    return bool(_DIGEST.search(image) or _GKE_RELEASE.match(image))


_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_CIDR = r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$"
# Files that hold a model's weights: a version without one serves nothing.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Server flags the stack decides from the fit and the topology; a user sets them through config keys.
DECIDED_FLAGS = {
    "--model": "the model path is the version's folder, given positionally",
    "--served-model-name": "set servedName",
    "--port": "the port is fixed by the Service",
    "--tensor-parallel-size": "set gpusPerReplica",
    "--max-model-len": "set contextLength",
    "--gpu-memory-utilization": "decided from the pool's GPU (and its sharing)",
    "--kv-cache-dtype": "set kvCacheDtype",
    "--otlp-traces-endpoint": "the stack points it at its own collector (observability.otelCollectorHost)",
    "--collect-detailed-traces": "set observability.detailedTraces",
}
_PRINCIPAL = re.compile(r"^[a-z0-9.-]+/ns/[a-z0-9]([-a-z0-9]*[a-z0-9])?/sa/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class ConfigError(RunError):
    """The stack config is invalid; each line names a key, its value and the fix.

    A RunError, so that `pulumi up` prints the lines without a Python traceback.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError("use lowercase letters, digits and '-', starting with a letter, at most 40 characters")
    return value


def _image(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError("an image reference looks like 'registry/repo:tag' or 'registry/repo@sha256:<digest>'")
    return value


def _check_min_max(low: int | None, high: int, what: str = "Nodes") -> int:
    """A range's upper bound, refused when below its lower one (`maxNodes` under `minNodes`)."""
    if low is not None and low > high:
        raise ValueError(f"max{what} must be at least min{what} ({low})")
    return high


def _duration(value: str) -> str:
    duration_seconds(value)  # raises with the accepted forms
    return value


def _retry_on(value: str) -> str:
    unknown = sorted({c.strip() for c in value.split(",")} - RETRY_CONDITIONS)
    if unknown:
        raise ValueError(f"unknown retry condition(s) {unknown}; use Envoy's, e.g. 'connect-failure,refused-stream'")
    return value


Name = Annotated[str, AfterValidator(_dns_label)]
Duration = Annotated[str, AfterValidator(_duration)]
Image = Annotated[str, AfterValidator(_image)]


class _Model(BaseModel):
    """Strict and camelCase, as Pulumi config keys are written."""

    # validate_default: cross-field rules (min <= max) must also hold when one side is a default.
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, validate_default=True
    )


class GcpConfig(_Model):
    project: str = Field(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    region: str = "us-central1"
    # Zones for GPU pools; empty means the zones GKE picks in the region.
    zones: list[str] = []

    @field_validator("zones")
    @classmethod
    def _zones_in_region(cls, zones: list[str], info: ValidationInfo) -> list[str]:
        region = info.data.get("region")
        for zone in zones:
            if region and not zone.startswith(region + "-"):
                raise ValueError(f"zone {zone!r} is not in region {region!r}; use zones like '{region}-a'")
        return zones


class AuthorizedNetwork(_Model):
    cidr_block: str = Field(pattern=_CIDR)
    display_name: str


class MaintenanceWindow(_Model):
    """A recurring window (RFC 5545 RRULE); GKE needs at least 48h of availability in 32 days."""

    start_time: str = "2025-01-04T03:00:00Z"
    end_time: str = "2025-01-04T09:00:00Z"
    recurrence: str = "FREQ=WEEKLY;BYDAY=SA,SU"


class SystemPool(_Model):
    machine_type: str = "e2-standard-4"
    min_nodes: int = Field(default=1, ge=0)
    max_nodes: int = Field(default=3, ge=1)
    disk_size_gb: int = Field(default=100, ge=20)

    @field_validator("max_nodes")
    @classmethod
    def _max_not_below_min(cls, max_nodes: int, info: ValidationInfo) -> int:
        return _check_min_max(info.data.get("min_nodes"), max_nodes)


class ClusterConfig(_Model):
    name: Name = "llm-mesh"
    # Regional clusters keep the control plane up through a zone outage; zonal ones are cheaper.
    regional: bool = True
    release_channel: ReleaseChannel = "REGULAR"
    deletion_protection: bool = True
    network: str = "default"
    subnetwork: str | None = None
    master_ipv4_cidr_block: str = Field(default="172.16.0.0/28", pattern=r"^\d{1,3}(\.\d{1,3}){3}/28$")
    master_authorized_networks: list[AuthorizedNetwork] = []
    private_endpoint: bool = False
    # Private nodes reach public registries (Docker Hub, Istio's) and JWKS endpoints through Cloud NAT.
    # Turn off only when images come from Artifact Registry and the network has its own egress.
    cloud_nat: bool = True
    # The minor the release channel runs; rendered objects are validated against its schema.
    kubernetes_version: str = Field(default="1.34", pattern=r"^1\.\d+$")
    maintenance_window: MaintenanceWindow = MaintenanceWindow()
    system_pool: SystemPool = SystemPool()


class GpuSharing(_Model):
    strategy: Literal["TIME_SHARING", "MPS"]
    max_shared_clients_per_gpu: int = Field(ge=2, le=48)


class Reservation(_Model):
    consume: Literal["ANY_RESERVATION", "SPECIFIC_RESERVATION", "NO_RESERVATION"] = "SPECIFIC_RESERVATION"
    name: str | None = None

    @model_validator(mode="after")
    def _specific_needs_name(self) -> Reservation:
        if self.consume == "SPECIFIC_RESERVATION" and not self.name:
            raise ValueError("consume SPECIFIC_RESERVATION needs the reservation's name")
        return self


class GpuPool(_Model):
    name: Name
    accelerator: gpu.Accelerator = "nvidia-l4"
    machine_type: str = "g2-standard-8"
    # GPUs per node are fixed by the machine type; stating them documents intent and is checked.
    gpus_per_node: int | None = Field(default=None, ge=1)
    # Totals across the pool's zones (GKE's total_min/total_max_node_count).
    min_nodes: int = Field(default=0, ge=0)
    max_nodes: int = Field(default=2, ge=1)
    spot: bool = False
    reservation: Reservation | None = None
    driver_version: DriverVersion = "LATEST"
    sharing: GpuSharing | None = None
    mig_partition_size: str | None = None
    location_policy: Literal["BALANCED", "ANY"] = "ANY"
    disk_size_gb: int = Field(default=200, ge=50)
    disk_type: Literal["pd-balanced", "pd-ssd", "hyperdisk-balanced"] = "pd-ssd"

    @field_validator("machine_type")
    @classmethod
    def _machine_carries_accelerator(cls, machine_type: str, info: ValidationInfo) -> str:
        accelerator = info.data.get("accelerator")
        if accelerator is not None:
            problem = gpu.machine_type_problem(accelerator, machine_type)
            if problem:
                raise ValueError(problem)
        return machine_type

    @field_validator("gpus_per_node")
    @classmethod
    def _gpu_count_matches(cls, count: int | None, info: ValidationInfo) -> int | None:
        accelerator, machine_type = info.data.get("accelerator"), info.data.get("machine_type")
        if count is None or accelerator is None or machine_type is None:
            return count
        carried = gpu.gpus_per_node(accelerator, machine_type)
        if count != carried:
            raise ValueError(f"{machine_type} carries {carried} × {accelerator}; set gpusPerNode: {carried} or omit it")
        return count

    @field_validator("max_nodes")
    @classmethod
    def _max_not_below_min(cls, max_nodes: int, info: ValidationInfo) -> int:
        return _check_min_max(info.data.get("min_nodes"), max_nodes)

    @field_validator("reservation")
    @classmethod
    def _spot_or_reservation(cls, reservation: Reservation | None, info: ValidationInfo) -> Reservation | None:
        if reservation is not None and info.data.get("spot"):
            raise ValueError("spot nodes cannot consume a reservation; set spot: false or remove reservation")
        return reservation

    @field_validator("mig_partition_size")
    @classmethod
    def _mig_fits_accelerator(cls, size: str | None, info: ValidationInfo) -> str | None:
        accelerator = info.data.get("accelerator")
        if size is not None and accelerator is not None:
            problem = gpu.mig_partition_problem(accelerator, size)
            if problem:
                raise ValueError(problem)
        return size

    @property
    def gpu_count(self) -> int:
        return gpu.gpus_per_node(self.accelerator, self.machine_type)


def _default_gpu_pools() -> list[GpuPool]:
    return [GpuPool(name="l4")]


class ArtifactFile(_Model):
    """One file of a model version; size and sha256, where given, are checked by `llm-mesh models verify`."""

    path: str = Field(pattern=r"^[^/][^\s]*$")
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _stays_inside(cls, path: str) -> str:
        if ".." in path.split("/"):
            raise ValueError("a file path must stay inside the model version's folder (no '..')")
        return path


class ModelVersion(_Model):
    version: Name
    # Where the artifacts come from: gs://bucket/prefix or s3://bucket/prefix. None: the model store's own
    # bucket at <model>/<version>/.
    source: str | None = Field(default=None, pattern=r"^(gs|s3)://[a-z0-9][-a-z0-9._]{1,61}[a-z0-9](/.*)?$")
    # Overrides inference.image for this version only.
    image: Image | None = None
    # The files the server needs, relative to the version's folder; fetched before the server starts.
    # `llm-mesh models push` uploads a folder and writes this list (sizes and sha256 included).
    files: list[ArtifactFile] = Field(min_length=1)

    @field_validator("files")
    @classmethod
    def _has_weights(cls, files: list[ArtifactFile]) -> list[ArtifactFile]:
        if not any(f.path.endswith(WEIGHT_SUFFIXES) for f in files):
            raise ValueError(
                f"lists no weights file ({', '.join('*' + s for s in WEIGHT_SUFFIXES)}): the server would start on "
                "a config alone; list every file of the version (`llm-mesh models push` writes them)"
            )
        return files


class Mirror(_Model):
    """A shadow version that receives a copy of live requests; its answers are discarded."""

    version: ModelVersion
    percentage: float = Field(default=10.0, ge=0, le=100)


class ModelShapeConfig(_Model):
    """What the GPU fit needs: a known model's preset, or the numbers from its config.json."""

    preset: str | None = None
    parameters_billions: float | None = Field(default=None, gt=0)
    layers: int | None = Field(default=None, ge=1)
    attention_heads: int | None = Field(default=None, ge=1)
    kv_heads: int | None = Field(default=None, ge=1)
    head_dim: int | None = Field(default=None, ge=1)
    native_context: int | None = Field(default=None, ge=1)
    # Overrides the preset's dtype, e.g. an fp8 build of a known model.
    dtype: gpu_fit.WeightDtype | None = None

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str | None) -> str | None:
        if preset is not None and preset not in gpu_fit.PRESETS:
            hint = did_you_mean(preset, gpu_fit.PRESETS)
            raise ValueError(
                f"unknown preset; {hint}known: {', '.join(gpu_fit.PRESETS)}; or give parametersBillions, layers, "
                "attentionHeads, kvHeads, headDim and nativeContext from the model's config.json"
            )
        return preset

    @model_validator(mode="after")
    def _preset_or_numbers(self) -> ModelShapeConfig:
        numbers = {
            "parametersBillions": self.parameters_billions,
            "layers": self.layers,
            "attentionHeads": self.attention_heads,
            "kvHeads": self.kv_heads,
            "headDim": self.head_dim,
            "nativeContext": self.native_context,
        }
        given = [k for k, v in numbers.items() if v is not None]
        if self.preset is not None and given:
            raise ValueError(f"give a preset or the numbers, not both (remove {', '.join(given)})")
        missing = [k for k, v in numbers.items() if v is None]
        if self.preset is None and missing:
            raise ValueError(f"without a preset, the fit needs {', '.join(missing)} (from the model's config.json)")
        return self

    def resolve(self) -> gpu_fit.ModelShape:
        if self.preset is not None:
            shape = gpu_fit.PRESETS[self.preset]
            return shape if self.dtype is None else dataclasses.replace(shape, dtype=self.dtype)
        assert self.parameters_billions and self.layers and self.attention_heads and self.kv_heads
        assert self.head_dim and self.native_context
        return gpu_fit.ModelShape(
            round(self.parameters_billions * 1e9),
            layers=self.layers,
            attention_heads=self.attention_heads,
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            native_context=self.native_context,
            dtype=self.dtype or "bfloat16",
        )


class ServedModel(_Model):
    name: Name
    # The model name clients send in the OpenAI `model` field; defaults to `name`.
    served_name: str | None = None
    # What the GPU fit needs, and the context length served (vLLM's --max-model-len).
    shape: ModelShapeConfig
    context_length: int = Field(ge=gpu_fit.BLOCK_TOKENS)
    kv_cache_dtype: gpu_fit.KvCacheDtype = "auto"
    # The pool the model prefers, and pools it may overflow to when that one is full (e.g. spot capacity).
    gpu_pool: Name | None = None
    overflow_pools: list[Name] = []
    # None: the fewest GPUs of the pool's nodes on which a full-length sequence fits.
    gpus_per_replica: int | None = Field(default=None, ge=1)
    stable: ModelVersion
    canary: ModelVersion | None = None
    # Percent of requests for the canary; the stable version takes the rest.
    canary_weight: int = 0
    mirror: Mirror | None = None
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    cpu: str = Field(default="4", pattern=r"^\d+(\.\d+)?m?$")
    memory: str = Field(default="32Gi", pattern=r"^\d+(Mi|Gi)$")
    # Local disk for the fetched weights, and shared memory for the server's worker processes.
    cache_size: str = Field(default="100Gi", pattern=r"^\d+(Mi|Gi)$")
    shm_size: str = Field(default="16Gi", pattern=r"^\d+(Mi|Gi)$")
    # Extra server flags, e.g. ["--enable-prefix-caching"]; flags the stack decides are refused.
    args: list[str] = []

    @field_validator("args")
    @classmethod
    def _no_decided_flags(cls, args: list[str]) -> list[str]:
        for arg in args:
            flag = arg.split("=", 1)[0]
            if flag in DECIDED_FLAGS:
                raise ValueError(f"{flag} is decided by the stack: {DECIDED_FLAGS[flag]}")
        return args

    def tracks(self) -> list[tuple[str, ModelVersion]]:
        """The versions deployed, by track: stable always, canary and mirror when configured."""
        found = [("stable", self.stable)]
        if self.canary is not None:
            found.append(("canary", self.canary))
        if self.mirror is not None:
            found.append(("mirror", self.mirror.version))
        return found

    @field_validator("canary_weight")
    @classmethod
    def _weight_is_a_percentage(cls, weight: int) -> int:
        if not 0 <= weight <= 100:
            raise ValueError("must be between 0 and 100 (percent of requests sent to the canary)")
        return weight

    @model_validator(mode="after")
    def _weight_needs_canary_and_memory_fits(self) -> ServedModel:
        # After the fields: a canary whose own keys are wrong is reported there, not as a missing canary.
        if self.canary_weight > 0 and self.canary is None:
            raise _FieldError(
                "canaryWeight",
                self.canary_weight,
                "a canary weight needs a canary version; add canary: {version: ...} or set 0",
            )
        shm, memory = _bytes(self.shm_size), _bytes(self.memory)
        if memory < 8 * 1024**3:
            raise _FieldError(
                "memory", self.memory, "vLLM needs several GiB of host memory to load weights and run: at least 8Gi"
            )
        if shm >= memory:
            raise _FieldError(
                "shmSize",
                self.shm_size,
                f"a memory-backed /dev/shm counts against the container's memory ({self.memory}): keep it well below",
            )
        return self

    @field_validator("max_replicas")
    @classmethod
    def _replicas_ordered(cls, max_replicas: int, info: ValidationInfo) -> int:
        return _check_min_max(info.data.get("min_replicas"), max_replicas, "Replicas")


class InferenceConfig(_Model):
    # vLLM's OpenAI-compatible server; prod stacks pin it by digest.
    image: Image = "vllm/vllm-openai:v0.27.1"
    namespace: Name = "inference"
    # Serves managed-Prometheus series to the autoscalers (deployed when a model autoscales).
    metrics_adapter_image: Image = "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.15.2-gke.1"


class S3Import(_Model):
    """How the Storage Transfer Service reads `s3://` sources: an IAM role, or access keys kept as secrets."""

    role_arn: str | None = Field(default=None, pattern=r"^arn:aws:iam::\d{12}:role/.+$")
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    # An S3-compatible registry other than AWS: its endpoint, region, and the transfer agent pool that reaches it.
    endpoint: str | None = None
    region: str | None = None
    agent_pool: str | None = None

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> S3Import:
        keys = (self.access_key_id is not None, self.secret_access_key is not None)
        if keys[0] != keys[1]:
            raise ValueError("set both accessKeyId and secretAccessKey (as secrets), or neither")
        if self.endpoint is None and self.role_arn is None and not keys[0]:
            raise ValueError("AWS S3 needs roleArn or accessKeyId/secretAccessKey")
        if self.endpoint is not None and self.agent_pool is None:
            raise ValueError("an S3-compatible endpoint is reached through transfer agents: set agentPool")
        return self


class ModelStoreConfig(_Model):
    # None: "<project>-<stack>-models", which is unique per project and stack.
    bucket_name: str | None = Field(default=None, pattern=r"^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$")
    location: str | None = None
    kms_key_name: str | None = Field(
        default=None, pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$"
    )
    noncurrent_version_retention_days: int = Field(default=30, ge=1)
    server_image: Image = "nginxinc/nginx-unprivileged:1.30.5-alpine"
    namespace: Name = "model-store"
    replicas: int = Field(default=2, ge=1)
    s3: S3Import | None = None


class IstioConfig(_Model):
    version: str = Field(default="1.31.1", pattern=r"^1\.\d+\.\d+$")
    # During a control-plane upgrade: the version whose istiod keeps serving not-yet-restarted workloads.
    previous_version: str | None = Field(default=None, pattern=r"^1\.\d+\.\d+$")
    chart_repository: str = "https://blob.istio.io/istio-release/charts"
    # Helm values merged over llm-mesh's own, per chart (e.g. {istiod: {pilot: {resources: ...}}}).
    values: dict[IstioChart, dict[str, Any]] = {}

    @property
    def revision(self) -> str:
        return revision_of(self.version)

    @property
    def previous_revision(self) -> str | None:
        return revision_of(self.previous_version) if self.previous_version else None

    @field_validator("previous_version")
    @classmethod
    def _previous_is_another_minor(cls, previous: str | None, info: ValidationInfo) -> str | None:
        current = info.data.get("version")
        if previous and current and revision_of(previous) == revision_of(current):
            raise ValueError(f"same revision as version {current!r}; a side-by-side upgrade needs another minor")
        return previous


def revision_of(version: str) -> str:
    """Istio revision name for a version: one control plane per minor ('1.31.1' -> '1-31')."""
    return "-".join(version.split(".")[:2])


class GatewayConfig(_Model):
    # Each model is reachable at <model>.<domain> through the ingress gateway.
    domain: str = Field(default="llm.internal", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    # internal: a load balancer on the VPC only; public: an internet-facing one (prod then needs security.jwt
    # or sourceRanges, so that inference is never anonymous).
    exposure: Literal["internal", "public"] = "internal"
    # Client networks the load balancer admits (loadBalancerSourceRanges); empty: any.
    source_ranges: list[Annotated[str, Field(pattern=_CIDR)]] = []
    # Kubernetes TLS secret in the gateway's namespace; none: plain HTTP on port 80 (not in prod).
    tls_credential_name: str | None = None
    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=5, ge=1)

    @field_validator("max_replicas")
    @classmethod
    def _replicas_ordered(cls, max_replicas: int, info: ValidationInfo) -> int:
        return _check_min_max(info.data.get("min_replicas"), max_replicas, "Replicas")


class RoutingConfig(_Model):
    # Long generations stream for minutes; the route timeout bounds a whole request.
    timeout: Duration = "600s"
    retry_attempts: int = Field(default=2, ge=0, le=10)
    # Connection-level failures only: a completion is expensive and not idempotent.
    retry_on: Annotated[str, AfterValidator(_retry_on)] = "connect-failure,refused-stream"
    canary_header: str = Field(default="x-llm-mesh-canary", pattern=r"^[a-z0-9-]+$")
    max_connections: int = Field(default=1024, ge=1)
    http1_max_pending_requests: int = Field(default=256, ge=1)
    max_requests_per_connection: int = Field(default=1000, ge=0)
    consecutive_5xx_errors: int = Field(default=5, ge=1, alias="consecutive5xxErrors")
    outlier_interval: Duration = "30s"
    base_ejection_time: Duration = "60s"
    max_ejection_percent: int = Field(default=50, ge=0, le=100)


class JwtConfig(_Model):
    issuer: str = Field(min_length=1)
    jwks_uri: str = Field(pattern=r"^https://")
    audiences: list[str] = []


def _principal(value: str) -> str:
    if not _PRINCIPAL.match(value):
        raise ValueError("a principal looks like 'cluster.local/ns/<namespace>/sa/<service-account>' (no wildcards)")
    return value


class SecurityConfig(_Model):
    # In-mesh principals allowed to call the inference API, besides the ingress gateway.
    callers: list[Annotated[str, AfterValidator(_principal)]] = []
    # false: the models are served inside the mesh only (to `callers`), not routed through the ingress gateway.
    allow_gateway: bool = True
    # Requests through the gateway must carry a JWT from this issuer.
    jwt: JwtConfig | None = None


_IN_CLUSTER_HOST = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc\.cluster\.local$"
)
_NOTIFICATION_CHANNEL = re.compile(r"^projects/[^/\s]+/notificationChannels/[0-9]+$")


def _notification_channel(name: str) -> str:
    if not _NOTIFICATION_CHANNEL.match(name):
        raise ValueError(
            "a channel's resource name: projects/PROJECT/notificationChannels/ID "
            "(`gcloud beta monitoring channels list` prints them)"
        )
    return name


def _between(low: float, high: float, what: str, low_open: bool = False) -> AfterValidator:
    """A number in [low, high] (or (low, high]), refused with what it measures and the range."""

    def check(value: float) -> float:
        if value < low or value > high or (low_open and value == low):
            bound = f"above {low:g}" if low_open else f"at least {low:g}"
            raise ValueError(f"{what}: {bound} and at most {high:g}")
        return value

    return AfterValidator(check)


class AlertsConfig(_Model):
    """Thresholds of the alert policies (one per model and track, one for the GPUs) and who is told."""

    # Cloud Monitoring notification channels by resource name; none: incidents open in the console only.
    notification_channels: list[Annotated[str, AfterValidator(_notification_channel)]] = []
    # Share of a track's requests answered 5xx over 5 minutes.
    error_rate: Annotated[float, _between(0, 1, "a share of requests", low_open=True)] = 0.05
    # A track's P99 request latency at its sidecar: a whole (streamed) generation, so minutes are not unusual.
    latency_p99_seconds: Annotated[float, _between(0, 3600, "seconds", low_open=True)] = 120.0
    # Requests waiting for a GPU slot, summed over a track's replicas (the autoscaler aims at 10 per replica).
    queue_depth: Annotated[int, _between(1, 100_000, "requests waiting")] = 50
    # A node's GPUs busy this share of the time (DCGM), for 15 minutes: no headroom left for a burst.
    gpu_utilization_percent: Annotated[float, _between(0, 100, "a percentage", low_open=True)] = 95.0


class ObservabilityConfig(_Model):
    # Percent of requests traced (Istio's sampling at the first proxy; vLLM follows the proxy's decision).
    tracing_sampling_percent: Annotated[float, _between(0, 100, "a percentage of requests")] = 1.0
    access_logs: bool = True
    # Where the stack deploys the OpenTelemetry Collector that receives the mesh's and vLLM's traces (OTLP/gRPC):
    # `<service>.<namespace>.svc.cluster.local`, so that nothing sends spans to a host the stack does not run.
    otel_collector_host: str = "opentelemetry-collector.observability.svc.cluster.local"
    otel_collector_port: int = Field(default=4317, ge=1, le=65535)
    # The collector's image (contrib: it carries the googlecloud exporter), pinned by digest in every environment:
    # the multi-arch index of the 0.157.0 release (re-check with `crane digest` when moving the tag).
    collector_image: Image = (
        "otel/opentelemetry-collector-contrib:0.157.0"
        "@sha256:f2f01157055a9b2aab9df7118e1f1c9abf345e99b23bc7a2bc791db374a7d0f6"
    )
    # vLLM's `--collect-detailed-traces all`: model and worker timings, at a cost on every request (vLLM's words:
    # "possibly costly and or blocking operations"), so off unless a stack asks for it.
    detailed_traces: bool = False
    # Share of each model's requests not answered 5xx over a rolling 28 days (the availability SLO).
    availability_goal: Annotated[float, _between(0.5, 0.9999, "a share of requests")] = 0.995
    alerts: AlertsConfig = AlertsConfig()

    @field_validator("otel_collector_host")
    @classmethod
    def _in_cluster(cls, host: str) -> str:
        if not _IN_CLUSTER_HOST.match(host):
            raise ValueError(
                "the stack deploys the collector itself: name it as <service>.<namespace>.svc.cluster.local"
            )
        return host

    @property
    def collector_name(self) -> str:
        return self.otel_collector_host.split(".")[0]

    @property
    def collector_namespace(self) -> str:
        return self.otel_collector_host.split(".")[1]


class CanaryConfig(_Model):
    """How `llm-mesh canary run` moves a canary: step size, cadence, and what a healthy canary must show."""

    # Percent added per healthy check; the last step before promotion is maxWeight.
    step: int = Field(default=10, ge=1, le=100)
    max_weight: int = Field(default=50, ge=1, le=100)
    # Time between checks, and the window each check's queries look back over.
    interval: Duration = "5m"
    window: Duration = "5m"
    # Fewer canary requests than this in the window and no judgement is made (no traffic never promotes).
    min_requests: int = Field(default=100, ge=1)
    min_success_rate: float = Field(default=0.99, gt=0, le=1)
    # The canary's P99 latency may exceed stable's by at most this factor.
    max_latency_ratio: float = Field(default=1.25, ge=1)
    # On a bound of vLLM's time-to-first-token histogram (1, 2.5, 5, ...): between two, interpolation decides.
    max_ttft_seconds: float = Field(default=2.5, gt=0)
    # Failed checks in one run before the canary is rolled back.
    failed_checks: int = Field(default=3, ge=1)
    # Checks in a row without enough traffic before the canary is rolled back: a canary no request reaches is
    # not being tested (a wrong route, a header nobody sends), and waiting longer proves nothing.
    no_traffic_checks: int = Field(default=6, ge=1)
    # A Prometheus-compatible query API: the managed Prometheus frontend (port-forwarded) or a Prometheus.
    prometheus_url: str = Field(default="http://localhost:9090", pattern=r"^https?://")

    @field_validator("max_ttft_seconds")
    @classmethod
    def _on_a_bucket_bound(cls, limit: float) -> float:
        if limit in queries.TTFT_BUCKET_BOUNDS:
            return limit
        below = max((b for b in queries.TTFT_BUCKET_BOUNDS if b < limit), default=None)
        above = min((b for b in queries.TTFT_BUCKET_BOUNDS if b > limit), default=None)
        nearest = " or ".join(f"{b:g}" for b in (below, above) if b is not None)
        raise ValueError(
            f"{limit:g} s lies between two bounds of vLLM's time-to-first-token histogram, so interpolation, not "
            f"the data, would decide; use {nearest}"
        )


class StackConfig(_Model):
    environment: Environment = "prod"
    gcp: GcpConfig
    cluster: ClusterConfig = ClusterConfig()
    gpu_pools: list[GpuPool] = Field(default_factory=_default_gpu_pools, min_length=1)
    inference: InferenceConfig = InferenceConfig()
    models: list[ServedModel] = Field(default_factory=list)
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
        problems = list(self._names_and_pools())
        problems += self._models_fit_their_gpus()
        problems += self._not_anonymous_in_prod()
        problems += self._s3_sources_need_access()
        problems += self._prod_hardened()
        if problems:
            raise _Problems(problems)
        return self

    def _names_and_pools(self) -> Iterator[_KeyError]:
        yield from _duplicates("gpuPools", [p.name for p in self.gpu_pools])
        yield from _duplicates("models", [m.name for m in self.models])
        pools = {p.name: p for p in self.gpu_pools}
        for i, model in enumerate(self.models):
            if model.gpu_pool is not None and model.gpu_pool not in pools:
                yield _KeyError(
                    f"models[{i}].gpuPool", model.gpu_pool, f"names no GPU pool; use one of {sorted(pools)}"
                )
                continue
            own = self.pool_for(model)
            for j, name in enumerate(model.overflow_pools):
                key = f"models[{i}].overflowPools[{j}]"
                other = pools.get(name)
                if other is None:
                    yield _KeyError(key, name, f"names no GPU pool; use one of {sorted(pools)}")
                elif name == own.name:
                    yield _KeyError(key, name, "is the model's own gpuPool already")
                elif (other.accelerator, other.mig_partition_size, other.sharing) != (
                    own.accelerator,
                    own.mig_partition_size,
                    own.sharing,
                ):
                    yield _KeyError(
                        key,
                        name,
                        f"carries other GPUs than pool {own.name!r} (accelerator, MIG partition or sharing); the "
                        "server's flags are decided once, so an overflow pool must carry the same GPU",
                    )
            for pool in self.pools_for(model):
                if model.gpus_per_replica is not None and model.gpus_per_replica > pool.gpu_count:
                    yield _KeyError(
                        f"models[{i}].gpusPerReplica",
                        model.gpus_per_replica,
                        f"a {pool.machine_type} node in pool {pool.name!r} has {pool.gpu_count} GPU(s)",
                    )
        # A pool in a compute class is tainted for it: every model on that pool must use the same class.
        classes: dict[str, tuple[str, ...]] = {}
        for i, model in enumerate(self.models):
            if model.gpu_pool is not None and model.gpu_pool not in pools:
                continue
            order = tuple(p.name for p in self.pools_for(model))
            for pool_name in order:
                taken = classes.setdefault(pool_name, order)
                if taken != order:
                    yield _KeyError(
                        f"models[{i}].overflowPools" if model.overflow_pools else f"models[{i}].gpuPool",
                        list(order[1:]) if model.overflow_pools else order[0],
                        f"pool {pool_name!r} is already used in the order {list(taken)} by another model; models "
                        "sharing a pool must list the same pools in the same order (GKE places them by one "
                        "compute class per pool)",
                    )
                    break
        if self.models:
            used = {pool.name for model in self.models for pool in self.pools_for(model)}
            for i, pool in enumerate(self.gpu_pools):
                if pool.name not in used:
                    yield _KeyError(
                        f"gpuPools[{i}].name",
                        pool.name,
                        "no model can run on this pool (pays for nodes nothing schedules on); name it in a model's "
                        "gpuPool or overflowPools, or remove the pool",
                    )

    def _models_fit_their_gpus(self) -> Iterator[_KeyError]:
        names = {p.name for p in self.gpu_pools}
        for i, model in enumerate(self.models):
            if not {model.gpu_pool or self.gpu_pools[0].name, *model.overflow_pools} <= names:
                continue  # the fit reads the pools a model names: a wrong name is reported already
            shape = model.shape.resolve()
            if model.gpus_per_replica is not None:
                problem = gpu_fit.tensor_parallel_problem(shape, model.gpus_per_replica)
                if problem:
                    yield _KeyError(f"models[{i}].gpusPerReplica", model.gpus_per_replica, problem)
                    continue
            fit = self.fit_for(model)
            pool = self.pool_for(model)
            problem = fit.problem()
            if problem:
                key = "contextLength" if fit.kv_budget_per_gpu > 0 else "gpuPool"
                value = model.context_length if key == "contextLength" else pool.name
                yield _KeyError(f"models[{i}].{key}", value, f"{problem} (pool {pool.name!r})")
            for j, name in enumerate(model.overflow_pools):
                other = next(p for p in self.gpu_pools if p.name == name)
                if other.gpu_count < fit.tensor_parallel:
                    yield _KeyError(
                        f"models[{i}].overflowPools[{j}]",
                        name,
                        f"its {other.machine_type} nodes have {other.gpu_count} GPU(s); a replica needs "
                        f"{fit.tensor_parallel}",
                    )

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

    def _not_anonymous_in_prod(self) -> Iterator[_KeyError]:
        gateway = self.gateway
        if self.models and not self.security.allow_gateway and not self.security.callers:
            yield _KeyError(
                "security.allowGateway",
                False,
                "with the gateway not allowed and no security.callers, nothing could call the models; name the "
                "in-mesh callers, or allow the gateway",
            )
        if not self.security.allow_gateway:
            return  # nothing reaches the models from outside the mesh
        if (
            self.environment == "prod"
            and self.models
            and gateway.exposure == "public"
            and not gateway.source_ranges
            and self.security.jwt is None
        ):
            yield _KeyError(
                "gateway.exposure",
                "public",
                "prod would serve inference to anyone on the internet; set security.jwt (end-user tokens checked "
                "at the gateway), gateway.sourceRanges (client networks), or exposure: internal",
            )
        jwt = self.security.jwt
        if self.environment == "prod" and gateway.exposure == "public" and jwt is not None and not jwt.audiences:
            yield _KeyError(
                "security.jwt.audiences",
                [],
                "without an audience any token of the issuer is accepted, also one minted for another application; "
                "name the audience your identity provider puts in tokens for this API",
            )

    def _s3_sources_need_access(self) -> Iterator[_KeyError]:
        for path, version in self.versions():
            if version.source and version.source.startswith("s3://") and self.model_store.s3 is None:
                yield _KeyError(
                    f"{path}.source", version.source, "s3:// sources need modelStore.s3 (roleArn or access keys)"
                )

    def versions(self) -> Iterable[tuple[str, ModelVersion]]:
        """Every model version the stack serves, with its config key."""
        for i, model in enumerate(self.models):
            for track, version in model.tracks():
                yield f"models[{i}].{'mirror.version' if track == 'mirror' else track}", version

    def bucket_name(self, stack: str) -> str:
        return self.model_store.bucket_name or f"{self.gcp.project}-{stack}-models"

    def _prod_hardened(self) -> Iterator[_KeyError]:
        if self.environment != "prod":
            return
        if self.gateway.tls_credential_name is None:
            yield _KeyError("gateway.tlsCredentialName", None, "prod serves HTTPS only; name the gateway's TLS secret")
        for path, image in self.images():
            if not image_pinned(image):
                yield _KeyError(path, image, "prod images must be pinned by digest: 'repo@sha256:<64 hex>'")

    def images(self) -> Iterable[tuple[str, str]]:
        """Every container image the stack runs, with the config key that chooses it."""
        yield "inference.image", self.inference.image
        yield "modelStore.serverImage", self.model_store.server_image
        if self.autoscaled_models():
            yield "inference.metricsAdapterImage", self.inference.metrics_adapter_image
        yield "observability.collectorImage", self.observability.collector_image
        for path, version in self.versions():
            if version.image is not None:
                yield f"{path}.image", version.image

    def autoscaled_models(self) -> list[ServedModel]:
        """Models whose stable track the autoscaler sizes (every model that runs at all)."""
        return [m for m in self.models if m.min_replicas > 0]

    def pool_for(self, model: ServedModel) -> GpuPool:
        return next((p for p in self.gpu_pools if p.name == model.gpu_pool), self.gpu_pools[0])


def _bytes(quantity: str) -> int:
    """'32Gi' or '512Mi' (the forms the fields accept) in bytes."""
    return int(quantity[:-2]) * (1024**3 if quantity.endswith("Gi") else 1024**2)


class _FieldError(ValueError):
    """A rule of a nested model that blames one of its own keys (named relative to the model)."""

    def __init__(self, field: str, value: object, message: str):
        self.field, self.value = field, value
        super().__init__(message)


class _KeyError(ValueError):
    """A model-level rule that blames one key (pydantic would only name the model)."""

    def __init__(self, path: str, value: object, message: str):
        self.path, self.value = path, value
        super().__init__(message)


class _Problems(ValueError):
    """Several cross-field mistakes, reported together."""

    def __init__(self, problems: list[_KeyError]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def _duplicates(key: str, names: list[str]) -> Iterator[_KeyError]:
    for i, name in enumerate(names):
        if name in names[:i]:
            yield _KeyError(f"{key}[{i}].name", name, "is used twice; names must be unique")


def parse_stack_config(values: Mapping[str, Any]) -> StackConfig:
    """Validate the `llm-mesh:*` values of a stack (keys without the namespace) or raise ConfigError.

    Every mistake is reported in one run: pydantic checks the rules that span keys only once each key is
    valid, so after single-key mistakes the rules run again on a copy without the bad keys, and what they
    find about the other keys is reported too.
    """
    try:
        return StackConfig.model_validate(dict(values))
    except ValidationError as exc:
        errors = exc.errors()
    problems = [line for error in errors for line in _describe(error)]
    attempt: Any = copy.deepcopy(dict(values))
    for _ in range(3):
        single = [e for e in errors if not _is_cross_field(e)]
        if not single:
            break
        for error in single:
            _delete(attempt, tuple(error["loc"]))
        try:
            StackConfig.model_validate(attempt)
            break
        except ValidationError as again:
            errors = again.errors()
        problems += [line for e in errors if _is_cross_field(e) for line in _describe(e) if line not in problems]
    raise ConfigError(problems)


def _is_cross_field(error: Any) -> bool:
    return isinstance((error.get("ctx") or {}).get("error"), (_KeyError, _Problems))


def _delete(values: Any, loc: tuple[str | int, ...]) -> None:
    """Remove the value at a pydantic error location, so that the rest can be checked without it."""
    node = values
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(loc[-1], None)


# Config namespaces a stack may hold besides ours: the providers' own settings (gcp:project, kubernetes:...).
PROVIDER_NAMESPACES = frozenset({"gcp", "kubernetes", "pulumi"})


def config_from_pulumi(raw: Mapping[str, Any]) -> StackConfig:
    """Validate the config bag Pulumi hands a program (`"llm-mesh:key": value-or-JSON-string`).

    A key in a namespace nothing reads (`llm-mes:models`) is a typo whose value would silently vanish: refused.
    """
    values: dict[str, Any] = {}
    prefix = NAMESPACE + ":"
    foreign = []
    for key, value in raw.items():
        if key.startswith(prefix):
            values[key[len(prefix) :]] = _decode(value)
        elif key.split(":", 1)[0] not in PROVIDER_NAMESPACES:
            namespace, _, rest = key.partition(":")
            foreign.append(
                f"{key}: unknown config namespace {namespace!r}, read by nothing; did you mean '{prefix}{rest}'? "
                f"(this program reads {prefix}*; providers read {', '.join(sorted(PROVIDER_NAMESPACES))}:*)"
            )
    try:
        config = parse_stack_config(values)
    except ConfigError as exc:
        raise ConfigError(foreign + exc.problems) from None
    if foreign:
        raise ConfigError(foreign)
    return config


def load_stack_config() -> StackConfig:
    """The running program's stack config: what `pulumi up` (or the offline engine) handed it."""
    bag = {**pulumi_config.get_config_env(), **pulumi_config.CONFIG.get()}
    return config_from_pulumi(bag)


def _decode(value: Any) -> Any:
    # Pulumi passes structured config as JSON text and scalars as plain strings.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _describe(error: Any) -> list[str]:
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Problems):
        return [_blame(p) for p in cause.problems]
    if isinstance(cause, _KeyError):
        return [_blame(cause)]
    return [_describe_one(error)]


def _blame(problem: _KeyError) -> str:
    return f"{NAMESPACE}:{problem.path} = {problem.value!r}: {problem}"


def _describe_one(error: Any) -> str:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, _FieldError):
        return f"{_key_path((*loc, cause.field))} = {cause.value!r}: {cause}"
    if error["type"] == "int_parsing":
        return f"{_key_path(loc)} = {error['input']!r}: write a whole number, e.g. 8192"
    if error["type"] == "too_short" and isinstance(error["input"], list):
        return f"{_key_path(loc)} = []: list at least {ctx.get('min_length', 1)} entry"
    message = str(cause) if cause is not None else error["msg"]
    if error["type"] == "string_pattern_mismatch" and str(loc[-1]) in PATTERN_HINTS:
        message = PATTERN_HINTS[str(loc[-1])]
    if (
        error["type"] == "string_type"
        and isinstance(error["input"], (int, float))
        and not isinstance(error["input"], bool)
    ):
        message = "YAML read this as a number; write it in quotes, as text ('1.30', not 1.30, which is 1.3)"
    if error["type"] == "extra_forbidden":
        return f"{_key_path(loc)}: unknown key{_suggestion(loc)}"
    if error["type"] == "missing":
        return f"{_key_path(loc)}: required key is missing{MISSING_HINTS.get(str(loc[-1]), '')}"
    value = error["input"]
    holds_objects = isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict) for v in value))
    if holds_objects or any(str(part) in SECRET_KEYS for part in loc):
        # Objects may hold secrets, and a secret's value is never printed: name the key only.
        return f"{_key_path(loc)}: {message}"
    return f"{_key_path(loc)} = {value!r}: {message}"


# What a value that does not match its pattern should look like (pydantic would print the regular expression).
PATTERN_HINTS = {
    "project": (
        "a GCP project id: 6-30 lowercase letters, digits and hyphens, starting with a letter and not ending with a "
        "hyphen (the id, not the display name: see `gcloud projects list`)"
    ),
    "source": "use gs://BUCKET/PREFIX or s3://BUCKET/PREFIX (a lowercase bucket name, 3-63 characters)",
    "cidrBlock": "a CIDR block such as 203.0.113.0/24",
    "masterIpv4CidrBlock": "a /28 private range such as 172.16.0.0/28",
    "kubernetesVersion": "a Kubernetes minor such as '1.34', quoted",
    "bucketName": "a Cloud Storage bucket name: 3-63 lowercase letters, digits, '-', '_' and '.'",
    "kmsKeyName": "projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY",
    "roleArn": "arn:aws:iam::<12-digit account>:role/<name>",
    "cpu": "a CPU quantity such as '4' or '500m'",
    "memory": "a memory quantity such as '32Gi' or '512Mi'",
    "cacheSize": "a size such as '100Gi'",
    "shmSize": "a size such as '16Gi'",
    "version": "a version such as '1.31.1'",
    "previousVersion": "a version such as '1.30.5'",
    "domain": "a DNS domain such as llm.example.com (lowercase)",
    "canaryHeader": "an HTTP header name in lowercase, such as x-llm-mesh-canary",
    "path": "a path relative to the version's folder, such as model-00001-of-00004.safetensors (no spaces)",
    "sha256": "64 lowercase hexadecimal digits",
}

MISSING_HINTS = {
    "files": (
        "; list the version's files, weights included: `llm-mesh models push --stack ENV --model NAME --version V "
        "DIR` uploads a model folder and writes them"
    ),
    "shape": "; the GPU fit needs it: e.g. shape: {preset: llama-3.1-8b}",
    "contextLength": "; the context served (vLLM's --max-model-len), e.g. contextLength: 8192",
}


def _key_path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            # Defaults are reported by field name; users wrote (and read) the camelCase key.
            path += ("." if path else "") + to_camel(part)
    return f"{NAMESPACE}:{path}"


def _suggestion(loc: tuple[str | int, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    # A key of the enclosing object, one level too deep: YAML indentation, not spelling.
    outer = _model_at(loc[:-2]) if len(loc) >= 2 else None
    if outer is not None and outer is not model and loc[-1] in {f.alias or n for n, f in outer.model_fields.items()}:
        where = f"a key of {_key_path(loc[:-2])}" if loc[:-2] else f"a config key of its own, {_key_path(loc[-1:])}"
        return f"; it is {where}: check its indentation"
    known = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (known keys: {', '.join(known)})"


def _model_at(parts: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The config model that the key path `parts` names (list indexes skipped), or None."""
    model: type[BaseModel] | None = StackConfig
    for part in parts:
        if isinstance(part, int) or model is None:
            continue
        model = _submodel(model, part)
    return model


def _submodel(model: type[BaseModel], alias: str) -> type[BaseModel] | None:
    for name, field in model.model_fields.items():
        if (field.alias or name) == alias:
            return _model_in(field.annotation)
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
