"""The stack config's rules that span keys (and sections), each yielding every problem it finds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from llm_mesh.plan import gpu_fit
from llm_mesh.plan.config.fields import docker_hub_path, image_pinned
from llm_mesh.plan.config.problems import KeyProblem

if TYPE_CHECKING:
    from llm_mesh.plan.config.mesh import GatewayConfig
    from llm_mesh.plan.config.stack import StackConfig


def names_and_pools(config: StackConfig) -> Iterator[KeyProblem]:
    yield from _duplicates("gpuPools", [p.name for p in config.gpu_pools])
    yield from _duplicates("models", [m.name for m in config.models])
    pools = {p.name: p for p in config.gpu_pools}
    for i, model in enumerate(config.models):
        if model.gpu_pool is not None and model.gpu_pool not in pools:
            yield KeyProblem(f"models[{i}].gpuPool", model.gpu_pool, f"names no GPU pool; use one of {sorted(pools)}")
            continue
        own = config.pool_for(model)
        for j, name in enumerate(model.overflow_pools):
            key = f"models[{i}].overflowPools[{j}]"
            other = pools.get(name)
            if other is None:
                yield KeyProblem(key, name, f"names no GPU pool; use one of {sorted(pools)}")
            elif name == own.name:
                yield KeyProblem(key, name, "is the model's own gpuPool already")
            elif (other.accelerator, other.mig_partition_size, other.sharing) != (
                own.accelerator,
                own.mig_partition_size,
                own.sharing,
            ):
                yield KeyProblem(
                    key,
                    name,
                    f"carries other GPUs than pool {own.name!r} (accelerator, MIG partition or sharing); the "
                    "server's flags are decided once, so an overflow pool must carry the same GPU",
                )
        for pool in config.pools_for(model):
            if model.gpus_per_replica is not None and model.gpus_per_replica > pool.gpu_count:
                yield KeyProblem(
                    f"models[{i}].gpusPerReplica",
                    model.gpus_per_replica,
                    f"a {pool.machine_type} node in pool {pool.name!r} has {pool.gpu_count} GPU(s)",
                )
    # A pool in a compute class is tainted for it: every model on that pool must use the same class.
    classes: dict[str, tuple[str, ...]] = {}
    for i, model in enumerate(config.models):
        if model.gpu_pool is not None and model.gpu_pool not in pools:
            continue
        order = tuple(p.name for p in config.pools_for(model))
        for pool_name in order:
            taken = classes.setdefault(pool_name, order)
            if taken != order:
                yield KeyProblem(
                    f"models[{i}].overflowPools" if model.overflow_pools else f"models[{i}].gpuPool",
                    list(order[1:]) if model.overflow_pools else order[0],
                    f"pool {pool_name!r} is already used in the order {list(taken)} by another model; models "
                    "sharing a pool must list the same pools in the same order (GKE places them by one "
                    "compute class per pool)",
                )
                break
    used = {pool.name for model in config.models for pool in config.pools_for(model)}
    for i, pool in enumerate(config.gpu_pools):
        if pool.name not in used:
            yield KeyProblem(
                f"gpuPools[{i}].name",
                pool.name,
                "no model can run on this pool (pays for nodes nothing schedules on); name it in a model's "
                "gpuPool or overflowPools, or remove the pool",
            )


def models_fit_their_gpus(config: StackConfig) -> Iterator[KeyProblem]:
    names = {p.name for p in config.gpu_pools}
    for i, model in enumerate(config.models):
        if not {model.gpu_pool or config.gpu_pools[0].name, *model.overflow_pools} <= names:
            continue  # the fit reads the pools a model names: a wrong name is reported already
        shape = model.shape.resolve()
        if model.gpus_per_replica is not None:
            problem = gpu_fit.tensor_parallel_problem(shape, model.gpus_per_replica)
            if problem:
                yield KeyProblem(f"models[{i}].gpusPerReplica", model.gpus_per_replica, problem)
                continue
        fit = config.fit_for(model)
        pool = config.pool_for(model)
        problem = fit.problem()
        if problem:
            key = "contextLength" if fit.kv_budget_per_gpu > 0 else "gpuPool"
            value = model.context_length if key == "contextLength" else pool.name
            yield KeyProblem(f"models[{i}].{key}", value, f"{problem} (pool {pool.name!r})")
        for j, name in enumerate(model.overflow_pools):
            other = next(p for p in config.gpu_pools if p.name == name)
            if other.gpu_count < fit.tensor_parallel:
                yield KeyProblem(
                    f"models[{i}].overflowPools[{j}]",
                    name,
                    f"its {other.machine_type} nodes have {other.gpu_count} GPU(s); a replica needs "
                    f"{fit.tensor_parallel}",
                )


def _public_gateway_fronted(gateway: GatewayConfig) -> Iterator[KeyProblem]:
    """A public prod gateway admits only the client networks it names, and each gateway pod only so many requests
    a second: a token holder's flood would otherwise queue every GPU."""
    if not gateway.source_ranges:
        yield KeyProblem(
            "gateway.sourceRanges",
            [],
            "a public prod gateway would admit any address on the internet; list the client networks (CIDRs), or "
            "set exposure: internal and put an L7 load balancer with Cloud Armor in front",
        )
    for i, cidr in enumerate(gateway.source_ranges):
        if cidr.endswith("/0"):
            yield KeyProblem(f"gateway.sourceRanges[{i}]", cidr, "admits every address; list the client networks")
    if gateway.rate_limit is None:
        yield KeyProblem(
            "gateway.rateLimit",
            None,
            "a public prod gateway needs a request rate limit; set requestsPerSecondPerPod and burstPerPod",
        )


