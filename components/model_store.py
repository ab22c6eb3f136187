"""ModelStore: the model artifact bucket, read-only identity for it, imports from S3, and an in-mesh HTTP server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.shared.iam import service_account_member, workload_identity
from components.shared.manifests import declare
from components.shared.pods import (
    image_skips,
    mesh_pod_annotations,
    pod_security,
    pull_policy,
    restricted,
    scanner_skips,
    zone_spread,
)
from llm_mesh.mesh import ObjectMeta, ServiceEntry
from llm_mesh.mesh.networking import ServiceEntryPort, ServiceEntrySpec
from llm_mesh.plan.config import ModelStoreConfig, ModelVersion, S3Import, StackConfig
from llm_mesh.plan.gcp_names import service_account_id
from llm_mesh.plan.object_urls import ObjectUrl
from llm_mesh.plan.topology import METADATA_SERVER, MODEL_STORE, MODEL_STORE_LABELS, MODEL_STORE_PORT

meta = k8s.meta.v1
core = k8s.core.v1
ARTIFACT_ROOT = "/usr/share/nginx/html/models"  # served as /models/<model>/<version>/<file>
# How far ahead of the program's clock an import is dated (see import_date).
IMPORT_LEAD = timedelta(hours=1)


def import_date(now: datetime) -> date:
    """The day an import job created now runs on: today (UTC), or tomorrow within the last hour of the day.

    Storage Transfer runs a job whose end date is its start date "only one time", at once when that day is today
    and no start time is set; a start date already past when the job is created moves the first run to the next
    day (the API reference's Schedule), after such a job's end date. Dated an hour ahead, a job created up to an
    hour after `pulumi up` began still runs: at once, or at midnight UTC.
    """
    return (now.astimezone(UTC) + IMPORT_LEAD).date()


@dataclass(frozen=True)
class ImportSource:
    """One model version to import: s3:// or gs://bucket/prefix into <model>/<version>/ of the store."""

    model: str
    version: ModelVersion

    @property
    def location(self) -> ObjectUrl:
        return ObjectUrl.parse(self.version.source or "")

    @property
    def sink_path(self) -> str:
        return f"{self.model}/{self.version.version}/"


@dataclass(frozen=True)
class ModelStoreArgs:
    project: str
    bucket_name: str
    location: str
    store: ModelStoreConfig
    imports: list[ImportSource]
    # Prod keeps the bucket through a bad `up` or a `destroy`: protected, and retained if ever deleted.
    protect: bool
    # The day a new import job runs on, once.
    import_date: date

    @classmethod
    def from_config(cls, config: StackConfig, stack: str, now: datetime | None = None) -> ModelStoreArgs:
        bucket = config.bucket_name(stack)
        imports = [
            ImportSource(model.name, version)
            for model in config.models
            for _, version in model.tracks()
            if version.source
        ]
        # A gs:// source already where the store serves it needs no copy.
        imports = [
            i
            for i in imports
            if (i.location.scheme, i.location.bucket, i.location.prefix) != ("gs", bucket, i.sink_path)
        ]
        # One import per version, whichever tracks serve it: during a promotion stable and canary share one.
        imports = list({i.sink_path: i for i in imports}.values())
        return cls(
            project=config.gcp.project,
            bucket_name=config.bucket_name(stack),
            location=config.model_store.location or config.gcp.region,
            store=config.model_store,
            imports=imports,
            protect=config.environment == "prod",
            import_date=import_date(now or datetime.now(UTC)),
        )


class ModelStore(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:storage:ModelStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        store = args.store
        key_grants = [_kms_grant(name, args, child)] if store.kms_key_name else []
        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            name=args.bucket_name,
            project=args.project,
            location=args.location,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        days_since_noncurrent_time=store.noncurrent_version_retention_days, with_state="ARCHIVED"
                    ),
                )
            ],
            encryption=gcp.storage.BucketEncryptionArgs(default_kms_key_name=store.kms_key_name)
            if store.kms_key_name
            else None,
            force_destroy=False,
            labels={"app": "llm-mesh", "role": "models"},
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect, depends_on=key_grants
            ),
        )
        reader = gcp.serviceaccount.Account(
            f"{name}-reader",
            project=args.project,
            account_id=service_account_id(args.bucket_name, "read"),
            display_name=f"Reads model artifacts from {args.bucket_name}",
            opts=child,
        )
        # Read-only, and on this bucket alone.
        gcp.storage.BucketIAMMember(
            f"{name}-reader-objects",
            bucket=self.bucket.name,
            role="roles/storage.objectViewer",
            member=service_account_member(reader.email),
            opts=child,
        )
        workload_identity(f"{name}-reader-workload-identity", args.project, reader, store.namespace, MODEL_STORE, child)
        if args.imports:
            _imports(name, args, self.bucket, child)
        k8s_opts = pulumi.ResourceOptions(parent=self)
        core.ServiceAccount(
            f"{name}-ksa",
            metadata=meta.ObjectMetaArgs(
                name=MODEL_STORE,
                namespace=store.namespace,
                annotations={"iam.gke.io/gcp-service-account": reader.email},
            ),
            opts=k8s_opts,
        )
        # The GCS FUSE sidecar reaches Cloud Storage through the mesh, whose egress is REGISTRY_ONLY.
        declare(storage_api_entry(store.namespace), k8s_opts)
        _server(name, args, self.bucket.name, k8s_opts)
        self.register_outputs({"bucket": self.bucket.name})


