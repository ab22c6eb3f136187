"""Progressive canary: every step is an edit of the stack file and one reviewable `pulumi up`.

The split lives in the stack's config (`models[].canaryWeight`), so nothing fights the declared state: `advance`
raises the weight by a step, `rollback` sets it to 0 at once, `promote` makes the canary version the stable
one. `run` does the whole progression, judging the canary against stable with the observability queries
before each step. Each change goes through a `Deployer` (the Pulumi Automation API, or a dry run that shows
the offline diff), and metrics come from any Prometheus-compatible HTTP API, so the progression is tested
without a cloud.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llm_mesh.engine.stackfile import Project
from llm_mesh.errors import InputError
from llm_mesh.mesh.base import duration_seconds
from llm_mesh.ops.stack_edit import StackFileEdit, write_atomically
from llm_mesh.plan import queries
from llm_mesh.plan.config import CanaryConfig, StackConfig


class CanaryError(InputError):
    """The model has no canary, the stack file cannot take the edit, or the metrics cannot be read."""


class MetricsUnavailable(CanaryError):
    """The Prometheus API did not answer, or answered with an error: no step is taken on no data."""


# --- the stack file


@dataclass(frozen=True)
class Split:
    model: str
    stable: str
    canary: str | None
    weight: int


def split_of(config: StackConfig, model: str) -> Split:
    found = next((m for m in config.models if m.name == model), None)
    if found is None:
        raise CanaryError(
            f"--model {model}: no such model in the stack (models: {', '.join(m.name for m in config.models)})"
        )
    canary = found.canary.version if found.canary else None
    return Split(model, found.stable.version, canary, found.canary_weight)


def advanced(split: Split, rules: CanaryConfig, step: int | None) -> int:
    """The weight `advance` takes the canary to: a step more (default: canary.step), capped by canary.maxWeight."""
    return min(split.weight + (step or rules.step), rules.max_weight)


def _model_node(edit: StackFileEdit, project: Project, model: str) -> Any:
    models = edit.setting("llm-mesh:models", project.name) or []
    for node in models:
        if isinstance(node, dict) and node.get("name") == model:
            return node
    raise CanaryError(f"{edit.path}: no model {model!r} under llm-mesh:models")


def set_weight(project: Project, stack: str, model: str, weight: int) -> bool:
    """Write `canaryWeight` of the model, keeping the file's comments and layout; False when it was already so."""
    edit = StackFileEdit.open(project.stack_file(stack))
    node = _model_node(edit, project, model)
    if node.get("canaryWeight", 0) == weight:
        return False
    edit.set(node, "canaryWeight", weight)
    return edit.save()


def make_canary_stable(project: Project, stack: str, model: str) -> bool:
    """The canary's version (its files, source and image) becomes stable's, the weight kept: one `up` in which
    the stable pods roll to the new version while the canary's keep serving their share, so that stable, sized
    for its own share, does not take the canary's too while it rolls (Flagger routes to the canary until the
    primary's rollout has finished, for the same reason). The next `up` removes the canary."""
    edit = StackFileEdit.open(project.stack_file(stack))
    node = _model_node(edit, project, model)
    canary = node.get("canary")
    if not isinstance(canary, dict):
        raise CanaryError(f"{edit.path}: model {model!r} has no canary to promote")
    edit.set(node, "stable", canary)
    return edit.save()


def remove_canary(project: Project, stack: str, model: str) -> bool:
    """After promotion: the canary section goes (and with it the warm canary replica)."""
    edit = StackFileEdit.open(project.stack_file(stack))
    node = _model_node(edit, project, model)
    if "canary" not in node:
        return False
    del node["canary"]
    if "canaryWeight" in node:
        del node["canaryWeight"]
    return edit.save()


# --- applying a change


class Deployer(Protocol):
    def apply(self, stack: str, message: str) -> None:
        """Make the cluster match the stack file (a `pulumi up`), or show what that would do."""

    def ready(self, stack: str) -> None:
        """Raise CanaryError, before the stack file is edited, when `apply` could not run."""


@dataclass
class AutomationDeployer:
    """`pulumi up` through the Automation API on the local project, progress streamed as it comes."""

    project: Project
    log: Callable[[str], None]

    def ready(self, stack: str) -> None:
        if shutil.which("pulumi") is None:
            raise CanaryError(
                "the Pulumi CLI is not on PATH: each canary step is a `pulumi up`; install it "
                "(https://www.pulumi.com/docs/install/) and log in, or use --dry-run to see the step"
            )
        self._stack(stack)

    def _stack(self, stack: str) -> Any:
        from pulumi import automation

        try:
            return automation.select_stack(stack_name=stack, work_dir=str(self.project.root))
        except Exception as exc:  # no login, no such stack: said in one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CanaryError(f"pulumi stack {stack}: {first}; log in (`pulumi login`) and select the stack") from None

    def apply(self, stack: str, message: str) -> None:
        selected = self._stack(stack)
        result = selected.up(message=message, on_output=self.log)
        self.log(f"pulumi up: {result.summary.result} ({json.dumps(result.summary.resource_changes or {})})")


