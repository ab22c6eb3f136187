"""The inference service and the model store, as each stack's offline preview declares them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from llm_mesh.engine.values import UNKNOWN
from llm_mesh.plan.config import parse_stack_config
from llm_mesh.plan.inference import replicas
from tests.conftest import STACKS
from tests.helpers import prop, resource, served_model, steps_of_type, version

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
BUCKET = "gcp:storage/bucket:Bucket"
TRANSFER = "gcp:storage/transferJob:TransferJob"


def pod(document: dict[str, Any], name: str) -> dict[str, Any]:
    return prop(resource(document, DEPLOYMENT, name), "spec.template.spec")


@pytest.mark.parametrize("stack", STACKS)
def test_inference_pods_fit_gpu_nodes(previews: dict[str, Any], stack: str) -> None:
    spec = pod(previews[stack], "model-llama-31-8b-stable")
    server = spec["containers"][0]
    assert server["resources"]["requests"]["nvidia.com/gpu"] == server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-l4"
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert server["startupProbe"]["failureThreshold"] * server["startupProbe"]["periodSeconds"] >= 1800, (
        "model loads take many minutes"
    )
    assert server["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert server["securityContext"]["allowPrivilegeEscalation"] is False
    assert server["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["initContainers"][0]["name"] == "fetch-model", "the model is fetched before the server starts"
    assert spec["serviceAccountName"] == "llama-31-8b"
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"


def test_tracks_carry_their_version_labels_and_images(previews: dict[str, Any]) -> None:
    document = previews["prod"]
    for track, name in (("stable", "v1"), ("canary", "v2"), ("mirror", "v3-rc1")):
        deployment = resource(document, DEPLOYMENT, f"model-llama-31-8b-{track}")
        labels = prop(deployment, "spec.template.metadata.labels")
        assert labels["version"] == track and labels["llm-mesh/model-version"] == name
        assert prop(deployment, "spec.selector.matchLabels")["version"] == track
        assert "@sha256:" in prop(deployment, "spec.template.spec.containers.0.image")
    service = resource(document, "kubernetes:core/v1:Service", "model-llama-31-8b-svc")
    assert prop(service, "spec.ports") == [{"name": "http", "port": 8000, "targetPort": "http", "appProtocol": "http"}]
    assert "version" not in prop(service, "spec.selector"), "the Service spans every track; subsets split them"


def test_autoscaler_owns_the_stable_replica_count(previews: dict[str, Any]) -> None:
    document = previews["prod"]
    stable = resource(document, DEPLOYMENT, "model-llama-31-8b-stable")
    assert "replicas" not in stable["inputs"]["spec"]
    hpa = resource(document, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "model-llama-31-8b-hpa")
    assert prop(hpa, "spec.minReplicas") == 2 and prop(hpa, "spec.maxReplicas") == 6
    assert (
        prop(hpa, "spec.metrics.0.external.metric.name") == "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
    )
    assert prop(resource(document, DEPLOYMENT, "model-llama-31-8b-canary"), "spec.replicas") == 2
    pdb = resource(document, "kubernetes:policy/v1:PodDisruptionBudget", "model-llama-31-8b-pdb")
    assert prop(pdb, "spec.maxUnavailable") == 1


def test_canary_replicas_follow_the_weight() -> None:
    def model(weight: int, min_replicas: int = 4) -> Any:
        config = served_model("m", canary=version("v2"), canaryWeight=weight, minReplicas=min_replicas, maxReplicas=8)
        return parse_stack_config(
            {"environment": "dev", "gcp": {"project": "llm-mesh-test"}, "models": [config]}
        ).models[0]

    assert replicas(model(0), "canary") == 1, "a canary with no traffic stays warm: the first step finds a pod"
    assert replicas(model(10), "canary") == 2, "a canary taking traffic keeps serving when one pod goes"
    assert replicas(model(50), "canary") == 2
    assert replicas(model(10), "stable") is None
    assert replicas(model(100), "canary") == 4
    off = model(10, min_replicas=0)
    assert [replicas(off, track) for track in ("stable", "canary", "mirror")] == [0, 0, 0], "minReplicas 0 turns it off"


@pytest.mark.parametrize("stack", STACKS)
def test_model_bucket_is_hardened(previews: dict[str, Any], stack: str) -> None:
    bucket = resource(previews[stack], BUCKET, "models-bucket")
    assert prop(bucket, "name") == f"llm-mesh-{stack}-{stack}-models"
    assert prop(bucket, "uniformBucketLevelAccess") is True
    assert prop(bucket, "publicAccessPrevention") == "enforced"
    assert prop(bucket, "versioning") == {"enabled": True}
    assert prop(bucket, "lifecycleRules.0.condition.daysSinceNoncurrentTime") == 30
    assert bucket["protect"] is (stack == "prod")
    assert bucket.get("retainOnDelete", False) is (stack == "prod")


def test_model_store_identity_is_read_only_on_its_bucket(previews: dict[str, Any]) -> None:
    document = previews["prod"]
    grant = resource(document, "gcp:storage/bucketIAMMember:BucketIAMMember", "models-reader-objects")
    assert prop(grant, "role") == "roles/storage.objectViewer"
    binding = resource(document, "gcp:serviceaccount/iAMMember:IAMMember", "models-reader-workload-identity")
    assert prop(binding, "member") == "serviceAccount:llm-mesh-prod.svc.id.goog[model-store/model-store]"
    ksa = resource(document, "kubernetes:core/v1:ServiceAccount", "models-ksa")
    # The Google account's email exists only after deployment: the annotation is honestly unknown offline.
    assert prop(ksa, "metadata.annotations") == {"iam.gke.io/gcp-service-account": UNKNOWN}


def test_model_store_serves_the_bucket_read_only_inside_the_mesh(previews: dict[str, Any]) -> None:
    deployment = resource(previews["prod"], DEPLOYMENT, "models-server")
    annotations = prop(deployment, "spec.template.metadata.annotations")
    assert annotations["gke-gcsfuse/volumes"] == "true"
    assert annotations["traffic.sidecar.istio.io/excludeOutboundIPRanges"] == "169.254.169.254/32"
    spec = prop(deployment, "spec.template.spec")
    volume = next(v for v in spec["volumes"] if v["name"] == "artifacts")
    assert volume["csi"]["driver"] == "gcsfuse.csi.storage.gke.io" and volume["csi"]["readOnly"] is True
    assert volume["csi"]["volumeAttributes"]["bucketName"] == "llm-mesh-prod-prod-models"
    server = spec["containers"][0]
    assert (
        server["securityContext"]["runAsNonRoot"] is True
        and server["securityContext"]["readOnlyRootFilesystem"] is True
    )
    assert server["readinessProbe"]["httpGet"]["port"] == "http"
    pdb = resource(previews["prod"], "kubernetes:policy/v1:PodDisruptionBudget", "models-pdb")
    assert prop(pdb, "spec.minAvailable") == 1


def test_staging_imports_its_canary_from_s3(previews: dict[str, Any]) -> None:
    jobs = steps_of_type(previews["staging"], TRANSFER)
    assert [s["urn"].rsplit("::", 1)[1] for s in jobs] == ["models-import-llama-31-8b-v2"]
    spec = prop(jobs[0]["newState"], "transferSpec")
    assert spec["awsS3DataSource"] == {
        "bucketName": "llm-registry-staging",
        "path": "llama-31-8b/v2/",
        "roleArn": "arn:aws:iam::123456789012:role/llm-mesh-transfer",
    }
    assert spec["gcsDataSink"] == {"bucketName": "llm-mesh-staging-staging-models", "path": "llama-31-8b/v2/"}
    assert "getTransferProjectServiceAccount.email" in previews["staging"]["offline"]["knownAfterDeploy"]
    prod_jobs = [s["urn"].rsplit("::", 1)[1] for s in steps_of_type(previews["prod"], TRANSFER)]
    assert prod_jobs == [
        "models-import-llama-31-8b-v1",
        "models-import-llama-31-8b-v2",
        "models-import-llama-31-8b-v3-rc1",
    ], "prod imports every version from its registry bucket"


def test_prod_imports_each_version_once_and_overwrite_nothing(previews: dict[str, Any]) -> None:
    """One run on the day the job is made (start and end dates equal, no time of day, no repeat), and never over a
    file the store holds: a version's files do not change."""
    for step in steps_of_type(previews["prod"], TRANSFER):
        job = step["newState"]
        assert prop(job, "transferSpec.transferOptions") == {"overwriteWhen": "NEVER"}
        schedule = prop(job, "schedule")
        assert set(schedule) == {"scheduleStartDate", "scheduleEndDate"}, "no startTimeOfDay, no repeatInterval"
        assert schedule["scheduleStartDate"] == schedule["scheduleEndDate"]
        day = date(*(int(schedule["scheduleStartDate"][k]) for k in ("year", "month", "day")))
        assert abs(day - datetime.now(UTC).date()) <= timedelta(days=1), "today, or tomorrow near midnight (UTC)"


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (datetime(2026, 12, 2, 9, 30, tzinfo=UTC), date(2026, 12, 2)),
        (datetime(2026, 12, 2, 22, 59, tzinfo=UTC), date(2026, 12, 2)),
        # Created up to an hour later, a job dated today could be created tomorrow, and never run.
        (datetime(2026, 12, 2, 23, 30, tzinfo=UTC), date(2026, 12, 3)),
        # A clock in another time zone: the service's days are UTC's.
        (datetime(2026, 12, 2, 20, 30, tzinfo=timezone(timedelta(hours=-8))), date(2026, 12, 3)),
    ],
)
def test_an_import_is_dated_the_day_it_can_still_run(now: datetime, day: date) -> None:
    from components.model_store import import_date

    assert import_date(now) == day