def storage_api_entry(namespace: str) -> ServiceEntry:
    return ServiceEntry(
        metadata=ObjectMeta(name="storage-googleapis", namespace=namespace),
        spec=ServiceEntrySpec(
            hosts=["storage.googleapis.com"],
            ports=[ServiceEntryPort(number=443, name="https", protocol="TLS")],
            location="MESH_EXTERNAL",
            resolution="DNS",
            export_to=["."],
        ),
    )


def _kms_grant(name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions) -> gcp.kms.CryptoKeyIAMMember:
    """Cloud Storage encrypts with the key as its own service agent, which must be allowed to use it."""
    agent = gcp.storage.get_project_service_account_output(project=args.project)
    return gcp.kms.CryptoKeyIAMMember(
        f"{name}-cmek",
        crypto_key_id=str(args.store.kms_key_name),
        role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
        member=service_account_member(agent.email_address),
        opts=opts,
    )


def _imports(name: str, args: ModelStoreArgs, bucket: gcp.storage.Bucket, opts: pulumi.ResourceOptions) -> None:
    """A Storage Transfer job per imported version; its service agent may write to this bucket only."""
    agent = gcp.storage.get_transfer_project_service_account_output(project=args.project)
    grants = [
        gcp.storage.BucketIAMMember(
            f"{name}-transfer-{role.split('.')[-1]}",
            bucket=bucket.name,
            role=role,
            member=service_account_member(agent.email),
            opts=opts,
        )
        for role in ("roles/storage.legacyBucketWriter", "roles/storage.objectViewer")
    ]
    # A gs:// source is read by the same agent: it may list and read that bucket, nothing more.
    for source_bucket in sorted({i.location.bucket for i in args.imports if i.location.scheme == "gs"}):
        for role in ("roles/storage.legacyBucketReader", "roles/storage.objectViewer"):
            grants.append(
                gcp.storage.BucketIAMMember(
                    f"{name}-transfer-reads-{source_bucket}-{role.split('.')[-1]}",
                    bucket=source_bucket,
                    role=role,
                    member=service_account_member(agent.email),
                    opts=opts,
                )
            )
    # A version's files never change: an import runs once (start and end on one day, see import_date) and
    # overwrites nothing. Later `up`s leave the schedule as the job was created: a later date would run it again.
    # (A job created by an older release keeps its daily schedule; it overwrites nothing now.)
    day = {"year": args.import_date.year, "month": args.import_date.month, "day": args.import_date.day}
    once = gcp.storage.TransferJobScheduleArgs(
        schedule_start_date=gcp.storage.TransferJobScheduleScheduleStartDateArgs(**day),
        schedule_end_date=gcp.storage.TransferJobScheduleScheduleEndDateArgs(**day),
    )
    for source in args.imports:
        gcp.storage.TransferJob(
            f"{name}-import-{source.model}-{source.version.version}",
            project=args.project,
            description=f"import {source.model} {source.version.version} from {source.version.source}",
            transfer_spec=_transfer_spec(args.store.s3, source, bucket.name),
            schedule=once,
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(depends_on=grants, ignore_changes=["schedule"])
            ),
        )


