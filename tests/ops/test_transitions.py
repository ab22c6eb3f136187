"""Whether an update can be applied: a physical name that an update creates while a resource it deletes later
still holds it (Pulumi creates before it deletes; the API answers AlreadyExists)."""

from __future__ import annotations

from typing import Any

from llm_mesh.ops.diff import State, diff, json_report, text_report
from llm_mesh.ops.transitions import name_conflicts, physical_name

JOB = "kubernetes:batch/v1:Job"


def job(resource: str, name: str, namespace: str = "inference") -> State:
    inputs: dict[str, Any] = {"kind": "Job", "metadata": {"name": name, "namespace": namespace}}
    return State(f"urn:pulumi:prod::llm-mesh::{JOB}::{resource}", JOB, "", inputs, custom=True)


def by_urn(*states: State) -> dict[str, State]:
    return {s.urn: s for s in states}


def test_a_name_taken_over_from_a_resource_deleted_in_the_same_update_cannot_apply() -> None:
    """The promotion of old: stable's gate replaced under the name the canary's gate, deleted in the same
    update, still holds."""
    base = by_urn(job("llama-stable-weights", "llama-weights-v1"), job("llama-canary-weights", "llama-weights-v2"))
    head = by_urn(job("llama-stable-weights", "llama-weights-v2"))
    result = diff(base, head)
    [conflict] = name_conflicts(result)
    assert conflict.name == "Job inference/llama-weights-v2"
    assert conflict.message().startswith(
        "kubernetes:batch/v1:Job llama-stable-weights creates Job inference/llama-weights-v2, which "
        "kubernetes:batch/v1:Job llama-canary-weights holds until it is deleted later in the same update: "
        "Kubernetes answers AlreadyExists (Pulumi creates before it deletes)"
    )
    assert text_report(result, base, head).startswith("Cannot apply: kubernetes:batch/v1:Job llama-stable-weights")
    assert json_report(result)["cannotApply"][0]["heldBy"] == conflict.held_by.urn


def test_names_of_their_own_and_a_replacement_in_place_apply() -> None:
    base = by_urn(job("stable", "llama-stable-weights-v1"), job("canary", "llama-canary-weights-v2"))
    head = by_urn(job("stable", "llama-stable-weights-v2"))
    assert name_conflicts(diff(base, head)) == []
    # The same URN replaced under its own name: the provider deletes it first.
    same = by_urn(job("stable", "llama-stable-weights-v1"))
    changed = State(same[next(iter(same))].urn, JOB, "", {**job("stable", "llama-stable-weights-v1").inputs, "x": 1})
    assert name_conflicts(diff(same, {changed.urn: changed})) == []
    # The same name in another namespace is another object.
    assert name_conflicts(diff(by_urn(job("a", "n", "one")), by_urn(job("b", "n", "two")))) == []


def test_google_cloud_names_are_scoped_by_project_and_location() -> None:
    def job_of(resource: str, name: str, project: str) -> State:
        inputs = {"name": name, "project": project}
        return State(
            f"urn:pulumi:prod::llm-mesh::gcp:storage/transferJob:TransferJob::{resource}",
            "gcp:storage/transferJob:TransferJob",
            "",
            inputs,
        )

    assert physical_name(job_of("a", "transferJobs/x", "p")) == "TransferJob p/transferJobs/x"
    assert len(name_conflicts(diff(by_urn(job_of("a", "n", "p")), by_urn(job_of("b", "n", "p"))))) == 1
    assert name_conflicts(diff(by_urn(job_of("a", "n", "p")), by_urn(job_of("b", "n", "q")))) == []


def test_a_name_another_resource_keeps_cannot_be_taken() -> None:
    """A promotion's first update of old: stable's gate renamed to the canary's version while the canary, still
    declared, keeps its gate of that name."""
    base = by_urn(job("stable", "llama-weights-v1"), job("canary", "llama-weights-v2"))
    head = by_urn(job("stable", "llama-weights-v2"), job("canary", "llama-weights-v2"))
    [conflict] = name_conflicts(diff(base, head))
    assert (conflict.created.name, conflict.held_by.name, conflict.deleted) == ("stable", "canary", False)
    assert (
        "which kubernetes:batch/v1:Job canary holds and keeps: Kubernetes answers AlreadyExists" in conflict.message()
    )
    # Two new resources with one name: said once.
    assert len(name_conflicts(diff({}, by_urn(job("a", "same"), job("b", "same"))))) == 1


PROVIDER = "pulumi:providers:kubernetes"
CLUSTER_PATH = "projects/p/locations/us-central1/clusters/llm-mesh-prod"


def provider(kubeconfig: str, identifier: str | None = None) -> State:
    """The stack's Kubernetes provider as a document holds it: the kubeconfig a secret, with its fingerprint."""
    inputs: dict[str, Any] = {"kubeconfig": "[secret]", "enableServerSideApply": "true"}
    if identifier is not None:
        inputs["clusterIdentifier"] = identifier
    urn = f"urn:pulumi:prod::llm-mesh::{PROVIDER}::gpu-k8s"
    return State(urn, PROVIDER, "", inputs, secrets={"kubeconfig": kubeconfig}, custom=True)


def test_a_kubeconfig_moved_to_another_server_without_an_identifier_replaces_every_object() -> None:
    """An existing stack (no clusterIdentifier) whose kubeconfig moves from the IP to the DNS endpoint, the
    identifier added in the same update: pulumi-kubernetes' DiffConfig replaces the provider."""
    result = diff(by_urn(provider("ip")), by_urn(provider("dns", CLUSTER_PATH)))
    [change] = result.changes
    assert change.kind == "replace"
    report = text_report(result, {}, {})
    assert report.startswith(
        "Cannot apply: pulumi:providers:kubernetes gpu-k8s is replaced (its kubeconfig changes and no unchanged "
        "clusterIdentifier says the cluster is the same)"
    )
    assert (
        json_report(result)["cannotApply"][0]["replaced"]
        == "urn:pulumi:prod::llm-mesh::pulumi:providers:kubernetes::gpu-k8s"
    )


def test_the_identifier_alone_first_then_the_server_is_two_updates_in_place() -> None:
    added = diff(by_urn(provider("ip")), by_urn(provider("ip", CLUSTER_PATH)))
    assert [c.kind for c in added.changes] == ["update"]
    moved = diff(by_urn(provider("ip", CLUSTER_PATH)), by_urn(provider("dns", CLUSTER_PATH)))
    assert [c.kind for c in moved.changes] == ["update"]
    assert "Cannot apply" not in text_report(moved, {}, {})


def test_another_cluster_identifier_is_another_cluster() -> None:
    other = diff(by_urn(provider("dns", CLUSTER_PATH)), by_urn(provider("dns", CLUSTER_PATH + "-2")))
    assert [c.kind for c in other.changes] == ["replace"]