@pytest.mark.usefixtures("fresh_loop")
def test_an_import_job_keeps_the_schedule_it_was_made_with() -> None:
    """The date is the day of the `pulumi up` that makes the job: a later up would move it and run the job again."""
    from components.model_store import ModelStore, ModelStoreArgs
    from llm_mesh.engine.run import record
    from llm_mesh.engine.stackfile import StackSettings

    config = store_config(s3={"roleArn": "arn:aws:iam::123456789012:role/t"})
    made = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)

    def program() -> None:
        ModelStore("models", ModelStoreArgs.from_config(config, "test", now=made))

    jobs = [r for r in record(program, "llm-mesh", "test", StackSettings({})).resources if r.type == TRANSFER]
    assert [r.name for r in jobs] == ["models-import-m-v2", "models-import-m-v3"]
    for job in jobs:
        assert job.ignore_changes == ["schedule"]
        once = {"year": 2026.0, "month": 12.0, "day": 2.0}
        assert job.inputs["schedule"] == {"scheduleStartDate": once, "scheduleEndDate": once}


@pytest.mark.usefixtures("fresh_loop")
def test_s3_access_keys_stay_secret() -> None:
    from components.model_store import ModelStore, ModelStoreArgs
    from llm_mesh.engine.document import preview_document
    from llm_mesh.engine.run import record
    from llm_mesh.engine.stackfile import StackSettings

    config = parse_stack_config(
        {
            "environment": "dev",
            "gcp": {"project": "llm-mesh-test"},
            "modelStore": {"s3": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "very-secret"}},
            "models": [served_model("m", stable=version("v1", source="s3://registry/m/v1"))],
        }
    )

    def program() -> None:
        ModelStore("models", ModelStoreArgs.from_config(config, "test"))

    document = preview_document(record(program, "llm-mesh", "test", StackSettings({})))
    text = json.dumps(document)
    assert "very-secret" not in text and "AKIAEXAMPLE" not in text
    job = steps_of_type(document, TRANSFER)[0]["newState"]
    assert prop(job, "transferSpec.awsS3DataSource.awsAccessKey") == {
        "accessKeyId": "[secret]",
        "secretAccessKey": "[secret]",
    }


