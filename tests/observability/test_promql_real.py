"""Every PromQL query of the platform (the canary's analysis, the dashboard's tiles, the alert conditions) on a
real Prometheus, over series shaped as Istio, vLLM 0.27 and dcgm-exporter write them (tests/prometheus.py).

The scenarios: an error-free canary, one answering 10% 503, an idle one (no request: Istio wrote no series), one
whose vLLM metrics were never scraped, a slow one, and GPUs on two nodes, one of them seen through a scrape that
renamed dcgm-exporter's `pod` label.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_mesh.ops import canary
from llm_mesh.plan import queries
from llm_mesh.plan.alerts import alert_rules
from llm_mesh.plan.config import StackConfig, parse_stack_config
from llm_mesh.plan.dashboards import overview
from tests import exporters
from tests.conftest import ROOT, Cli
from tests.helpers import served_model, version
from tests.prometheus import AT, MODEL, SCENARIOS, Prometheus, start


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    running = start(Path(tmp_path_factory.mktemp("prometheus")))
    yield running
    running.stop()


def config_in(scenario: str, observability: dict[str, Any] | None = None, **canary_rules: Any) -> StackConfig:
    return parse_stack_config(
        {
            "environment": "dev",
            "gcp": {"project": "llm-mesh-test"},
            "inference": {"namespace": SCENARIOS[scenario].namespace},
            "models": [served_model(MODEL, canary=version("v2"), canaryWeight=20)],
            "canary": {"minRequests": 100, **canary_rules},
            "observability": observability or {},
        }
    )


def check(server: Prometheus, scenario: str) -> canary.Check:
    config = config_in(scenario)
    source = canary.PrometheusApi(server.url, clock=lambda: AT)
    return canary.analyse(source, config, MODEL, config.canary)


def scope(scenario: str, track: str | None = None) -> queries.Scope:
    return queries.Scope(MODEL, SCENARIOS[scenario].namespace, track)


# --- the canary's analysis ----------------------------------------------------------------------------------------


def test_an_error_free_canary_passes_every_figure(server: Prometheus) -> None:
    result = check(server, "error-free")
    assert (result.verdict, result.reasons) == ("pass", [])
    assert result.requests == 300 and result.success_rate == 1.0
    assert [(m.name, m.ok) for m in result.measures] == [
        ("canary requests", True),
        ("success rate", True),
        ("P99 latency", True),
        ("P99 time to first token", True),
    ]


def test_errors_over_total_is_empty_for_an_error_free_track(server: Prometheus) -> None:
    """Why success is good over total: Istio has written no 5xx series, so a ratio with it on top has no value."""
    s = scope("error-free", "canary")
    errors = f'sum(rate(istio_requests_total{{{s.istio()},response_code=~"5.."}}[5m]))'
    assert server.query(f"1 - ({errors} / {queries.qps(s)})") == []
    assert server.values(queries.success_rate(s)) == {(): 1.0}
    assert server.values(queries.error_rate(s)) == {(): 0.0}


def test_a_canary_answering_ten_percent_503_fails_on_its_success_rate(server: Prometheus) -> None:
    result = check(server, "errors")
    assert result.verdict == "fail"
    assert result.reasons == ["success rate 90.00%, limit ≥ 99.00%"]


def test_an_idle_canary_is_not_judged(server: Prometheus) -> None:
    result = check(server, "idle")
    assert result.verdict == "no-data"
    assert result.requests == 0 and result.success_rate is None
    assert result.reasons == ["0 canary requests in 5m, fewer than 100: no judgement on so little traffic"]


def test_with_traffic_a_figure_without_data_fails(server: Prometheus) -> None:
    result = check(server, "unscraped")
    assert result.verdict == "fail"
    assert result.reasons == ["P99 time to first token no data, limit ≤ 2.5 s"]


def test_a_slow_canary_fails_on_latency_against_stable_and_on_time_to_first_token(server: Prometheus) -> None:
    result = check(server, "slow")
    assert result.verdict == "fail"
    assert result.reasons == [
        "P99 latency 4975 ms, limit ≤ 1.25 × stable's 995 ms",
        "P99 time to first token 4.97 s, limit ≤ 2.5 s",
    ]


def test_a_refused_query_is_a_failed_check_not_a_crash(server: Prometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "request_count", lambda *_: "sum(rate(istio_requests_total[5m])")
    result = check(server, "error-free")
    assert result.verdict == "fail"
    assert result.reasons[0].startswith(f"no measurement: metrics at {server.url}: ")


def test_an_unreachable_prometheus_is_tried_again_then_fails_the_check() -> None:
    waits: list[float] = []
    source = canary.PrometheusApi("http://127.0.0.1:9", timeout=1, sleep=waits.append)
    config = config_in("error-free")
    result = canary.analyse(source, config, MODEL, config.canary)
    assert result.verdict == "fail" and "(3 attempts)" in result.reasons[0]
    assert waits == [2.0, 2.0]


# --- dashboards and alerts ------------------------------------------------------------------------------------------


def test_every_tile_draws_a_line_per_track_where_there_was_traffic(server: Prometheus) -> None:
    """On the error-free scenario every per-track tile has a value for stable and for canary: the 5xx tile shows
    0, not nothing; the GPU tiles show both nodes and both tracks."""
    dashboard = overview(config_in("error-free"), "dev", "llm-mesh-dev")
    empty = []
    for tile in dashboard.mosaic_layout.tiles:
        chart = tile.widget.xy_chart
        for data_set in chart.data_sets if chart else []:
            query = data_set.time_series_query.prometheus_query
            if not server.query(query):
                empty.append((tile.widget.title, data_set.legend_template))
    assert empty == []


def test_the_5xx_tile_and_the_success_rate_agree_per_track(server: Prometheus) -> None:
    assert server.values(queries.error_rate(scope("errors"))) == {
        (("destination_canonical_revision", "canary"),): pytest.approx(0.1),
        (("destination_canonical_revision", "stable"),): 0.0,
    }


def test_gpu_use_per_node_and_per_track(server: Prometheus) -> None:
    assert server.values(queries.gpu_utilization()) == {
        (("Hostname", "gke-gpu-node-a"),): 96.0,
        (("Hostname", "gke-gpu-node-b"),): 20.0,
    }
    assert server.values(queries.gpu_utilization_by_track(scope("error-free"))) == {
        (("llm_mesh_model", MODEL), ("llm_mesh_track", "canary")): 20.0,
        (("llm_mesh_model", MODEL), ("llm_mesh_track", "stable")): 96.0,
    }
    memory = server.values(queries.gpu_memory_used_share())
    assert memory[(("Hostname", "gke-gpu-node-a"),)] == pytest.approx(19200 / 22000)


def firing(server: Prometheus, scenario: str, **alerts: Any) -> dict[str, list[dict[str, str]]]:
    rules = alert_rules(config_in(scenario, {"alerts": alerts}), "dev", "llm-mesh-dev")
    return {rule.key: [r["metric"] for r in server.query(rule.query)] for rule in rules}


def test_the_errors_alert_fires_for_the_failing_track_only(server: Prometheus) -> None:
    assert firing(server, "errors")[f"{MODEL}-errors"] == [{"destination_canonical_revision": "canary"}]
    assert firing(server, "error-free")[f"{MODEL}-errors"] == []


def test_the_gpu_alert_names_the_saturated_node_only(server: Prometheus) -> None:
    assert firing(server, "error-free")["gpu-saturation"] == [{"Hostname": "gke-gpu-node-a"}]


def test_the_latency_alert_fires_on_the_slow_track(server: Prometheus) -> None:
    assert firing(server, "slow", latencyP99Seconds=3)[f"{MODEL}-latency"] == [
        {"destination_canonical_revision": "canary"}
    ]
    assert firing(server, "error-free", latencyP99Seconds=3)[f"{MODEL}-latency"] == []


# --- names ----------------------------------------------------------------------------------------------------------


def test_the_ttft_limit_bounds_are_vllms() -> None:
    assert exporters.TTFT_BUCKETS == queries.TTFT_BUCKET_BOUNDS


# --- `llm-mesh canary check`, read-only, against the same server ----------------------------------------------------


@pytest.fixture
def scenario_project(tmp_path: Path) -> Callable[[str], Path]:
    def make(scenario: str) -> Path:
        root = tmp_path / scenario
        (root / "stacks").mkdir(parents=True)
        shutil.copy(ROOT / "Pulumi.yaml", root)
        config = {
            "llm-mesh:environment": "dev",
            "llm-mesh:gcp": {"project": "llm-mesh-test"},
            "llm-mesh:inference": {"namespace": SCENARIOS[scenario].namespace},
            "llm-mesh:models": [served_model(MODEL, canary=version("v2"), canaryWeight=20)],
        }
        (root / "stacks" / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": config}))
        return root

    return make


@pytest.mark.parametrize(
    ("scenario", "code", "verdict"),
    [("error-free", 0, "pass"), ("errors", 1, "fail"), ("idle", 4, "no decision: too little traffic to judge")],
)
def test_canary_check_prints_each_figure_its_limit_and_the_verdict(
    server: Prometheus, scenario_project: Callable[[str], Path], cli: Cli, scenario: str, code: int, verdict: str
) -> None:
    root = scenario_project(scenario)
    args = ("canary", "check", "--stack", "test", "--model", MODEL, "--prometheus-url", server.url, "--at", str(AT))
    result = cli("--project", str(root), *args)
    assert (result.returncode, result.stderr) == (code, "")
    lines = result.stdout.splitlines()
    assert lines[0] == f"canary {MODEL} in test, 5m up to 2026-01-01T00:30:00+00:00 (Prometheus API {server.url}):"
    assert lines[-1] == f"verdict: {verdict}"
    if scenario == "errors":
        assert "  success rate: 90.00%  (limit ≥ 99.00%)  FAIL" in lines
    if scenario == "error-free":
        assert lines[1:5] == [
            "  canary requests: 300 in 5m  (limit ≥ 100)  ok",
            "  success rate: 100.00%  (limit ≥ 99.00%)  ok",
            "  P99 latency: 995 ms  (limit ≤ 1.25 × stable's 995 ms)  ok",
            "  P99 time to first token: 0.50 s  (limit ≤ 2.5 s)  ok",
        ]
    assert not (root / ".llm-mesh").exists(), "a check is read-only"


# --- the endpoint pickers' tiles (a model on the inference-pool path) ----------------------------------------------


def test_the_pickers_view_of_a_pool_reads_as_the_busier_picker_sees_it(server: Prometheus) -> None:
    from tests.prometheus import PICKER_CHOICE_S, PICKER_NAMESPACE, PICKER_POOL, PICKER_VIEWS

    def one(query: str) -> float:
        (value,) = server.values(query).values()
        return value

    assert one(queries.picker_pool_queue(PICKER_NAMESPACE, PICKER_POOL)) == max(
        v["queue"] for v in PICKER_VIEWS.values()
    )  # type: ignore[type-var]
    assert one(queries.picker_pool_kv_cache(PICKER_NAMESPACE, PICKER_POOL)) == 0.7
    assert one(queries.picker_ready_pods(PICKER_NAMESPACE, PICKER_POOL)) == 2.0
    per_pod = server.values(queries.picker_pod_queue(PICKER_NAMESPACE, PICKER_POOL))
    assert per_pod == {(("model_server_pod", "server-1"),): 5.0, (("model_server_pod", "server-2"),): 1.0}
    p99 = one(queries.picker_scheduling_latency(PICKER_NAMESPACE, f"{PICKER_POOL}-epp"))
    # Every choice in the (2 ms, 5 ms] bucket: histogram_quantile interpolates inside it.
    assert 0.002 < PICKER_CHOICE_S <= 0.005 and p99 == pytest.approx(0.002 + 0.003 * 0.99)
    # Another pool's picker, or another namespace, reads nothing.
    assert server.query(queries.picker_pool_queue(PICKER_NAMESPACE, f"{MODEL}-canary")) == []
