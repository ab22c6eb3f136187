"""The offline engine's own waiting, monitor calls and collector settings: what a program registers late or
fails with still reaches the recording, and a run leaves the process as it found it."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pulumi
import pytest

from llm_mesh.engine.run import RecordingMonitor, record
from llm_mesh.engine.stackfile import StackSettings

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
def test_the_benchmarks_plan_floor_replays_exactly_the_prod_plan(previews: dict[str, dict[str, Any]]) -> None:
    """The plan floor of benchmarks/offline_preview.py is only a floor if the replay registers the same
    resources (it stops with an error otherwise)."""
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("offline_preview", ROOT / "benchmarks" / "offline_preview.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    result = bench.child_replay("prod", "")

    assert result["resources"] == len(previews["prod"]["steps"])