# --- metrics


class MetricSource(Protocol):
    def value(self, promql: str) -> float | None:
        """The query's single value now; None when it has no series (nothing measured)."""


@dataclass
class PrometheusApi:
    """The instant-query API of a Prometheus or of managed Prometheus's frontend.

    A query that fails (unreachable, refused, timed out) is tried `attempts` times, `backoff` seconds apart,
    before MetricsUnavailable; `clock` (unix seconds) sets the instant queried, the server's now when None."""

    url: str
    timeout: float = 10.0
    attempts: int = 3
    backoff: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] | None = None

    def value(self, promql: str) -> float | None:
        params = {"query": promql} | ({"time": f"{self.clock():.3f}"} if self.clock else {})
        url = f"{self.url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode(params)}"
        for attempt in range(1, self.attempts + 1):
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as answer:
                    body = json.loads(answer.read())
                break
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == self.attempts:  # a refused query (400, 422): no retry mends that
                    raise MetricsUnavailable(f"metrics at {self.url}: {_api_error(exc)}") from None
                self.sleep(self.backoff)  # a frontend or proxy in trouble (502, 503, 504): try again
            except (OSError, ValueError) as exc:
                if attempt == self.attempts:
                    raise MetricsUnavailable(
                        f"metrics at {self.url}: {exc} ({attempt} attempts); is the Prometheus API reachable?"
                    ) from None
                self.sleep(self.backoff)
        if body.get("status") != "success":
            raise MetricsUnavailable(f"metrics at {self.url}: {body.get('error', 'query failed')}")
        results = (body.get("data") or {}).get("result") or []
        if not results:
            return None
        if len(results) > 1:  # a figure is one number: several series mean the query does not say which
            labels = [r.get("metric") for r in results[:3]]
            raise MetricsUnavailable(f"metrics at {self.url}: {len(results)} series where one was expected: {labels}")
        value = float(results[0]["value"][1])
        return None if value != value else value  # NaN (0/0: no requests) measures nothing