def test_model_store_may_reach_cloud_storage_under_registry_only(previews: dict[str, Any]) -> None:
    entry = resource(
        previews["prod"], "kubernetes:networking.istio.io/v1:ServiceEntry", "model-store-storage-googleapis"
    )
    assert prop(entry, "spec.hosts") == ["storage.googleapis.com"]
    assert prop(entry, "spec.location") == "MESH_EXTERNAL" and prop(entry, "spec.resolution") == "DNS"


def test_autoscaler_reads_stable_queue_by_labels_a_selector_can_match(previews: dict[str, Any]) -> None:
    document = previews["prod"]
    hpa = resource(document, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "model-llama-31-8b-hpa")
    assert prop(hpa, "spec.metrics.0.external.metric.selector.matchLabels") == {
        "resource.labels.cluster": "llm-mesh-prod",
        "metric.labels.llm_mesh_model": "llama-31-8b",
        "metric.labels.llm_mesh_track": "stable",
    }
    monitoring = resource(
        document, "kubernetes:monitoring.googleapis.com/v1:PodMonitoring", "model-llama-31-8b-metrics"
    )
    assert prop(monitoring, "spec.endpoints.0") == {"port": 15020, "path": "/stats/prometheus", "interval": "15s"}
    assert {"from": "app.kubernetes.io/name", "to": "llm_mesh_model"} in prop(monitoring, "spec.targetLabels.fromPod")


