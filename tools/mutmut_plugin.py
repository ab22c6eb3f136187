"""pytest plugin for the runs of `make mutate` (tools/mutate.py has mutmut pass `-p tools.mutmut_plugin`).

mutmut runs each mutant against the tests it saw reach the mutated function. Three things would make that differ
from the suite as `make test` runs it, and this plugin undoes them:

- Order: mutmut names the tests in no particular order. They run fastest first (the durations mutmut measured;
  a killed mutant stops at its first failure), ties and the first run in the suite's order: one total order, so
  mutmut's clean run of every selected test checks it. A test that leaves state behind for a later one (a module
  constant it edits) then fails that clean run, loudly, instead of failing mutants that `make test` would pass.
- Shared fixtures: what a session- or module-scoped fixture (the stacks' previews) reaches while it is set up
  is counted for every test that uses it, not only for the first one, which is the one that sets it up. Without
  this a mutant of a function that only the previews reach runs against that first test alone.
- Imports: what runs while the test modules are imported (each rule's resource_rule(...) call) runs before
  mutmut switches a mutant on, so no test can see such a mutant: it is counted for no test ("no tests"),
  not for whichever test happened to run first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

# What each shared fixture's setup reached, by fixture name (mutmut's names of the functions).
_reached_by_fixture: dict[str, set[str]] = {}


def _collecting_stats() -> bool:
    """Whether this is mutmut's run that records which tests reach which functions."""
    return os.environ.get("MUTANT_UNDER_TEST") == "stats"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    stats = Path("mutmut-stats.json")  # the tests run in mutants/, where mutmut keeps its stats
    durations: dict[str, float] = json.loads(stats.read_text())["duration_by_test"] if stats.is_file() else {}
    items.sort(key=lambda item: (durations.get(item.nodeid, 0.0), str(item.path), item.location[1] or 0, item.name))


def pytest_collection_finish(session: pytest.Session) -> None:
    if _collecting_stats():
        from mutmut.state import state

        state()._stats.clear()  # reached while importing, before any test


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    if fixturedef.scope == "function" or not _collecting_stats():
        return (yield)
    from mutmut.state import state

    reached = state()._stats  # what the running test has reached so far; mutmut adds to this very set
    before = set(reached)
    reached.clear()
    try:
        return (yield)
    finally:
        _reached_by_fixture.setdefault(fixturedef.argname, set()).update(reached)
        reached.update(before)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    # Before mutmut's own hook, which credits the test with everything in the set.
    if _reached_by_fixture and _collecting_stats():
        from mutmut.state import state

        for name in getattr(item, "fixturenames", ()):
            state()._stats.update(_reached_by_fixture.get(name, ()))
