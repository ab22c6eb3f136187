"""InferenceService: one served model as stable/canary/mirror Deployments of an OpenAI-compatible server."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.shared.pods import (
    image_skips,
    mesh_pod_annotations,
    node_spread,
    pod_security,
    pull_policy,
    restricted,
    scanner_skips,
    zone_spread,
)
from llm_mesh.plan import inference
from llm_mesh.plan.config import GpuPool, ModelVersion, RoutingConfig, ServedModel, StackConfig
from llm_mesh.plan.gpu_fit import Fit
from llm_mesh.plan.observability import otlp_endpoint, trace_identity
from llm_mesh.plan.placement import COMPUTE_CLASS_LABEL, class_for
from llm_mesh.plan.topology import (
    MERGED_METRICS_PORT,
    POOL_LABEL,
    SAFE_TO_EVICT,
    SHAPE_ANNOTATION,
    TRACK_LABEL,
    WEIGHTS_GATE_LABELS,
    ModelNames,
)

meta = k8s.meta.v1
# A pod that is not ready (crash-looping, still loading weights) may always be evicted: the budget guards serving
# pods, and a bad canary's crash-looping pods must not hold a node drain or a scale-down for an hour.
EVICT_UNHEALTHY = "AlwaysAllow"
core = k8s.core.v1
GPU = "nvidia.com/gpu"
# A GPU pod waits for a node to scale up, a multi-GB image and the weights: far past the 10-minute default. A
# Deployment's rollout may take that once per pod (llm_mesh.plan.inference.rollout_seconds).
ROLLOUT_SECONDS = 45 * 60
ROLLOUT_TIMEOUTS = pulumi.CustomTimeouts(create=f"{ROLLOUT_SECONDS}s", update=f"{ROLLOUT_SECONDS}s")
# GKE taints GPU nodes with nvidia.com/gpu=present:NoSchedule; GPU pods must tolerate it.
GPU_TOLERATION = core.TolerationArgs(key=GPU, operator="Exists", effect="NoSchedule")
# vLLM's queue length: requests waiting for a GPU slot, scraped by Google managed Prometheus.
QUEUE_METRIC = "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
QUEUE_TARGET_PER_REPLICA = "10"
MODEL_LABEL = "llm_mesh_model"
TRACK_METRIC_LABEL = "llm_mesh_track"
PROXY_CONFIG = "proxy.istio.io/config"
# The server writes caches under its home (vLLM, Triton, CUDA, FlashInfer) and sockets under /tmp: both are
# emptyDirs, so that the image's root file system stays read-only.
SERVER_HOME = "/home/vllm"
# vllm/vllm-openai has no user but root. What it is denied instead: every capability, escalation, a writable image.
ROOT_SERVER_SKIPS = {
    "CKV_K8S_23": "vllm/vllm-openai runs as root (its image has no other user); it drops every capability, "
    "cannot escalate and its root file system is read-only",
    "CKV_K8S_40": "vllm/vllm-openai runs as root (its image has no other user), so no high UID either",
    "CKV_K8S_11": "a CPU quota throttles vLLM's scheduler and tokenizer and leaves the GPU waiting; the server "
    "requests its CPU on GPU nodes no other workload tolerates",
}


@dataclass(frozen=True)
class InferenceServiceArgs:
    names: ModelNames
    # The model's own pool first, then the pools it may overflow to.
    pools: list[GpuPool]
    fit: Fit
    default_image: str
    store_namespace: str
    # The weights gate runs the model store's small image (sh and wget), already on the system nodes.
    gate_image: str
    routing: RoutingConfig
    # With overflow pools: the GKE ComputeClass that grows them in order (llm_mesh.plan.placement).
    compute_class: str | None = None
    # Where the server sends its spans, whether with vLLM's detailed timings, and the environment it reports.
    otlp_endpoint: str | None = None
    detailed_traces: bool = False
    environment: str = "prod"
    # The cluster's name, as managed Prometheus labels every series it scrapes there (resource.labels.cluster).
    cluster: str = ""

    @classmethod
    def for_model(cls, config: StackConfig, names: ModelNames, cluster: str = "") -> InferenceServiceArgs:
        model = names.model
        return cls(
            names,
            config.pools_for(model),
            config.fit_for(model),
            config.inference.image,
            config.model_store.namespace,
            config.model_store.server_image,
            config.routing,
            plan.name if (plan := class_for(config, model)) else None,
            otlp_endpoint(config.observability),
            config.observability.detailed_traces,
            config.environment,
            cluster,
        )


class InferenceService(pulumi.ComponentResource):
    def __init__(self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-mesh:inference:InferenceService", name, None, opts)
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        namespace = names.namespace
        core.ServiceAccount(
            f"{name}-sa",
            metadata=meta.ObjectMetaArgs(name=names.service_account, namespace=namespace, labels=names.labels()),
            opts=child,
        )
        for track in names.tracks:
            version = inference.version_of(names.model, track)
            gates = []
            if inference.replicas(names.model, track) != 0:
                gates = [_weights_gate(f"{name}-{track}-weights", args, track, version, child)]
            deployment_opts = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=gates))
            _deployment(f"{name}-{track}", args, track, deployment_opts)
        core.Service(
            f"{name}-svc",
            metadata=meta.ObjectMetaArgs(name=names.service, namespace=namespace, labels=names.labels()),
            spec=core.ServiceSpecArgs(
                selector=names.labels(),
                # A named http port (and appProtocol) lets Istio treat the traffic as HTTP without sniffing.
                ports=[
                    core.ServicePortArgs(
                        name="http", port=inference.SERVER_PORT, target_port="http", app_protocol="http"
                    )
                ],
            ),
            opts=child,
        )
        stable_selector = meta.LabelSelectorArgs(match_labels=names.labels("stable"))
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta.ObjectMetaArgs(name=names.service, namespace=namespace),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1, selector=stable_selector, unhealthy_pod_eviction_policy=EVICT_UNHEALTHY
            ),
            opts=child,
        )
        if "canary" in names.tracks and inference.disruption_budgeted(names.model, "canary"):
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-canary-pdb",
                metadata=meta.ObjectMetaArgs(name=f"{names.service}-canary", namespace=namespace),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                    max_unavailable=1,
                    selector=meta.LabelSelectorArgs(match_labels=names.labels("canary")),
                    unhealthy_pod_eviction_policy=EVICT_UNHEALTHY,
                ),
                opts=child,
            )
        model = names.model
        _pod_monitoring(f"{name}-metrics", names, child)
        if inference.replicas(model, "stable") is None:
            _autoscaler(f"{name}-hpa", names, args.cluster, child)
        self.register_outputs({"host": names.host, "tracks": names.tracks})


def _pod_monitoring(resource_name: str, names: ModelNames, opts: pulumi.ResourceOptions) -> None:
    """Managed Prometheus scrapes the server's metrics (merged into the sidecar's, plaintext on 15020):
    the queue depth the autoscaler reads and the latency, throughput and GPU-time figures of vLLM."""
    k8s.apiextensions.CustomResource(
        resource_name,
        api_version="monitoring.googleapis.com/v1",
        kind="PodMonitoring",
        metadata={"name": names.service, "namespace": names.namespace, "labels": names.labels()},
        spec={
            "selector": {"matchLabels": names.labels()},
            "endpoints": [{"port": MERGED_METRICS_PORT, "path": "/stats/prometheus", "interval": "15s"}],
            # Label the series with the model and track from the pod: the served name may hold '/', which a
            # metric selector cannot match, and the autoscaler must see stable's queue, not the canary's.
            "targetLabels": {
                "fromPod": [
                    {"from": "app.kubernetes.io/name", "to": MODEL_LABEL},
                    {"from": TRACK_LABEL, "to": TRACK_METRIC_LABEL},
                ]
            },
        },
        opts=opts,
    )


def _autoscaler(resource_name: str, names: ModelNames, cluster: str, opts: pulumi.ResourceOptions) -> None:
    model = names.model
    # Scales stable on queue depth from managed Prometheus (needs the custom metrics adapter); without the
    # adapter the metric is missing and the autoscaler keeps the current count: minReplicas is the floor.
    k8s.autoscaling.v2.HorizontalPodAutoscaler(
        resource_name,
        metadata=meta.ObjectMetaArgs(name=f"{names.service}-stable", namespace=names.namespace),
        spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
            scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                api_version="apps/v1", kind="Deployment", name=f"{names.service}-stable"
            ),
            min_replicas=model.min_replicas,
            max_replicas=model.max_replicas,
            metrics=[
                k8s.autoscaling.v2.MetricSpecArgs(
                    type="External",
                    external=k8s.autoscaling.v2.ExternalMetricSourceArgs(
                        metric=k8s.autoscaling.v2.MetricIdentifierArgs(
                            name=QUEUE_METRIC,
                            selector=meta.LabelSelectorArgs(
                                match_labels={
                                    # This cluster's series only: another cluster of the project with the same
                                    # model and track would otherwise be summed in.
                                    **({"resource.labels.cluster": cluster} if cluster else {}),
                                    f"metric.labels.{MODEL_LABEL}": model.name,
                                    f"metric.labels.{TRACK_METRIC_LABEL}": "stable",
                                }
                            ),
                        ),
                        target=k8s.autoscaling.v2.MetricTargetArgs(
                            type="AverageValue", average_value=QUEUE_TARGET_PER_REPLICA
                        ),
                    ),
                )
            ],
            behavior=k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
                # A new replica takes minutes to load weights: scale down slowly, not on one quiet minute.
                scale_down=k8s.autoscaling.v2.HPAScalingRulesArgs(stabilization_window_seconds=600)
            ),
        ),
        opts=opts,
    )


def _weights_gate(
    resource_name: str, args: InferenceServiceArgs, track: str, version: ModelVersion, opts: pulumi.ResourceOptions
) -> k8s.batch.v1.Job:
    """A Job that completes once the store serves every file of the version; the track's Deployment waits for it."""
    names = args.names
    base_url = inference.store_url(names, args.store_namespace, version)
    job_name = inference.weights_gate_name(names.service, track, version.version)
    container = core.ContainerArgs(
        name="check",
        image=args.gate_image,
        command=inference.weights_gate_command(base_url, version),
        resources=core.ResourceRequirementsArgs(
            requests={"cpu": "50m", "memory": "32Mi"}, limits={"cpu": "100m", "memory": "64Mi"}
        ),
        image_pull_policy=pull_policy(args.gate_image),
        security_context=restricted(run_as_non_root=True, read_only_root=True),
    )
    return k8s.batch.v1.Job(
        resource_name,
        metadata=meta.ObjectMetaArgs(
            name=job_name,
            namespace=names.namespace,
            labels=names.labels(),
            annotations={
                # A gate that failed (weights late past its deadline) is replaced on the next `pulumi up` instead
                # of being waited on forever: a Job cannot be changed, and a failed one never completes.
                "pulumi.com/replaceUnready": "true",
                **scanner_skips(image_skips(args.gate_image)),
            },
        ),
        spec=k8s.batch.v1.JobSpecArgs(
            backoff_limit=0,
            active_deadline_seconds=inference.WEIGHTS_WAIT_SECONDS + 300,
            template=core.PodTemplateSpecArgs(
                # Reads the store as the model's own identity, which the store's policy admits.
                metadata=meta.ObjectMetaArgs(labels=WEIGHTS_GATE_LABELS, annotations=mesh_pod_annotations()),
                spec=core.PodSpecArgs(
                    service_account_name=names.service_account,
                    # wget needs no Kubernetes API; istio-proxy has its own projected token.
                    automount_service_account_token=False,
                    security_context=pod_security(),
                    restart_policy="Never",
                    containers=[container],
                ),
            ),
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(custom_timeouts=ROLLOUT_TIMEOUTS)),
    )


