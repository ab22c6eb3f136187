"""The canary progression against a real HTTP server speaking the Prometheus query API, on loopback."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_mesh.engine.stackfile import Project, read_stack_settings
from llm_mesh.ops import canary
from llm_mesh.plan import queries
from llm_mesh.plan.config import StackConfig, config_from_pulumi
from tests.conftest import ROOT, Cli

STACK = """\
# A test stack: one model with a canary.
config:
  llm-mesh:environment: dev
  llm-mesh:gcp:
    project: llm-mesh-test
    zones: [us-central1-a]
  llm-mesh:gpuPools:
    - name: l4
      machineType: g2-standard-8
  llm-mesh:models:
    - name: llama
      shape:
        preset: llama-3.1-8b
      contextLength: 8192
      stable:
        version: v1
        files: &files
          - path: config.json
          - path: model.safetensors
      canary:
        version: v2
        files: *files
      # percent of requests for the canary
      canaryWeight: 0
  llm-mesh:canary:
    step: 20
    maxWeight: 40
    minRequests: 50
    failedChecks: 2
    noTrafficChecks: 3
"""

Answer = dict[str, float]


class FakePrometheus:
    """Answers the platform's own queries, by their exact text, with the figures a real Prometheus gave for the
    same scenario (tests/observability/test_promql_real.py); any other query has no series, as on a real one. One
    answer set per check, in order."""

    def __init__(self) -> None:
        self.scenario: list[Answer] = []
        self.check = 0
        self.queries: list[str] = []

    def answer(self, query: str) -> float | None:
        self.queries.append(query)
        if query == queries.request_count(CANARY):  # the first query of each check
            self.check += 1
        return self.scenario[min(self.check, len(self.scenario)) - 1].get(query)


@pytest.fixture
def prometheus() -> Iterator[tuple[str, FakePrometheus]]:
    fake = FakePrometheus()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["query"][0]
            value = fake.answer(query)
            result = [] if value is None else [{"metric": {}, "value": [0, str(value)]}]
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", fake
    server.shutdown()


CANARY = queries.Scope("llama", "inference", "canary")
STABLE = queries.Scope("llama", "inference", "stable")


def figures(requests: float | None, success: float | None, ttft: float | None = 0.4975) -> Answer:
    """A check's answers; None: the query has no series (a real Prometheus answers an empty vector)."""
    found = {
        queries.request_count(CANARY): requests,
        queries.success_rate(CANARY): success,
        queries.latency_quantile(CANARY, 0.99): 995.0 if requests else None,
        queries.latency_quantile(STABLE, 0.99): 995.0,
        queries.time_to_first_token(CANARY, 0.99): ttft if requests else None,
    }
    return {query: value for query, value in found.items() if value is not None}


HEALTHY = figures(500, 1.0)
FAILING = figures(500, 0.9)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root)
    (root / "stacks" / "Pulumi.test.yaml").write_text(STACK)
    return Project.find(root)


