"""GpuCluster under the mock runtime, in process, for pool shapes the stacks do not use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.cluster import GpuCluster, GpuClusterArgs
from llm_mesh.config import ConfigError, StackConfig, parse_stack_config
from llm_mesh.offline.document import preview_document
from llm_mesh.offline.engine import RecordingMonitor, record, run_main
from llm_mesh.stackfile import Project, StackSettings, read_stack_settings
from tests.helpers import prop, resource

NODE_POOL = "gcp:container/nodePool:NodePool"


def stack_config(**changes: Any) -> StackConfig:
    return parse_stack_config(
        {"environment": "dev", "gcp": {"project": "llm-mesh-test", "zones": ["us-central1-a"]}, **changes}
    )


def preview_of(config: StackConfig) -> dict[str, Any]:
    def program() -> None:
        GpuCluster("gpu", GpuClusterArgs.from_config(config, "test"))

    return preview_document(record(program, "llm-mesh", "test", StackSettings({})))


@pytest.mark.usefixtures("fresh_loop")
def test_reservation_sharing_and_mig_reach_the_node_pool() -> None:
    config = stack_config(
        gpuPools=[
            {
                "name": "a100",
                "accelerator": "nvidia-a100-80gb",
                "machineType": "a2-ultragpu-8g",
                "reservation": {"name": "team-a100"},
                "migPartitionSize": "1g.10gb",
                "driverVersion": "DEFAULT",
            },
            {
                "name": "l4-shared",
                "machineType": "g2-standard-8",
                "sharing": {"strategy": "TIME_SHARING", "maxSharedClientsPerGpu": 4},
            },
        ]
    )
    document = preview_of(config)
    a100 = resource(document, NODE_POOL, "gpu-a100")
    assert prop(a100, "nodeConfig.reservationAffinity") == {
        "consumeReservationType": "SPECIFIC_RESERVATION",
        "key": "compute.googleapis.com/reservation-name",
        "values": ["team-a100"],
    }
    assert prop(a100, "nodeConfig.guestAccelerators.0.count") == 8
    assert prop(a100, "nodeConfig.guestAccelerators.0.gpuPartitionSize") == "1g.10gb"
    assert prop(a100, "nodeConfig.guestAccelerators.0.gpuDriverInstallationConfig.gpuDriverVersion") == "DEFAULT"
    assert prop(a100, "nodeConfig.spot") is False
    shared = resource(document, NODE_POOL, "gpu-l4-shared")
    assert prop(shared, "nodeConfig.guestAccelerators.0.gpuSharingConfig") == {
        "gpuSharingStrategy": "TIME_SHARING",
        "maxSharedClientsPerGpu": 4,
    }
    assert "reservationAffinity" not in shared["inputs"]["nodeConfig"]


@pytest.mark.usefixtures("fresh_loop")
def test_node_service_account_has_only_the_node_roles() -> None:
    document = preview_of(stack_config())
    roles = sorted(
        s["newState"]["inputs"]["role"] for s in document["steps"] if s["newState"]["type"].endswith(":IAMMember")
    )
    assert roles == sorted(
        [
            "roles/artifactregistry.reader",
            "roles/logging.logWriter",
            "roles/monitoring.metricWriter",
            "roles/monitoring.viewer",
            "roles/stackdriver.resourceMetadata.writer",
        ]
    )
    account = resource(document, "gcp:serviceaccount/account:Account", "gpu-nodes")
    assert account["inputs"]["accountId"] == "llm-mesh-test-nodes"
    system = resource(document, NODE_POOL, "gpu-system")
    assert "guestAccelerators" not in system["inputs"]["nodeConfig"]


@pytest.mark.usefixtures("fresh_loop")
def test_config_error_declares_no_resource() -> None:
    """The real program, a broken stack config: the error comes before any resource but the stack."""
    project = Project.find(Path(__file__).parent)
    good = read_stack_settings(project, "dev")
    config = {**good.config, "llm-mesh:gpuPools": '[{"name": "l4", "machineType": "n2-standard-8"}]'}
    monitor = RecordingMonitor()
    with pytest.raises(ConfigError, match=r"gpuPools\[0\]\.machineType = 'n2-standard-8'"):
        record(
            lambda: run_main(project.root),
            "llm-mesh",
            "dev",
            StackSettings(config),
            monitor,
        )
    assert [r.type for r in monitor.registrations] == ["pulumi:pulumi:Stack"]