def class_toleration(compute_class: str | None) -> list[core.TolerationArgs]:
    """The taint a compute class's pools carry, tolerated by the pods that select the class."""
    if compute_class is None:
        return []
    return [core.TolerationArgs(key=COMPUTE_CLASS_LABEL, operator="Equal", value=compute_class, effect="NoSchedule")]


def pool_affinity(pools: list[GpuPool]) -> core.AffinityArgs:
    """Only the model's pools, preferring its own: overflow pools (e.g. spot) take what it cannot hold."""
    return core.AffinityArgs(
        node_affinity=core.NodeAffinityArgs(
            required_during_scheduling_ignored_during_execution=core.NodeSelectorArgs(
                node_selector_terms=[
                    core.NodeSelectorTermArgs(
                        match_expressions=[
                            core.NodeSelectorRequirementArgs(
                                key=POOL_LABEL, operator="In", values=[p.name for p in pools]
                            )
                        ]
                    )
                ]
            ),
            preferred_during_scheduling_ignored_during_execution=[
                core.PreferredSchedulingTermArgs(
                    weight=100,
                    preference=core.NodeSelectorTermArgs(
                        match_expressions=[
                            core.NodeSelectorRequirementArgs(key=POOL_LABEL, operator="In", values=[pools[0].name])
                        ]
                    ),
                )
            ]
            if len(pools) > 1
            else None,
        )
    )