class RecordingDeployer:
    """Records each `pulumi up` with the weight the stack file declares at that moment."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.applied: list[tuple[str, str, str | None, int]] = []

    def ready(self, stack: str) -> None:
        pass

    def apply(self, stack: str, message: str) -> None:
        config = load(self.project)()
        split = canary.split_of(config, "llama")
        self.applied.append((message, split.stable, split.canary, split.weight))


def load(project: Project) -> Callable[[], StackConfig]:
    return lambda: config_from_pulumi(read_stack_settings(project, "test").config)


def progression(project: Project, url: str, deployer: RecordingDeployer, lines: list[str]) -> canary.Progression:
    sleeps: list[float] = []
    return canary.Progression(
        project,
        "test",
        "llama",
        load(project),
        deployer,
        canary.PrometheusApi(url, sleep=sleeps.append),
        lines.append,
        sleeps.append,
        10,
    )


def test_a_healthy_canary_is_promoted_step_by_step(project: Project, prometheus: tuple[str, FakePrometheus]) -> None:
    url, fake = prometheus
    fake.scenario = [HEALTHY]
    deployer = RecordingDeployer(project)
    lines: list[str] = []
    outcome = progression(project, url, deployer, lines).run()
    assert outcome.result == "promoted"
    assert deployer.applied == [
        ("canary llama: weight 20%", "v1", "v2", 20),
        ("canary llama: weight 40%", "v1", "v2", 40),
        ("canary llama: v2 becomes stable", "v2", "v2", 40),
        ("canary llama: canary removed after promotion", "v2", None, 0),
    ]
    assert [c.verdict for c in outcome.checks] == ["pass", "pass"]
    text = project.stack_file("test").read_text()
    assert "# A test stack: one model with a canary." in text and "canary:" not in text.split("llm-mesh:canary")[0]


def test_a_failing_canary_is_rolled_back_after_the_configured_checks(
    project: Project, prometheus: tuple[str, FakePrometheus]
) -> None:
    url, fake = prometheus
    fake.scenario = [HEALTHY, FAILING, FAILING]
    deployer = RecordingDeployer(project)
    lines: list[str] = []
    outcome = progression(project, url, deployer, lines).run()
    assert (outcome.result, outcome.weight) == ("rolled back", 0)
    assert [m for m, *_ in deployer.applied] == [
        "canary llama: weight 20%",
        "canary llama: weight 40%",
        "canary llama: weight 0%",
    ]
    assert "check at 40%: fail (success rate 90.00%, limit ≥ 99.00%)" in lines


def test_no_traffic_never_promotes_and_rolls_back_after_the_configured_checks(
    project: Project, prometheus: tuple[str, FakePrometheus]
) -> None:
    url, fake = prometheus
    fake.scenario = [figures(3, 1.0)]
    deployer = RecordingDeployer(project)
    lines: list[str] = []
    outcome = progression(project, url, deployer, lines).run()
    assert (outcome.result, outcome.weight) == ("rolled back", 0)
    assert [m for m, *_ in deployer.applied] == ["canary llama: weight 20%", "canary llama: weight 0%"]
    assert lines[1:5] == [
        "check at 20%: no-data (3 canary requests in 5m, fewer than 50: no judgement on so little traffic)",
        *["check at 20%: no-data (3 canary requests in 5m, fewer than 50: no judgement on so little traffic)"] * 2,
        "3 checks in a row without traffic: the canary is rolled back",
    ]


def test_traffic_between_idle_checks_starts_the_count_again(
    project: Project, prometheus: tuple[str, FakePrometheus]
) -> None:
    url, fake = prometheus
    idle = figures(None, None)
    fake.scenario = [idle, idle, HEALTHY, idle, idle, idle]
    deployer = RecordingDeployer(project)
    outcome = progression(project, url, deployer, []).run()
    assert [c.verdict for c in outcome.checks] == ["no-data", "no-data", "pass", "no-data", "no-data", "no-data"]
    assert [w for *_, w in deployer.applied] == [20, 40, 0]


def test_flapping_metrics_count_every_failure(project: Project, prometheus: tuple[str, FakePrometheus]) -> None:
    """Pass, fail, pass, fail: a canary that fails half its checks is rolled back, not promoted between."""
    url, fake = prometheus
    fake.scenario = [FAILING, HEALTHY, FAILING]
    deployer = RecordingDeployer(project)
    outcome = progression(project, url, deployer, []).run()
    assert outcome.result == "rolled back"
    assert [c.verdict for c in outcome.checks] == ["fail", "pass", "fail"]
    assert [w for *_, w in deployer.applied] == [20, 40, 0]


def test_a_run_that_cannot_read_its_metrics_takes_no_step(project: Project) -> None:
    deployer = RecordingDeployer(project)
    before = project.stack_file("test").read_text()
    with pytest.raises(canary.CanaryError) as refused:
        progression(project, "http://127.0.0.1:9", deployer, []).run()
    assert str(refused.value).startswith("metrics at http://127.0.0.1:9: ")
    assert str(refused.value).endswith("no step taken (port-forward managed Prometheus's frontend first)")
    assert deployer.applied == [] and project.stack_file("test").read_text() == before


class Outage:
    """Prometheus answering its health probe, then every figure's query refused: an outage mid-run."""

    def value(self, promql: str) -> float | None:
        if promql == "vector(1)":
            return 1.0
        raise canary.MetricsUnavailable("metrics at http://prometheus: 503 Service Unavailable (3 attempts)")


