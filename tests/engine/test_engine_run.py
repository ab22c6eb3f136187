"""The offline engine's own waiting, monitor calls and collector settings: what a program registers late or
fails with still reaches the recording, and a run leaves the process as it found it."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pulumi
import pytest
from google.protobuf import struct_pb2
from pulumi.runtime import rpc

from llm_mesh.engine.run import DuplicateResourceUrn, RecordingMonitor, _ComputedOutputs, record
from llm_mesh.engine.sdk_private import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY
from llm_mesh.engine.stackfile import StackSettings
from tests.conftest import isolated_sdk

THING = "test:index:Thing"


@pytest.mark.usefixtures("fresh_loop")
def test_resources_declared_inside_applies_are_recorded_round_after_round() -> None:
    """Each level's resource is declared only once the previous one's id is known: one more round each."""

    def declare(level: int, parent_id: str | None) -> None:
        thing = pulumi.CustomResource(THING, f"level-{level}", {"parentId": parent_id})
        if level < 4:
            thing.id.apply(lambda known: declare(level + 1, known))

    recording = record(lambda: declare(0, None), "llm-mesh", "test", StackSettings({}))

    things = {r.name: r for r in recording.resources if r.type == THING}
    assert sorted(things) == [f"level-{i}" for i in range(5)]
    assert things["level-3"].inputs["parentId"] == "__computed__(level-2.id)__"


@pytest.mark.usefixtures("fresh_loop")
def test_an_apply_that_raises_fails_the_run_with_its_own_error() -> None:
    def program() -> None:
        thing = pulumi.CustomResource(THING, "first", {})
        thing.id.apply(lambda _: (_ for _ in ()).throw(ValueError("the zone list is empty")))

    with pytest.raises(ValueError, match="the zone list is empty"):
        record(program, "llm-mesh", "test", StackSettings({}))


@pytest.mark.usefixtures("fresh_loop")
def test_a_data_source_is_answered_with_markers() -> None:
    import pulumi_gcp as gcp

    answers: list[str] = []

    def program() -> None:
        agent = gcp.storage.get_project_service_account_output(project="llm-mesh-test")
        agent.email_address.apply(answers.append)

    record(program, "llm-mesh", "test", StackSettings({}))

    assert answers == ["__computed__(getProjectServiceAccount.emailAddress)__"]


@pytest.mark.usefixtures("fresh_loop")
def test_a_run_puts_back_the_loop_executor_and_collector_settings() -> None:
    loop = asyncio.get_event_loop()
    before_executor = getattr(loop, "_default_executor", None)
    before_thresholds = gc.get_threshold()
    monitor = RecordingMonitor()

    def program() -> None:
        pulumi.CustomResource(THING, "only", {})
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        record(program, "llm-mesh", "test", StackSettings({}), monitor)

    assert [r.name for r in monitor.registrations if r.type == THING] == ["only"]
    assert getattr(loop, "_default_executor", None) is before_executor
    assert gc.get_threshold() == before_thresholds
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("fresh_loop")
def test_the_benchmarks_plan_floor_replays_exactly_the_prod_plan(
    previews: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan floor of benchmarks/offline_preview.py is only a floor if the replay registers the same
    resources (it stops with an error otherwise)."""
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("offline_preview", ROOT / "benchmarks" / "offline_preview.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up there
    spec.loader.exec_module(bench)

    result = bench.child_replay("prod", "")

    assert result["resources"] == len(previews["prod"]["steps"])


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def expired(*_: Any) -> None:
        raise TimeoutError("the run hung instead of ending")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.usefixtures("fresh_loop")
def test_a_failure_is_reported_even_when_another_output_never_resolves() -> None:
    def program() -> None:
        pulumi.Output.from_input(asyncio.get_event_loop().create_future()).apply(lambda v: v)
        thing = pulumi.CustomResource(THING, "first", {})
        thing.id.apply(lambda _: (_ for _ in ()).throw(ValueError("the zone list is empty")))

    with deadline(10), pytest.raises(ValueError, match="the zone list is empty"):
        record(program, "llm-mesh", "test", StackSettings({}))


class _Refusing(RecordingMonitor):
    def RegisterResource(self, request: Any) -> Any:
        if request.name == "bad":
            raise RuntimeError("refused")
        return super().RegisterResource(request)


def test_a_failed_recording_leaves_nothing_for_the_next_one_in_the_process() -> None:
    """As preview_batch (llm-mesh review) does: one stack fails, the next one in the process must not."""

    def refused(_: str) -> None:
        pulumi.CustomResource(THING, "bad", {})

    def declare_refused(_: str) -> None:
        pulumi.CustomResource(THING, "x1", {}).id.apply(refused)

    def failing() -> None:
        first = pulumi.CustomResource(THING, "a", {})
        first.id.apply(declare_refused)
        first.urn.apply(lambda _: (_ for _ in ()).throw(ValueError("apply fails")))

    def next_stack() -> None:
        pulumi.CustomResource(THING, "next", {})

    with isolated_sdk(), pytest.raises((RuntimeError, ValueError)):
        record(failing, "llm-mesh", "first", StackSettings({}), _Refusing())
    with isolated_sdk():
        recording = record(next_stack, "llm-mesh", "second", StackSettings({}))

    assert [r.name for r in recording.resources if r.type == THING] == ["next"]


@pytest.mark.usefixtures("fresh_loop")
def test_reading_existing_resources_fails_with_a_message_not_a_recursion() -> None:
    def program() -> None:
        for i in range(100):
            pulumi.CustomResource(THING, f"read{i}", {}, pulumi.ResourceOptions(id=f"x{i}"))

    with deadline(30), pytest.raises(NotImplementedError, match="cannot read the existing resource"):
        record(program, "llm-mesh", "test", StackSettings({}))


@pytest.mark.usefixtures("fresh_loop")
def test_a_run_does_not_freeze_garbage_left_before_it() -> None:
    class Cycle:
        pass

    cycle = Cycle()
    cycle.self = cycle  # type: ignore[attr-defined]
    ref = weakref.ref(cycle)
    del cycle
    alive_during_run: list[bool] = []

    def program() -> None:
        gc.collect()
        alive_during_run.append(ref() is not None)

    record(program, "llm-mesh", "test", StackSettings({}))

    assert alive_during_run == [False]


def test_answers_are_the_bytes_the_stock_monitor_would_send() -> None:
    """Every shape our mocks produce (copied inputs with numbers, booleans, nested lists, secrets, nulls)."""
    secret = {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": {"k": [1.0, None, True]}}
    inputs = {"masterAuth": {"clientCertificateConfig": {"issueClientCertificate": False}, "n": 3.0, "s": secret}}
    states = [
        _ComputedOutputs().new_resource(
            pulumi.runtime.MockResourceArgs("gcp:container/cluster:Cluster", "c", inputs, custom=True)
        )[1],
        _ComputedOutputs().call(
            pulumi.runtime.MockCallArgs("gcp:storage/getProjectServiceAccount:getProjectServiceAccount", {}, "")
        ),
    ]
    loop = asyncio.new_event_loop()
    try:
        for state in states:
            assert None not in state.values()  # the one shape serialize_properties would drop and a Struct keeps
            stock = loop.run_until_complete(rpc.serialize_properties(state, {}))
            ours = struct_pb2.Struct()
            ours.update(state)
            assert ours.SerializeToString(deterministic=True) == stock.SerializeToString(deterministic=True)
    finally:
        loop.close()


@pytest.mark.usefixtures("fresh_loop")
def test_two_resources_with_one_urn_fail_the_run_as_the_engine_does() -> None:
    """The stock mock monitor accepts a duplicate; the Pulumi engine refuses it at preview, in these words."""

    def program() -> None:
        pulumi.CustomResource(THING, "models-import-llama-v2", {})
        pulumi.CustomResource(THING, "models-import-llama-v2", {"other": True})

    with pytest.raises(DuplicateResourceUrn) as refused:
        record(program, "llm-mesh", "test", StackSettings({}))
    assert str(refused.value) == (
        "Duplicate resource URN 'urn:pulumi:test::llm-mesh::test:index:Thing::models-import-llama-v2'; "
        "try giving it a unique name"
    )
