"""The stack config's `gcp`, `cluster` and `gpuPools` sections: where the cluster runs and what its nodes carry."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from llm_mesh.plan import gpu, regions
from llm_mesh.plan.config.fields import CIDR, ConfigModel, Name, max_not_below_min

ReleaseChannel = Literal["RAPID", "REGULAR", "STABLE"]
DriverVersion = Literal["DEFAULT", "LATEST", "INSTALLATION_DISABLED"]


class GcpConfig(ConfigModel):
    project: str = Field(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    region: str = "us-central1"
    # Zones for GPU pools; empty means the zones GKE picks in the region.
    zones: list[str] = []

    @field_validator("region")
    @classmethod
    def _a_region(cls, region: str) -> str:
        problem = regions.region_problem(region)
        if problem:
            raise ValueError(problem)
        return region

    @field_validator("zones")
    @classmethod
    def _zones_in_region(cls, zones: list[str], info: ValidationInfo) -> list[str]:
        region = info.data.get("region")  # absent when refused: its zones are judged once it is right
        for zone in zones:
            problem = regions.zone_problem(zone, region) if region else None
            if problem:
                raise ValueError(problem)
        return zones


class AuthorizedNetwork(ConfigModel):
    cidr_block: str = Field(pattern=CIDR)
    display_name: str

    @field_validator("cidr_block")
    @classmethod
    def _a_network(cls, block: str) -> str:
        try:
            ipaddress.IPv4Network(block)
        except ValueError as exc:
            if "has host bits set" in str(exc):
                network = ipaddress.IPv4Network(block, strict=False)
                raise ValueError(f"host bits set: the network is {network}") from None
            raise ValueError(f"not an IPv4 network ({exc}); e.g. 198.51.100.0/24") from None
        return block


class MaintenanceWindow(ConfigModel):
    """A recurring window (RFC 5545 RRULE); GKE needs at least 48h of availability in 32 days."""

    start_time: str = "2025-01-04T03:00:00Z"
    end_time: str = "2025-01-04T09:00:00Z"
    recurrence: str = "FREQ=WEEKLY;BYDAY=SA,SU"


class SystemPool(ConfigModel):
    machine_type: str = "e2-standard-4"
    min_nodes: int = Field(default=1, ge=0)
    max_nodes: int = Field(default=3, ge=1)
    disk_size_gb: int = Field(default=100, ge=20)

    _max_not_below_min = max_not_below_min("Nodes")


class ClusterConfig(ConfigModel):
    name: Name = "llm-mesh"
    # Regional clusters keep the control plane up through a zone outage; zonal ones are cheaper.
    regional: bool = True
    release_channel: ReleaseChannel = "REGULAR"
    deletion_protection: bool = True
    network: str = "default"
    subnetwork: str | None = None
    master_ipv4_cidr_block: str = Field(default="172.16.0.0/28", pattern=r"^\d{1,3}(\.\d{1,3}){3}/28$")
    # Who may reach the API server's IP endpoints (kubectl over IP); the DNS endpoint does not consult it.
    master_authorized_networks: list[AuthorizedNetwork] = []
    private_endpoint: bool = False
    # GKE's DNS-based control-plane endpoint (gke-<id>.<region>.gke.goog): reachable from anywhere Google's APIs
    # are, each request checked against IAM (container.clusters.connect) before Kubernetes RBAC. The stack's
    # kubeconfig, and with it `pulumi up`, uses it, so a runner with no fixed address (GitHub-hosted) can deploy
    # a cluster whose IP endpoint admits only the authorized networks. False: the kubeconfig uses the IP endpoint.
    dns_endpoint: bool = True
    # Docker Hub's images (vLLM, nginx, the collector, Istio's) pulled through an Artifact Registry remote
    # repository the stack declares in its region: no anonymous pull limit on the Cloud NAT address, a copy
    # cached in-region for the next node. False: nodes pull from Docker Hub (not in prod while it runs any).
    image_mirror: bool = True
    # Private nodes reach public registries (Docker Hub, Istio's) and JWKS endpoints through Cloud NAT.
    # Turn off only when images come from Artifact Registry and the network has its own egress.
    cloud_nat: bool = True
    # The minor the release channel runs; rendered objects are validated against its schema.
    kubernetes_version: str = Field(default="1.34", pattern=r"^1\.\d+$")
    maintenance_window: MaintenanceWindow = MaintenanceWindow()
    system_pool: SystemPool = SystemPool()
    # Binary Authorization: the cluster admits images by the project's Binary Authorization policy (CIS GKE 5.10.4).
    binary_authorization: bool = True
    # Kubernetes Secrets encrypted with a Cloud KMS key the stack declares (CIS GKE 5.3.1). None: on in prod. A key
    # ring can never be deleted, so a stack torn down and brought up again keeps its name and reuses nothing:
    # bring it back with `pulumi import` of the ring, or rename the cluster.
    secrets_encryption: bool | None = None


class GpuSharing(ConfigModel):
    strategy: Literal["TIME_SHARING", "MPS"]
    max_shared_clients_per_gpu: int = Field(ge=2, le=48)


class Reservation(ConfigModel):
    consume: Literal["ANY_RESERVATION", "SPECIFIC_RESERVATION", "NO_RESERVATION"] = "SPECIFIC_RESERVATION"
    name: str | None = None

    @model_validator(mode="after")
    def _specific_needs_name(self) -> Reservation:
        if self.consume == "SPECIFIC_RESERVATION" and not self.name:
            raise ValueError("consume SPECIFIC_RESERVATION needs the reservation's name")
        return self


class GpuPool(ConfigModel):
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

    _max_not_below_min = max_not_below_min("Nodes")

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


def default_gpu_pools() -> list[GpuPool]:
    return [GpuPool(name="l4")]