def not_anonymous_in_prod(config: StackConfig) -> Iterator[KeyProblem]:
    gateway = config.gateway
    if not config.security.allow_gateway and not config.security.callers:
        yield KeyProblem(
            "security.allowGateway",
            False,
            "with the gateway not allowed and no security.callers, nothing could call the models; name the "
            "in-mesh callers, or allow the gateway",
        )
    if not config.security.allow_gateway:
        return  # nothing reaches the models from outside the mesh
    if config.environment == "prod" and gateway.exposure == "public":
        yield from _public_gateway_fronted(gateway)
    jwt = config.security.jwt
    if config.environment == "prod" and gateway.exposure == "public" and jwt is not None and not jwt.audiences:
        yield KeyProblem(
            "security.jwt.audiences",
            [],
            "without an audience any token of the issuer is accepted, also one minted for another application; "
            "name the audience your identity provider puts in tokens for this API",
        )


def s3_sources_need_access(config: StackConfig) -> Iterator[KeyProblem]:
    for path, version in config.versions():
        if version.source and version.source.startswith("s3://") and config.model_store.s3 is None:
            yield KeyProblem(
                f"{path}.source", version.source, "s3:// sources need modelStore.s3 (roleArn or access keys)"
            )


def prod_hardened(config: StackConfig) -> Iterator[KeyProblem]:
    if config.environment != "prod":
        return
    if config.gateway.tls_credential_name is None:
        yield KeyProblem("gateway.tlsCredentialName", None, "prod serves HTTPS only; name the gateway's TLS secret")
    for path, image in config.images():
        if not image_pinned(image):
            yield KeyProblem(path, image, "prod images must be pinned by digest: 'repo@sha256:<64 hex>'")
    from_docker_hub = [path for path, image in config.images() if docker_hub_path(image) is not None]
    if not config.cluster.image_mirror and from_docker_hub:
        yield KeyProblem(
            "cluster.imageMirror",
            False,
            f"prod would pull {', '.join(from_docker_hub)} (and Istio) from Docker Hub, whose anonymous pull limit "
            "on the one Cloud NAT address stalls a scale-up; set it true (an Artifact Registry remote repository)",
        )
    alerts = config.observability.alerts
    if not alerts.notification_channels and not alerts.emails:
        yield KeyProblem(
            "observability.alerts.notificationChannels",
            [],
            "prod alerts would notify nobody; name a channel (projects/PROJECT/notificationChannels/ID) or set "
            "observability.alerts.emails, for which the stack declares email channels",
        )


def prod_weights_checked(config: StackConfig) -> Iterator[KeyProblem]:
    """In prod every file a server fetches is checked: its sha256 at each fetch, its size by `models verify`. A file
    without them would be served as whatever the store holds under its name."""
    if config.environment != "prod":
        return
    for i, model in enumerate(config.models):
        for track, version in model.tracks():
            push = f"llm-mesh models push --stack STACK --model {model.name} --version {version.version} DIR"
            if version.source is not None:
                push += f" --to {version.source}"
            for j, entry in enumerate(version.files):
                missing = [name for name in ("sha256", "size") if getattr(entry, name) is None]
                if missing:
                    yield KeyProblem(
                        f"models[{i}].{TRACK_KEYS[track]}.files[{j}]",
                        entry.model_dump(exclude_none=True),
                        "prod serves only files it can check (sha256 at every fetch, size in `llm-mesh models "
                        f"verify`); this one has no {' or '.join(missing)}: record both with `{push}` (DIR: the "
                        "version's folder)",
                    )


TRACK_KEYS = {"stable": "stable", "canary": "canary", "mirror": "mirror.version"}


VERSION_KEYS = {"stable": "stable.version", "canary": "canary.version", "mirror": "mirror.version.version"}


def one_version_one_definition(config: StackConfig) -> Iterator[KeyProblem]:
    """A version name shared by two tracks must be one version: the store keeps it at <model>/<version>/, and one
    import fills that folder, so a second definition would silently serve the first's weights (or overwrite them)."""
    for i, model in enumerate(config.models):
        seen: dict[str, tuple[str, object]] = {}
        for track, version in model.tracks():
            first_track, first = seen.setdefault(version.version, (track, version))
            if first != version:
                yield KeyProblem(
                    f"models[{i}].{VERSION_KEYS[track]}",
                    version.version,
                    f"is also {first_track}'s version, with another source, files or image; one version name is "
                    f"one set of weights (the store keeps it at {model.name}/{version.version}/): give this one a "
                    "name of its own",
                )


def pools_served_by_the_gateway(config: StackConfig) -> Iterator[KeyProblem]:
    """An InferencePool is a backend of the gateway's HTTPRoute: a model served inside the mesh only has no route to
    put it behind, and callers inside the mesh reach the model's Service through the mesh's own balancing."""
    if config.security.allow_gateway:
        return
    for i, model in enumerate(config.models):
        if model.pooled:
            yield KeyProblem(
                f"models[{i}].routing.balancing",
                model.routing.balancing,
                "the endpoint picker chooses pods for requests through the gateway, and security.allowGateway is "
                "false; set balancing: mesh, or allow the gateway",
            )


def _duplicates(key: str, names: list[str]) -> Iterator[KeyProblem]:
    for i, name in enumerate(names):
        if name in names[:i]:
            yield KeyProblem(f"{key}[{i}].name", name, "is used twice; names must be unique")