def test_metrics_going_away_mid_run_fail_the_checks_and_roll_back(project: Project) -> None:
    """A check that cannot be measured is a failed check (after retries), as in Flagger: a canary is never left
    at its weight because the metrics went away, and what happened is kept for `canary status`."""
    deployer = RecordingDeployer(project)
    run = progression(project, "http://127.0.0.1:9", deployer, [])
    run.source = Outage()
    assert canary.set_weight(project, "test", "llama", 20)  # the run starts from a canary already at 20%
    outcome = run.run()
    assert (outcome.result, outcome.weight) == ("rolled back", 0)
    assert [c.verdict for c in outcome.checks] == ["fail", "fail"]
    assert outcome.checks[0].reasons == [
        "no measurement: metrics at http://prometheus: 503 Service Unavailable (3 attempts)"
    ]
    assert deployer.applied == [("canary llama: weight 0%", "v1", "v2", 0)]
    status = canary.load_status(project, "test", "llama")
    assert status is not None and status["result"] == "rolled back"
    assert status["lastCheck"]["reasons"][0].startswith("no measurement: ")


def test_each_edit_touches_its_own_lines_only(project: Project) -> None:
    path = project.stack_file("test")
    assert canary.set_weight(project, "test", "llama", 30)
    assert path.read_text() == STACK.replace("canaryWeight: 0", "canaryWeight: 30")
    assert not canary.set_weight(project, "test", "llama", 30), "the same weight again changes nothing"


def test_interrupt_leaves_the_declared_weight(project: Project, prometheus: tuple[str, FakePrometheus]) -> None:
    url, fake = prometheus
    fake.scenario = [HEALTHY]
    deployer = RecordingDeployer(project)
    lines: list[str] = []
    run = progression(project, url, deployer, lines)

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    run.sleep = interrupt
    outcome = run.run()
    assert (outcome.result, outcome.weight) == ("stopped", 20)
    assert lines[-1] == "interrupted: the stack stays at canary weight 20%, as declared and applied"