def _deployment(
    resource_name: str, args: InferenceServiceArgs, track: str, opts: pulumi.ResourceOptions
) -> k8s.apps.v1.Deployment:
    names, pool, fit = args.names, args.pools[0], args.fit
    model = names.model
    version = inference.version_of(model, track)
    labels = {**names.labels(track), "llm-mesh/model-version": version.version}
    gpus = str(fit.tensor_parallel)
    base_url = inference.store_url(names, args.store_namespace, version)
    image = version.image or args.default_image
    # The server image runs as root: no runAsNonRoot (the Deployment says so to the scanner, ROOT_SERVER_SKIPS).
    security = restricted(read_only_root=True)
    probe = core.HTTPGetActionArgs(path="/health", port="http")
    server = core.ContainerArgs(
        name="server",
        image=image,
        image_pull_policy=pull_policy(image),
        args=inference.server_args(model, version, fit, args.otlp_endpoint, args.detailed_traces),
        ports=[core.ContainerPortArgs(name="http", container_port=inference.SERVER_PORT)],
        env=[
            core.EnvVarArgs(name="HF_HUB_OFFLINE", value="1"),
            core.EnvVarArgs(name="VLLM_NO_USAGE_STATS", value="1"),
            core.EnvVarArgs(name="HOME", value=SERVER_HOME),
            *(
                core.EnvVarArgs(name=key, value=value)
                for key, value in inference.tracing_env(names, track, version, args.environment).items()
            ),
        ],
        resources=core.ResourceRequirementsArgs(
            requests={"cpu": model.cpu, "memory": model.memory, GPU: gpus},
            limits={"memory": model.memory, GPU: gpus},
        ),
        startup_probe=core.ProbeArgs(
            http_get=probe,
            period_seconds=inference.STARTUP_PERIOD_SECONDS,
            failure_threshold=inference.STARTUP_FAILURES,
        ),
        readiness_probe=core.ProbeArgs(http_get=probe, period_seconds=5, failure_threshold=3),
        liveness_probe=core.ProbeArgs(http_get=probe, period_seconds=15, failure_threshold=4, timeout_seconds=5),
        volume_mounts=[
            core.VolumeMountArgs(name="models", mount_path=inference.MODEL_DIR, read_only=True),
            core.VolumeMountArgs(name="dshm", mount_path="/dev/shm"),
            core.VolumeMountArgs(name="home", mount_path=SERVER_HOME),
            core.VolumeMountArgs(name="tmp", mount_path="/tmp"),
        ],
        # Out of the Service first, then the requests in flight finish, then SIGTERM.
        lifecycle=core.LifecycleArgs(
            pre_stop=core.LifecycleHandlerArgs(exec_=core.ExecActionArgs(command=inference.drain_command(args.routing)))
        ),
        security_context=security,
    )
    fetch = core.ContainerArgs(
        name="fetch-model",
        image=image,
        image_pull_policy=pull_policy(image),
        command=inference.fetch_command(base_url, version),
        # One download and one sha256 at a time: two CPUs never throttle it.
        resources=core.ResourceRequirementsArgs(
            requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "2", "memory": "1Gi"}
        ),
        volume_mounts=[core.VolumeMountArgs(name="models", mount_path=inference.MODEL_DIR)],
        security_context=security,
    )
    pod = core.PodSpecArgs(
        service_account_name=names.service_account,
        # Neither vLLM nor the fetch calls the Kubernetes API; istio-proxy has its own projected token.
        automount_service_account_token=False,
        security_context=pod_security(run_as_user=None),
        node_selector={
            "cloud.google.com/gke-accelerator": pool.accelerator,
            **({COMPUTE_CLASS_LABEL: args.compute_class} if args.compute_class else {}),
        },
        affinity=pool_affinity(args.pools),
        tolerations=[GPU_TOLERATION, *class_toleration(args.compute_class)],
        init_containers=[fetch],
        containers=[server],
        volumes=[
            core.VolumeArgs(name="models", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit=model.cache_size)),
            # vLLM's workers share tensors through /dev/shm; the container default of 64Mi is far too small.
            core.VolumeArgs(
                name="dshm", empty_dir=core.EmptyDirVolumeSourceArgs(medium="Memory", size_limit=model.shm_size)
            ),
            # Unbounded, as the writable image layer they replace was.
            core.VolumeArgs(name="home", empty_dir=core.EmptyDirVolumeSourceArgs()),
            core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs()),
        ],
        termination_grace_period_seconds=inference.grace_period_seconds(args.routing),
        # The canary's two pods on two nodes, always: one node lost (a spot preemption) must not take both.
        topology_spread_constraints=[
            *zone_spread(names.labels(track)),
            *node_spread(names.labels(track), required=track == "canary"),
        ],
    )
    mesh = mesh_pod_annotations(drain_seconds=inference.grace_period_seconds(args.routing))
    # The proxy's span tags and access log lines read the model, track and version from its environment.
    mesh[PROXY_CONFIG] = inference.with_proxy_env(
        mesh[PROXY_CONFIG], trace_identity(model.name, track, version.version)
    )
    annotations = {
        # Istio merges these into the sidecar's metrics endpoint (15020), which scrapes work on under STRICT mTLS.
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(inference.SERVER_PORT),
        "prometheus.io/path": "/metrics",
        **mesh,
        SHAPE_ANNOTATION: json.dumps(dataclasses.asdict(fit.shape), sort_keys=True),
        # The cluster autoscaler gives a pod it evicts to remove a node at most 10 minutes, less than the drain
        # (the route timeout, then the grace): it removes GPU nodes once they are empty. Fewer replicas come from
        # the autoscaler's scale-down, whose terminations get the whole grace period; node upgrades honour the
        # disruption budget and the grace too.
        SAFE_TO_EVICT: "false",
    }
    return k8s.apps.v1.Deployment(
        resource_name,
        metadata=meta.ObjectMetaArgs(
            name=f"{names.service}-{track}",
            namespace=names.namespace,
            labels=labels,
            annotations=scanner_skips({**ROOT_SERVER_SKIPS, **image_skips(image)}),
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=inference.replicas(model, track),  # None: the autoscaler owns the count
            selector=meta.LabelSelectorArgs(match_labels=names.labels(track)),
            # Never two new GPU pods at once: GPU capacity is rarely spare.
            strategy=k8s.apps.v1.DeploymentStrategyArgs(
                type="RollingUpdate",
                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=0),
            ),
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(labels=labels, annotations=annotations), spec=pod
            ),
            progress_deadline_seconds=ROLLOUT_SECONDS,
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(custom_timeouts=rollout_timeouts(model, track))),
    )


def rollout_timeouts(model: ServedModel, track: str) -> pulumi.CustomTimeouts:
    seconds = inference.rollout_seconds(model, track, ROLLOUT_SECONDS)
    return pulumi.CustomTimeouts(create=f"{seconds}s", update=f"{seconds}s")
