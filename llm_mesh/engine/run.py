"""The offline engine: run the real program under the Pulumi SDK's mock runtime and record every registration.

The program is run the way the Python language host runs it (`run_in_stack` over `runpy.run_path` of the
project folder), with the stack's config, in non-preview mode so that every `apply` runs. A monitor of our
own records what the SDK sends for each resource: type, name, parent, inputs and options. Provider-computed
outputs are answered with markers (see values.py), never with invented values.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import runpy
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.config import set_all_config
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks, MockSettings
from pulumi.runtime.proto import engine_pb2, resource_pb2
from pulumi.runtime.settings import SETTINGS, configure, set_root_resource
from pulumi.runtime.stack import run_in_stack

from llm_mesh.engine.sdk_private import get_rpc_manager, resource_modules, sdk_types, sync_await
from llm_mesh.engine.stackfile import Project, StackSettings
from llm_mesh.engine.values import UNKNOWN, computed_marker

STACK_TYPE = "pulumi:pulumi:Stack"
PROVIDER_PREFIX = "pulumi:providers:"


@dataclass
class Registration:
    """One resource as the SDK registered it (inputs in wire form: camelCase, secrets wrapped)."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    inputs: dict[str, Any]
    provider: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    protect: bool
    retain_on_delete: bool
    custom_timeouts: dict[str, str]
    remote: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    # Properties the engine keeps as the resource was made (`ignore_changes`); recorded, not written to documents.
    ignore_changes: list[str] = field(default_factory=list)


@dataclass
class Diagnostic:
    severity: str
    message: str
    urn: str


@dataclass
class Recording:
    project: str
    stack: str
    resources: list[Registration]
    diagnostics: list[Diagnostic]
    # The stack's config as the engine's preview writes it: each key's value, a secret's as [secret].
    config: dict[str, str] = field(default_factory=dict)


class _ComputedOutputs(Mocks):
    """Answers each registration with markers for the outputs only the provider knows."""

    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        if not args.custom:
            return None, {}
        return computed_marker(args.name, "id"), _computed_state(args.typ, args.name, args.inputs)

    def call(self, args: Any) -> dict[str, Any]:  # type: ignore[override]  # the monitor accepts a bare dict
        # A data source reads the cloud: each of its results is a value known only after deployment.
        shape = _invoke_shape(args.token)
        if shape is None:
            raise NotImplementedError(f"offline preview cannot answer the data source {args.token}")
        function = args.token.rsplit(":", 1)[-1]
        return _fill(shape, {}, function, "")


class DuplicateResourceUrn(Exception):
    """Two resources of one program with the same type, name and parent: the engine's own words."""

    def __init__(self, urn: str) -> None:
        super().__init__(f"Duplicate resource URN '{urn}'; try giving it a unique name")
        self.urn = urn


class RecordingMonitor(MockMonitor):
    """MockMonitor that records each registration with its options and engine-shaped URNs."""

    def __init__(self) -> None:
        super().__init__(_ComputedOutputs())
        self.registrations: list[Registration] = []
        self._by_urn: dict[str, Registration] = {}
        self.project = ""
        self.stack = ""

    def engine_urn(self, parent: str, type_: str, name: str) -> str:
        # The engine qualifies a child's type with every ancestor type but the stack's (FIELD-NOTES.md).
        qualified = type_
        if parent:
            parent_qualified = parent.split("::")[2]
            if parent_qualified != STACK_TYPE:
                qualified = f"{parent_qualified}${type_}"
        return f"urn:pulumi:{self.stack}::{self.project}::{qualified}::{name}"

    def RegisterResource(self, request: Any) -> Any:
        urn = self.engine_urn(request.parent, request.type, request.name)
        if urn in self._by_urn:
            # As the Pulumi engine refuses it at preview (diag 2001), where the stock mock monitor accepts it.
            raise DuplicateResourceUrn(urn)
        inputs = _plain_map(request.object)
        registration = Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            parent=request.parent,
            inputs=inputs,
            provider=self._provider_ref(request),
            dependencies=list(request.dependencies),
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            custom_timeouts={k: v for k, v in json_format.MessageToDict(request.customTimeouts).items() if v},
            remote=bool(request.remote),
            ignore_changes=list(request.ignoreChanges),
        )
        self.registrations.append(registration)
        self._by_urn[urn] = registration
        if request.type == STACK_TYPE or not request.custom:
            return resource_pb2.RegisterResourceResponse(urn=urn)
        id_, state = self.mocks.new_resource(
            MockResourceArgs(typ=request.type, name=request.name, inputs=inputs, custom=True)
        )
        # The state is wire-shaped already (the request's inputs plus marker strings): a Struct takes it as it
        # is, where the stock monitor's `serialize_properties` would spin an event loop per worker thread.
        obj = struct_pb2.Struct()
        obj.update(state)
        self.resources[urn] = MockMonitor.ResourceRegistration(urn, id_ or "", state)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_ or "", object=obj)

    def Invoke(self, request: Any) -> Any:
        # As the stock monitor does, minus its `_sync_await`, which would re-enter the running loop now that
        # monitor calls run on it (see _monitor_calls_inline). Our data-source answers are plain JSON.
        if request.tok == "pulumi:pulumi:getResource":
            raise NotImplementedError("offline preview cannot look up an existing resource (ResourceOptions(urn=...))")
        args = rpc.deserialize_properties(request.args)
        answer = self.mocks.call(MockCallArgs(token=request.tok, args=args, provider=request.provider))
        result = struct_pb2.Struct()
        result.update(answer)
        return resource_pb2.ResourceInvokeResponse(failures=None, **{"return": result})

    def ReadResource(self, request: Any) -> Any:
        # The stock monitor's ReadResource calls `_sync_await`, which would re-enter the running loop; a read is
        # not recorded either. The program reads nothing: say so rather than recurse.
        raise NotImplementedError(
            f"offline preview cannot read the existing resource {request.type} {request.name} (Resource.get)"
        )

    def RegisterResourceOutputs(self, request: Any) -> Any:
        registration = self._by_urn.get(request.urn)
        if registration is not None:
            registration.outputs = _plain_map(request.outputs)
        return empty_pb2.Empty()

    def _provider_ref(self, request: Any) -> str:
        """`urn::id` of the provider, with the id unknown as in a preview of a new stack."""
        if not request.custom or request.type.startswith(PROVIDER_PREFIX):
            return ""
        if request.provider:
            provider_urn = request.provider.rsplit("::", 1)[0]
            return f"{provider_urn}::{UNKNOWN}"
        package = request.type.split(":")[0]
        version = (request.version or "").replace(".", "_")
        default_urn = f"urn:pulumi:{self.stack}::{self.project}::{PROVIDER_PREFIX}{package}::default_{version}"
        return f"{default_urn}::{UNKNOWN}"