def test_cli_status_and_dry_run(cli: Cli, project: Project) -> None:
    (project.root / "__main__.py").symlink_to(ROOT / "__main__.py")
    (project.root / "components").symlink_to(ROOT / "components")
    status = cli("--project", str(project.root), "canary", "status", "--stack", "test", "--model", "llama")
    assert status.returncode == 0
    assert status.stdout.splitlines()[:2] == [
        "llama in test: stable v1, canary v2 at 0%",
        "replicas: stable 1–2 (autoscaled), canary 1",
    ]
    before = project.stack_file("test").read_text()
    dry = cli("--project", str(project.root), "canary", "advance", "--stack", "test", "--model", "llama", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "canary advance of llama in test (dry run, nothing applied):"
    # From weight 0 the route to the canary appears: the pinned header route and the 80/20 split.
    assert "      spec.http[0].route[0].destination.subset: stable → canary" in lines
    added = lines.index("      spec.http[1]: added (name=weighted)")
    assert {"        + route[0].weight: 80", "        + route[1].weight: 20"} <= set(lines[added + 1 : added + 13])
    # A canary taking traffic gets its second pod and its disruption budget.
    assert "  + kubernetes:policy/v1:PodDisruptionBudget model-llama-canary-pdb (create)" in lines
    assert "      spec.replicas: 1 → 2" in lines
    assert lines[-1] == "Resources: + 1 to create, ~ 2 to update, 107 unchanged"
    assert project.stack_file("test").read_text() == before, "a dry run changes nothing"
    refused = cli(
        "--project", str(project.root), "canary", "advance", "--stack", "test", "--model", "llama", "--step", "0",
        "--dry-run",
    )  # fmt: skip
    assert refused.returncode == 2 and "--step 0: a step adds percent" in refused.stderr, "as the real command"


def test_a_promotion_dry_run_previews_each_pulumi_up_in_order(cli: Cli, project: Project) -> None:
    (project.root / "__main__.py").symlink_to(ROOT / "__main__.py")
    (project.root / "components").symlink_to(ROOT / "components")
    assert canary.set_weight(project, "test", "llama", 40)
    dry = cli("--project", str(project.root), "canary", "promote", "--stack", "test", "--model", "llama", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    first, second = (
        lines.index("pulumi up 1 of 2: the canary's version becomes stable"),
        lines.index("pulumi up 2 of 2: the canary is removed"),
    )
    assert 0 < first < second
    assert "Cannot apply" not in dry.stdout
    assert "  - kubernetes:apps/v1:Deployment model-llama-canary (delete)" in lines[second:]


def test_automation_api_needs_the_pulumi_cli(project: Project) -> None:
    if shutil.which("pulumi") is None:
        pytest.skip("no Pulumi CLI on this machine: `pulumi up` through the Automation API cannot run here")
    deployer = canary.AutomationDeployer(project, print)
    with pytest.raises(canary.CanaryError):
        deployer.apply("no-such-stack", "test")


def test_a_failed_pulumi_up_puts_the_stack_file_back(project: Project) -> None:
    class Failing(RecordingDeployer):
        def apply(self, stack: str, message: str) -> None:
            raise canary.CanaryError("pulumi up failed")

    before = project.stack_file("test").read_text()
    lines: list[str] = []
    run = progression(project, "http://127.0.0.1:9", Failing(project), lines)
    with pytest.raises(canary.CanaryError):
        run.step_to(20)
    assert project.stack_file("test").read_text() == before
    assert lines == ["`pulumi up` failed: the stack file is back as it was before `canary llama: weight 20%`"]


def test_without_the_pulumi_cli_nothing_is_edited(cli: Cli, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    before = project.stack_file("test").read_text()
    result = cli("--project", str(project.root), "canary", "advance", "--stack", "test", "--model", "llama")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: the Pulumi CLI is not on PATH: each canary step is a `pulumi up`; install it "
        "(https://www.pulumi.com/docs/install/) and log in, or use --dry-run to see the step"
    ]
    assert project.stack_file("test").read_text() == before
    bad_step = cli(
        "--project", str(project.root), "canary", "advance", "--stack", "test", "--model", "llama", "--step", "-5"
    )
    assert bad_step.returncode == 2 and "--step -5: a step adds percent" in bad_step.stderr


class Died(BaseException):
    """The process killed mid-`pulumi up`: no handler of the command runs (a SIGKILL, a lost runner)."""


class Cluster(RecordingDeployer):
    """What the cluster serves: the declared weight of the last `pulumi up` that finished; `dies_on` kills the
    command during the up whose message starts so (the cluster then holds part of the change)."""

    def __init__(self, project: Project, dies_on: str | None = None) -> None:
        super().__init__(project)
        self.dies_on = dies_on
        self.serving: tuple[str, str | None, int] | None = ("v1", "v2", 0)

    def apply(self, stack: str, message: str) -> None:
        if self.dies_on and message.startswith(self.dies_on):
            self.serving = None  # part of the change applied: neither the old state nor the new
            raise Died
        super().apply(stack, message)
        self.serving = self.applied[-1][1:]


def declared(project: Project) -> tuple[str, str | None, int]:
    split = canary.split_of(load(project)(), "llama")
    return split.stable, split.canary, split.weight


@pytest.mark.parametrize(
    ("verb", "dies_on"),
    [
        ("advance", "canary llama: weight 20%"),
        ("rollback", "canary llama: weight 0%"),
        ("promote", "canary llama: v2 becomes stable"),
        ("promote", "canary llama: canary removed"),
    ],
)
def test_the_same_command_after_a_crash_brings_the_cluster_to_the_file(
    project: Project, verb: str, dies_on: str
) -> None:
    if verb == "rollback":
        assert canary.set_weight(project, "test", "llama", 30)
    cluster = Cluster(project, dies_on)
    cluster.serving = declared(project)

    def command(deployer: Cluster) -> None:
        run = progression(project, "http://127.0.0.1:9", deployer, [])
        {"advance": lambda: run.step_to(20), "rollback": run.rollback, "promote": run.promote}[verb]()

    with pytest.raises(Died):
        command(cluster)
    assert cluster.serving is None
    assert canary.journal_file(project, "test", "llama").is_file()
    cluster.dies_on = None
    before = len(cluster.applied)
    command(cluster)  # the same command again, as the interrupt hint says
    assert cluster.serving == declared(project)
    # Rollback abandons the unfinished step; the others finish it.
    first = "canary llama: weight 0%" if verb == "rollback" else "canary llama: settle after `" + dies_on
    assert cluster.applied[before][0].startswith(first)
    assert not canary.journal_file(project, "test", "llama").exists()
    if verb == "promote":
        assert declared(project) == ("v2", None, 0)


def test_a_step_already_applied_runs_no_second_up(project: Project) -> None:
    cluster = Cluster(project)
    run = progression(project, "http://127.0.0.1:9", cluster, [])
    run.step_to(20)
    run.step_to(20)
    assert [m for m, *_ in cluster.applied] == ["canary llama: weight 20%"]


def test_a_rollback_after_an_interrupted_promotion_undoes_it(project: Project) -> None:
    """The promotion died in its first `pulumi up` (stable already v2 in the file): rollback goes back to the file
    before the promotion began, at weight 0, and applies it."""
    assert canary.set_weight(project, "test", "llama", 40)
    cluster = Cluster(project, dies_on="canary llama: v2 becomes stable")
    with pytest.raises(Died):
        progression(project, "http://127.0.0.1:9", cluster, []).promote()
    assert declared(project) == ("v2", "v2", 40)
    cluster.dies_on = None
    lines: list[str] = []
    progression(project, "http://127.0.0.1:9", cluster, lines).rollback()
    assert declared(project) == ("v1", "v2", 0) and cluster.serving == ("v1", "v2", 0)
    assert (
        lines[0]
        == "`canary llama: v2 becomes stable` did not finish: abandoned, the stack file is back as it was before it"
    )


def test_a_failed_up_leaves_an_edit_made_meanwhile(project: Project) -> None:
    path = project.stack_file("test")

    class EditedMeanwhile(RecordingDeployer):
        def apply(self, stack: str, message: str) -> None:
            path.write_text(path.read_text().replace("maxWeight: 40", "maxWeight: 30"))
            raise canary.CanaryError("pulumi up failed")

    lines: list[str] = []
    with pytest.raises(canary.CanaryError):
        progression(project, "http://127.0.0.1:9", EditedMeanwhile(project), lines).step_to(20)
    assert "maxWeight: 30" in path.read_text(), "the other edit is kept"
    assert lines == ["`pulumi up` failed; the stack file was changed meanwhile, so it is left as it is now"]


def test_the_canary_version_changing_mid_run_stops_it(project: Project, prometheus: tuple[str, FakePrometheus]) -> None:
    url, fake = prometheus
    fake.scenario = [HEALTHY]
    deployer = RecordingDeployer(project)
    run = progression(project, url, deployer, [])
    path = project.stack_file("test")

    def someone_edits(_: float) -> None:
        path.write_text(path.read_text().replace("version: v2", "version: v3"))

    run.sleep = someone_edits
    with pytest.raises(canary.CanaryError, match=r"the canary version changed during the run \(v2 → v3\)"):
        run.run()