def _api_error(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error") or exc)
    except (OSError, ValueError):
        return str(exc)


# --- analysis


@dataclass(frozen=True)
class Measure:
    """One figure of a check, with the limit it was held to."""

    name: str
    value: str  # as measured, or "no data"
    limit: str
    ok: bool


@dataclass(frozen=True)
class Check:
    """One analysis of the canary, Flagger's way: no traffic decides nothing, and with traffic every figure must
    be measured and within its limit; a query that cannot be answered is a failed check."""

    verdict: str  # "pass", "fail" or "no-data"
    reasons: list[str]
    requests: float
    success_rate: float | None
    p99_ms: float | None
    stable_p99_ms: float | None
    ttft_p99_s: float | None
    measures: list[Measure] = field(default_factory=list)
    # Set when nothing could be measured (Prometheus unreachable, a refused query): a failed check for a run,
    # an unusable input for `canary check`.
    unmeasured: str | None = None

    def figures(self) -> str:
        p99 = "no data" if self.p99_ms is None else f"{self.p99_ms:.0f} ms"
        stable = "no data" if self.stable_p99_ms is None else f"{self.stable_p99_ms:.0f} ms"
        ttft = "no data" if self.ttft_p99_s is None else f"{self.ttft_p99_s:.2f} s"
        return (
            f"{self.requests:.0f} requests, success {_pct(self.success_rate)}, P99 {p99} (stable {stable}), "
            f"TTFT P99 {ttft}"
        )


def analyse(source: MetricSource, config: StackConfig, model: str, rules: CanaryConfig) -> Check:
    namespace = config.inference.namespace
    canary = queries.Scope(model, namespace, "canary")
    stable = queries.Scope(model, namespace, "stable")
    window = rules.window
    try:
        requests = source.value(queries.request_count(canary, window)) or 0.0
        success = source.value(queries.success_rate(canary, window))
        p99 = source.value(queries.latency_quantile(canary, 0.99, window))
        stable_p99 = source.value(queries.latency_quantile(stable, 0.99, window))
        ttft = source.value(queries.time_to_first_token(canary, 0.99, window))
    except MetricsUnavailable as exc:
        return Check("fail", [f"no measurement: {exc}"], 0.0, None, None, None, None, unmeasured=str(exc))
    latency_limit = None if stable_p99 is None else stable_p99 * rules.max_latency_ratio
    measures = [
        Measure(
            "canary requests", f"{requests:.0f} in {window}", f"≥ {rules.min_requests}", requests >= rules.min_requests
        ),
        Measure(
            "success rate",
            _pct(success),
            f"≥ {rules.min_success_rate:.2%}",
            success is not None and success >= rules.min_success_rate,
        ),
        Measure(
            "P99 latency",
            _ms(p99),
            f"≤ {rules.max_latency_ratio:g} × stable's {_ms(stable_p99)}",
            p99 is not None and latency_limit is not None and p99 <= latency_limit,
        ),
        Measure(
            "P99 time to first token",
            "no data" if ttft is None else f"{ttft:.2f} s",
            f"≤ {rules.max_ttft_seconds:g} s",
            ttft is not None and ttft <= rules.max_ttft_seconds,
        ),
    ]
    figures = (requests, success, p99, stable_p99, ttft)
    if requests < rules.min_requests:
        reason = f"{requests:.0f} canary requests in {window}, fewer than {rules.min_requests}: no judgement on so little traffic"
        return Check("no-data", [reason], *figures, measures)
    reasons = [f"{m.name} {m.value}, limit {m.limit}" for m in measures if not m.ok]
    return Check("fail" if reasons else "pass", reasons, *figures, measures)


def _pct(value: float | None) -> str:
    return "no data" if value is None else f"{value:.2%}"


def _ms(value: float | None) -> str:
    return "no data" if value is None else f"{value:.0f} ms"


# --- a step that survives a crash


def read_journal(project: Project, stack: str, model: str) -> dict[str, Any] | None:
    """The step a crash or a failed `pulumi up` left unfinished (`step`, and the stack file `before` it), if any."""
    journal = journal_file(project, stack, model)
    return dict(json.loads(journal.read_text())) if journal.is_file() else None


def pending_step(project: Project, stack: str, model: str) -> str | None:
    journal = read_journal(project, stack, model)
    return None if journal is None else str(journal.get("step", "a canary step"))


def journal_file(project: Project, stack: str, model: str) -> Path:
    return project.root / ".llm-mesh" / "canary" / f"{stack}-{model}.pending.json"


# --- the progression


@dataclass
class Outcome:
    result: str  # "promoted", "rolled back", "stopped", "no decision", "failed"
    weight: int
    checks: list[Check] = field(default_factory=list)


@dataclass
class Progression:
    project: Project
    stack: str
    model: str
    load_config: Callable[[], StackConfig]
    deployer: Deployer
    source: MetricSource
    log: Callable[[str], None]
    sleep: Callable[[float], None] = time.sleep
    max_checks: int = 100

    applying: bool = False

    def _apply(self, message: str, before: str) -> None:
        """One `pulumi up` of the edited stack file. A journal names the step until the up has finished, so that
        the next command finishes it after a crash; if the up fails, the file goes back to what it was (unless
        someone changed it meanwhile) and the journal stays (the cluster may hold part of the change): the next
        command applies the file again."""
        path = self.project.stack_file(self.stack)
        edited = path.read_text()
        self.applying = True
        try:
            self.deployer.apply(self.stack, message)
        except Exception:
            if path.read_text() == edited:
                write_atomically(path, before)
                self.log(f"`pulumi up` failed: the stack file is back as it was before `{message}`")
            else:
                self.log("`pulumi up` failed; the stack file was changed meanwhile, so it is left as it is now")
            raise
        finally:
            self.applying = False
        journal_file(self.project, self.stack, self.model).unlink(missing_ok=True)

    def _begin(self, message: str, before: str) -> None:
        """The journal: the step, and the stack file as it was before it (what a rollback goes back to)."""
        journal = journal_file(self.project, self.stack, self.model)
        journal.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(journal, json.dumps({"step": message, "before": before}) + "\n")

    def pending(self) -> str | None:
        """The step a crash or a failed `pulumi up` left unfinished, if any."""
        return pending_step(self.project, self.stack, self.model)

    def settle(self) -> bool:
        """Finish a step a crash or a failed `pulumi up` left unfinished: apply the stack file as it is. True when
        there was one."""
        step = self.pending()
        if step is None:
            return False
        self.log(f"`{step}` did not finish: applying the stack file as it is, so the cluster matches it")
        before = self.project.stack_file(self.stack).read_text()
        self._apply(f"canary {self.model}: settle after `{step}`", before)
        return True

    def step_to(self, weight: int) -> None:
        self.settle()
        before = self.project.stack_file(self.stack).read_text()
        message = f"canary {self.model}: weight {weight}%"
        self._begin(message, before)
        if set_weight(self.project, self.stack, self.model, weight):
            self._apply(message, before)
        else:
            journal_file(self.project, self.stack, self.model).unlink()
        self.log(f"canary {self.model} at {weight}%")

    def rollback(self) -> None:
        """Weight 0 at once. An unfinished step is abandoned, not finished: the stack file goes back to what it
        was before that step (an interrupted promotion stays undone), and the up always runs, since the cluster
        may hold part of the abandoned step."""
        journal = read_journal(self.project, self.stack, self.model)
        if journal is None:
            self.step_to(0)
            return
        step = journal.get("step", "a canary step")
        path = self.project.stack_file(self.stack)
        before = path.read_text()
        abandoned = journal.get("before")
        if isinstance(abandoned, str):
            write_atomically(path, abandoned)
        self.log(f"`{step}` did not finish: abandoned, the stack file is back as it was before it")
        set_weight(self.project, self.stack, self.model, 0)
        message = f"canary {self.model}: weight 0%"
        self._begin(message, before)
        self._apply(message, before)
        self.log(f"canary {self.model} at 0%")

    def promote(self) -> None:
        if self.settle() and split_of(self.load_config(), self.model).canary is None:
            self.log(f"promotion of {self.model} finished")
            return
        split = split_of(self.load_config(), self.model)
        for message, edit in (
            (f"canary {self.model}: {split.canary} becomes stable", make_canary_stable),
            (f"canary {self.model}: canary removed after promotion", remove_canary),
        ):
            before = self.project.stack_file(self.stack).read_text()
            self._begin(message, before)
            edit(self.project, self.stack, self.model)
            self._apply(message, before)
        self.log(f"promoted {split.canary} of {self.model} to stable")

    def run(self) -> Outcome:
        config = self.load_config()
        rules = config.canary
        split = split_of(config, self.model)
        if split.canary is None:
            raise CanaryError(f"model {self.model!r} has no canary version; add canary: {{version: ...}} first")
        weight = split.weight
        outcome = Outcome("no decision", weight)
        failures = idle = 0
        try:
            # Before the first step: a run that cannot read its metrics would step, fail and roll back.
            try:
                self.source.value("vector(1)")
            except MetricsUnavailable as exc:
                raise CanaryError(f"{exc}; no step taken (port-forward managed Prometheus's frontend first)") from None
            self.settle()
            if weight == 0:
                weight = min(rules.step, rules.max_weight)
                self.step_to(weight)
                outcome.weight = weight
            for _ in range(self.max_checks):
                self.sleep(duration_seconds(rules.interval))
                now = split_of(self.load_config(), self.model)
                if now.canary != split.canary:
                    raise CanaryError(
                        f"the canary version changed during the run ({split.canary} → {now.canary}): its checks "
                        "so far judged another version; start the run again"
                    )
                check = analyse(self.source, config, self.model, rules)
                outcome.checks.append(check)
                detail = "; ".join(check.reasons) if check.reasons else check.figures()
                self.log(f"check at {weight}%: {check.verdict} ({detail})")
                if check.verdict == "no-data":
                    idle += 1
                    if idle >= rules.no_traffic_checks:
                        self.log(f"{idle} checks in a row without traffic: the canary is rolled back")
                        self.rollback()
                        outcome.result, outcome.weight = "rolled back", 0
                        return outcome
                    continue  # no traffic never promotes
                idle = 0
                if check.verdict == "fail":
                    failures += 1
                    if failures >= rules.failed_checks:
                        self.rollback()
                        outcome.result, outcome.weight = "rolled back", 0
                        return outcome
                    continue
                if weight >= rules.max_weight:
                    self.promote()
                    outcome.result, outcome.weight = "promoted", 100
                    return outcome
                weight = min(weight + rules.step, rules.max_weight)
                self.step_to(weight)
                outcome.weight = weight
            return outcome
        except KeyboardInterrupt:
            declared = split_of(self.load_config(), self.model).weight
            if self.applying:
                self.log(
                    f"interrupted during `pulumi up`: the stack file declares canary weight {declared}%, which the "
                    "cluster may only partly have; run the same command again to finish the step"
                )
            else:
                self.log(f"interrupted: the stack stays at canary weight {declared}%, as declared and applied")
            outcome.result, outcome.weight = "stopped", declared
            return outcome
        except Exception:
            outcome.result = "failed"
            raise
        finally:
            # Whatever happened, what was measured is kept for `canary status`.
            save_status(self.project, self.stack, self.model, outcome)


# --- status


def status_file(project: Project, stack: str, model: str) -> Path:
    return project.root / ".llm-mesh" / "canary" / f"{stack}-{model}.json"


def save_status(project: Project, stack: str, model: str, outcome: Outcome) -> None:
    path = status_file(project, stack, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    last = asdict(outcome.checks[-1]) if outcome.checks else None
    path.write_text(json.dumps({"result": outcome.result, "weight": outcome.weight, "lastCheck": last}, indent=2))


def load_status(project: Project, stack: str, model: str) -> dict[str, Any] | None:
    path = status_file(project, stack, model)
    return json.loads(path.read_text()) if path.is_file() else None