def test_inference_rollouts_may_take_long(previews: dict[str, Any]) -> None:
    deployment = resource(previews["prod"], DEPLOYMENT, "model-llama-31-8b-stable")
    # 45 minutes a pod, one pod at a time, up to stable's maxReplicas (6): Kubernetes' deadline is per pod.
    assert deployment["customTimeouts"] == {"create": 2700 * 6, "update": 2700 * 6}
    assert prop(deployment, "spec.progressDeadlineSeconds") == 2700
    canary = resource(previews["prod"], DEPLOYMENT, "model-llama-31-8b-canary")
    assert canary["customTimeouts"] == {"create": 2700 * 2, "update": 2700 * 2}


def test_a_canary_at_weight_zero_gets_no_route() -> None:
    from llm_mesh.plan.routing import virtual_service
    from llm_mesh.plan.topology import model_names

    config = parse_stack_config(
        {
            "environment": "dev",
            "gcp": {"project": "llm-mesh-test"},
            "models": [served_model("m", canary=version("v2"), canaryWeight=0)],
        }
    )
    routes = virtual_service(model_names(config)[0], config.routing).manifest()["spec"]["http"]
    assert [r["name"] for r in routes] == ["stable"]
    assert all(d["destination"]["subset"] == "stable" for r in routes for d in r["route"])


def store_config(**model_store: Any) -> Any:
    return parse_stack_config(
        {
            "environment": "dev",
            "gcp": {"project": "llm-mesh-test"},
            "modelStore": model_store,
            "models": [
                served_model(
                    "m",
                    stable=version("v1", source="gs://llm-mesh-test-test-models/m/v1/"),
                    canary=version("v2", source="gs://partner-weights/m/v2"),
                    mirror={"version": version("v3", source="s3://registry/m/v3")},
                    canaryWeight=10,
                )
            ],
        }
    )


def test_imports_skip_what_the_store_already_serves() -> None:
    from components.model_store import ModelStoreArgs

    args = ModelStoreArgs.from_config(store_config(s3={"roleArn": "arn:aws:iam::123456789012:role/t"}), "test")
    assert [
        (i.version.version, i.location.scheme, i.location.bucket, i.location.prefix, i.sink_path) for i in args.imports
    ] == [
        ("v2", "gs", "partner-weights", "m/v2/", "m/v2/"),
        ("v3", "s3", "registry", "m/v3/", "m/v3/"),
    ]