def _transfer_spec(
    s3: S3Import | None, source: ImportSource, bucket: pulumi.Input[str]
) -> gcp.storage.TransferJobTransferSpecArgs:
    storage = gcp.storage
    sink = storage.TransferJobTransferSpecGcsDataSinkArgs(bucket_name=bucket, path=source.sink_path)
    options = storage.TransferJobTransferSpecTransferOptionsArgs(overwrite_when="NEVER")
    origin = source.location
    path = origin.prefix or None
    if origin.scheme == "gs":
        gcs = storage.TransferJobTransferSpecGcsDataSourceArgs(bucket_name=origin.bucket, path=path)
        return storage.TransferJobTransferSpecArgs(gcs_data_source=gcs, gcs_data_sink=sink, transfer_options=options)
    assert s3 is not None, "config validation requires modelStore.s3 for s3:// sources"
    if s3.endpoint is not None:
        compatible = storage.TransferJobTransferSpecAwsS3CompatibleDataSourceArgs(
            bucket_name=origin.bucket, path=path, endpoint=s3.endpoint, region=s3.region
        )
        return storage.TransferJobTransferSpecArgs(
            aws_s3_compatible_data_source=compatible,
            source_agent_pool_name=s3.agent_pool,
            gcs_data_sink=sink,
            transfer_options=options,
        )
    access_key = None
    if s3.access_key_id is not None and s3.secret_access_key is not None:
        # Secrets stay secrets: wrapped before they reach a resource, so state and previews show [secret].
        access_key = storage.TransferJobTransferSpecAwsS3DataSourceAwsAccessKeyArgs(
            access_key_id=pulumi.Output.secret(s3.access_key_id.get_secret_value()),
            secret_access_key=pulumi.Output.secret(s3.secret_access_key.get_secret_value()),
        )
    aws = storage.TransferJobTransferSpecAwsS3DataSourceArgs(
        bucket_name=origin.bucket, path=path, role_arn=s3.role_arn, aws_access_key=access_key
    )
    return storage.TransferJobTransferSpecArgs(aws_s3_data_source=aws, gcs_data_sink=sink, transfer_options=options)


def _server(name: str, args: ModelStoreArgs, bucket: pulumi.Input[str], opts: pulumi.ResourceOptions) -> None:
    store = args.store
    labels = MODEL_STORE_LABELS
    annotations = {
        "gke-gcsfuse/volumes": "true",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": METADATA_SERVER,
        **mesh_pod_annotations(),
    }
    probe = core.HTTPGetActionArgs(path="/", port="http")
    server = core.ContainerArgs(
        name="server",
        image=store.server_image,
        image_pull_policy=pull_policy(store.server_image),
        ports=[core.ContainerPortArgs(name="http", container_port=MODEL_STORE_PORT)],
        # The GCS FUSE sidecar reads the bucket; nginx only copies what it reads to the socket.
        resources=core.ResourceRequirementsArgs(
            requests={"cpu": "250m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "512Mi"}
        ),
        readiness_probe=core.ProbeArgs(http_get=probe, period_seconds=5),
        liveness_probe=core.ProbeArgs(http_get=probe, period_seconds=15, failure_threshold=4),
        volume_mounts=[
            core.VolumeMountArgs(name="artifacts", mount_path=ARTIFACT_ROOT, read_only=True),
            core.VolumeMountArgs(name="tmp", mount_path="/tmp"),
        ],
        security_context=restricted(run_as_non_root=True, read_only_root=True),
    )
    artifacts = core.VolumeArgs(
        name="artifacts",
        csi=core.CSIVolumeSourceArgs(
            driver="gcsfuse.csi.storage.gke.io",
            read_only=True,
            volume_attributes={"bucketName": bucket, "mountOptions": "implicit-dirs"},
        ),
    )
    k8s.apps.v1.Deployment(
        f"{name}-server",
        metadata=meta.ObjectMetaArgs(
            name=MODEL_STORE,
            namespace=store.namespace,
            labels=labels,
            annotations=scanner_skips(image_skips(store.server_image)) or None,
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=store.replicas,
            selector=meta.LabelSelectorArgs(match_labels=labels),
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(labels=labels, annotations=annotations),
                spec=core.PodSpecArgs(
                    service_account_name=MODEL_STORE,
                    # nginx calls no Kubernetes API; the FUSE sidecar gets its Google token from the GKE
                    # metadata server (Workload Identity), istio-proxy from its own projected token.
                    automount_service_account_token=False,
                    # nginx-unprivileged runs as any UID; on a read-only root it writes only to /tmp (an emptyDir).
                    security_context=pod_security(),
                    containers=[server],
                    volumes=[artifacts, core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs())],
                    topology_spread_constraints=zone_spread(labels),
                ),
            ),
        ),
        opts=opts,
    )
    core.Service(
        f"{name}-svc",
        metadata=meta.ObjectMetaArgs(name=MODEL_STORE, namespace=store.namespace, labels=labels),
        spec=core.ServiceSpecArgs(
            selector=labels,
            ports=[core.ServicePortArgs(name="http", port=80, target_port="http", app_protocol="http")],
        ),
        opts=opts,
    )
    k8s.policy.v1.PodDisruptionBudget(
        f"{name}-pdb",
        metadata=meta.ObjectMetaArgs(name=MODEL_STORE, namespace=store.namespace),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            min_available=1, selector=meta.LabelSelectorArgs(match_labels=labels)
        ),
        opts=opts,
    )