class _RecordingEngine:
    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def Log(self, request: Any) -> None:
        severity = engine_pb2.LogSeverity.Name(request.severity).lower()
        if severity != "debug":
            self.diagnostics.append(Diagnostic(severity, request.message, request.urn))


def _plain_map(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain JSON with every map's keys sorted, as the Pulumi engine writes its maps.

    protobuf 6 (upb) keeps no insertion order in a Struct: without sorting, one program would give documents whose
    keys come in another order each run.
    """
    return typing.cast(dict[str, Any], _sorted(json_format.MessageToDict(struct)))


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def run_program(project: Project, stack: str, settings: StackSettings) -> Recording:
    """Run the project's program once for `stack` and return everything it registered."""
    with _working_directory(project.root):
        return record(lambda: run_main(project.root), project.name, stack, settings)


def record(
    program: Callable[[], None],
    project: str,
    stack: str,
    settings: StackSettings,
    monitor: RecordingMonitor | None = None,
) -> Recording:
    """Run `program` as a Pulumi program under the recording monitor (pass one to inspect a failed run).

    Mocks are process-global in the SDK: one recording at a time; tests give each its own event loop.
    """
    monitor = monitor or RecordingMonitor()
    monitor.project, monitor.stack = project, stack
    engine = _RecordingEngine()
    features = set(monitor.GetDeploymentInfo(empty_pb2.Empty()).supportedFeatures)
    configure(
        MockSettings(
            monitor=monitor,
            monitor_features=features,
            engine=engine,
            project=project,
            stack=stack,
            dry_run=False,
            organization="organization",
            callbacks=None,
            outputs=set(),  # SETTINGS.outputs is process-global: a failed run's tasks must not reach the next one
        )
    )
    # A previous recording in this process left its stack as the root; this program gets its own.
    set_root_resource(None)  # type: ignore[arg-type]
    set_all_config(settings.config, settings.secret_keys)
    with _quiet_sdk_logging(), _monitor_calls_inline(asyncio.get_event_loop()), _fewer_collections():
        sync_await(run_in_stack(lambda: _settled(program)))
    config = {key: "[secret]" if key in settings.secret_keys else value for key, value in settings.config.items()}
    return Recording(project, stack, monitor.registrations, engine.diagnostics, config)


async def _settled(program: Callable[[], None]) -> None:
    """Run `program`, then wait until every registration and output it set going has finished.

    The SDK waits for the same things after the program, but its loop calls `asyncio.wait(FIRST_COMPLETED)`
    over every outstanding output once per completion: quadratic in outputs (some 4,000 at 50 models, most
    of the run's time). Waiting in rounds, one callback per task, leaves the SDK's loop nothing to wait for.
    Failures are left to the SDK's loop, which reports them as it always does.
    """
    program()
    rpcs = get_rpc_manager().rpcs
    while True:
        with SETTINGS.lock:
            tasks = [*rpcs, *SETTINGS.outputs]
        if any(task.done() and (task.cancelled() or task.exception() is not None) for task in tasks):
            return  # the SDK's wait raises it now, as it would have without us, and waits for nothing else
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)