@pytest.mark.usefixtures("fresh_loop")
def test_foreign_buckets_and_cmek_get_the_grants_they_need() -> None:
    from components.model_store import ModelStore, ModelStoreArgs
    from llm_mesh.engine.document import preview_document
    from llm_mesh.engine.run import record
    from llm_mesh.engine.stackfile import StackSettings

    key = "projects/p/locations/us/keyRings/r/cryptoKeys/models"
    config = store_config(s3={"roleArn": "arn:aws:iam::123456789012:role/t"}, kmsKeyName=key)

    def program() -> None:
        ModelStore("models", ModelStoreArgs.from_config(config, "test"))

    document = preview_document(record(program, "llm-mesh", "test", StackSettings({})))
    grants = {
        (s["newState"]["inputs"]["bucket"], s["newState"]["inputs"]["role"])
        for s in steps_of_type(document, "gcp:storage/bucketIAMMember:BucketIAMMember")
    }
    assert ("partner-weights", "roles/storage.objectViewer") in grants
    assert ("partner-weights", "roles/storage.legacyBucketReader") in grants
    jobs = {s["urn"].rsplit("::", 1)[1]: s["newState"] for s in steps_of_type(document, TRANSFER)}
    assert prop(jobs["models-import-m-v2"], "transferSpec.gcsDataSource") == {
        "bucketName": "partner-weights",
        "path": "m/v2/",
    }
    kms = resource(document, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember", "models-cmek")
    assert prop(kms, "cryptoKeyId") == key and prop(kms, "role") == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    bucket = resource(document, BUCKET, "models-bucket")
    assert kms["urn"] in bucket["dependencies"], "the key is usable before the bucket is created with it"
    assert prop(bucket, "encryption.defaultKmsKeyName") == key


def test_a_canary_taking_traffic_survives_the_loss_of_a_pod(previews: dict[str, Any]) -> None:
    """Two pods, spread over nodes, evicted one at a time: a drain or a preemption never empties its subset."""
    document = previews["prod"]
    canary = resource(document, "kubernetes:apps/v1:Deployment", "model-llama-31-8b-canary")
    assert prop(canary, "spec.replicas") >= 2
    spread = prop(canary, "spec.template.spec.topologySpreadConstraints")
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    budget = resource(document, "kubernetes:policy/v1:PodDisruptionBudget", "model-llama-31-8b-canary-pdb")
    assert prop(budget, "spec.maxUnavailable") == 1
    assert prop(budget, "spec.selector.matchLabels") == prop(canary, "spec.selector.matchLabels")


def test_every_label_the_autoscaler_selects_is_one_the_pod_monitoring_writes_from_stable_pods(
    previews: dict[str, Any],
) -> None:
    """Each `metric.labels.X: value` of the HPA's selector is a label the PodMonitoring copies from a pod label
    (targetLabels.fromPod), and the stable pods carry that pod label with that value: otherwise the selector
    matches no series and the autoscaler never scales."""
    document = previews["prod"]
    # A copy: the document is the session's, shared by every test of this worker.
    selector = dict(
        prop(
            resource(document, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "model-llama-31-8b-hpa"),
            "spec.metrics.0.external.metric.selector.matchLabels",
        )
    )
    monitoring = resource(
        document, "kubernetes:monitoring.googleapis.com/v1:PodMonitoring", "model-llama-31-8b-metrics"
    )
    copied = {entry["to"]: entry["from"] for entry in prop(monitoring, "spec.targetLabels.fromPod")}
    stable = resource(document, DEPLOYMENT, "model-llama-31-8b-stable")
    pod_labels = prop(stable, "spec.template.metadata.labels")
    scraped = prop(monitoring, "spec.selector.matchLabels")
    assert scraped.items() <= pod_labels.items(), "the PodMonitoring scrapes the stable pods"
    assert selector, "the autoscaler selects by label"
    # Managed Prometheus puts the cluster's name on every series it scrapes there (prometheus_target's `cluster`).
    assert selector.pop("resource.labels.cluster") == "llm-mesh-prod"
    for key, value in selector.items():
        label = key.removeprefix("metric.labels.")
        assert label in copied, f"{label} is not written by the PodMonitoring"
        assert pod_labels.get(copied[label]) == value, (label, copied[label], pod_labels)