def run_main(root: Path) -> None:
    # As the language host does: run the project folder, which puts it first on sys.path.
    runpy.run_path(str(root), run_name="__main__")


@contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    # The CLI runs a program from its project folder; relative paths in it must mean the same offline.
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each submitted call at once, on the caller's thread, and hands back its finished future."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to the awaiting SDK code, as a worker thread would
            future.set_exception(error)
        return future


@contextmanager
def _monitor_calls_inline(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """The SDK sends every monitor call through the loop's default executor, a thread pool. Our monitor answers
    from memory without blocking, so a worker thread only adds a GIL hand-over per resource: run it inline."""
    previous = getattr(loop, "_default_executor", None)  # asyncio has a setter but no getter
    loop.set_default_executor(_InlineExecutor(max_workers=1))
    try:
        yield
    finally:
        loop._default_executor = previous  # type: ignore[attr-defined]


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """A run allocates some hundred thousand short-lived futures and messages; with the default gen-0 threshold
    (700) the cyclic collector runs thousands of times and each older-generation pass re-scans the SDK's
    imported modules (a third of a 50-model run). Collect the young generation less often; put it back after.
    (gc.freeze would save a little more but would also freeze the previous run's garbage, run after run.)"""
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, thresholds[1], thresholds[2])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


@contextmanager
def _quiet_sdk_logging() -> Iterator[None]:
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _computed_state(type_token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Markers for each output of the resource type that its inputs do not already fix."""
    return _fill(_output_shape(type_token), inputs, name, "")


def _fill(shape: tuple[tuple[str, Any], ...], given: dict[str, Any], resource: str, path: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for prop, kind in shape:
        value = given.get(prop)
        here = f"{path}.{prop}" if path else prop
        if isinstance(kind, tuple) and (value is None or isinstance(value, dict)):
            # An object the program set in part (masterAuth) still gets the provider's half (its CA).
            state[prop] = {**(value or {}), **_fill(kind, value or {}, resource, here)}
        elif value is None and not isinstance(kind, tuple):
            state[prop] = computed_marker(resource, here)
    return state


@cache
def _output_shape(type_token: str) -> tuple[tuple[str, Any], ...]:
    """(wire name, "str" or nested shape) for each string or object output of a resource type."""
    cls = _resource_class(type_token)
    if cls is None:
        return ()
    return _shape(sdk_types.resource_types(cls), depth=0)


def _shape(types: dict[str, Any], depth: int) -> tuple[tuple[str, Any], ...]:
    shape: list[tuple[str, Any]] = []
    for prop, kind in types.items():
        if kind is str:
            shape.append((prop, "str"))
        elif isinstance(kind, type) and sdk_types.is_output_type(kind) and depth < 2:
            try:
                nested = sdk_types.output_type_types(kind)
            except (AttributeError, NameError):
                # A generated type whose annotations name a module the SDK does not ship (pulumi-kubernetes'
                # JobSpec names scheduling.v1alpha3): its outputs stay unset and fall back to the inputs.
                continue
            shape.append((prop, _shape(nested, depth + 1)))
        # Numbers, booleans and lists stay unset: the SDK then falls back to the inputs, or to None.
    return tuple(shape)


@cache
def _invoke_shape(token: str) -> tuple[tuple[str, Any], ...] | None:
    """Result shape of a generated SDK's data source (`gcp:storage/getX:getX` -> pulumi_gcp.storage.GetXResult)."""
    parts = token.split(":")
    packages = {"gcp": "pulumi_gcp", "kubernetes": "pulumi_kubernetes"}
    if len(parts) != 3 or parts[0] not in packages:
        return None
    module_path = parts[1].split("/")[0]
    function = parts[2]
    try:
        module = __import__(f"{packages[parts[0]]}.{module_path}", fromlist=["_"])
    except ImportError:
        return None
    result = getattr(module, function[0].upper() + function[1:] + "Result", None)
    if result is None or not sdk_types.is_output_type(result):
        return None
    return _shape(sdk_types.output_type_types(result), depth=0)


def _resource_class(type_token: str) -> type | None:
    parts = type_token.split(":")
    if len(parts) != 3 or type_token.startswith(PROVIDER_PREFIX):
        return None
    package, module, _ = parts
    for resource_module in resource_modules(f"{package}:{module}"):
        info = getattr(resource_module, "mod_info", None)
        if not info or type_token not in info.get("classes", {}):
            continue
        namespace = __import__(info["fqn"], fromlist=["_"])
        cls = getattr(namespace, info["classes"][type_token], None)
        return typing.cast(type, cls)
    return None
