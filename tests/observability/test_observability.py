"""Observability as code: decisions tested as plain data (config rules, PromQL, the dashboard model, alert
thresholds, the collector's config), then the plans read as the engine shows them (the collector, Telemetry,
scraping, dashboard, alerts, SLOs, logs), then `validate` catching spans sent where nothing serves them."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from llm_mesh.checks.serving import serving_findings
from llm_mesh.checks.telemetry import telemetry_findings
from llm_mesh.engine.readers import EngineResource, read_document
from llm_mesh.engine.values import UNKNOWN
from llm_mesh.plan import queries
from llm_mesh.plan.alerts import alert_rules
from llm_mesh.plan.config import ConfigError, StackConfig, image_pinned, parse_stack_config
from llm_mesh.plan.dashboards import Dashboard, MosaicLayout, Text, Tile, Widget, overview
from llm_mesh.plan.observability import (
    availability_filters,
    collector_config,
    logs_explorer_url,
    pipeline_problems,
    server_errors_query,
)
from tests import exporters
from tests.conftest import FIXTURE_STACKS, ROOT, STACKS, Cli
from tests.helpers import prop, resource, served_model, steps_of_type, version

PROD_CLUSTER = "llm-mesh-prod"
COLLECTOR_HOST = "opentelemetry-collector.observability.svc.cluster.local"
ENDPOINT = f"grpc://{COLLECTOR_HOST}:4317"
ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
TELEMETRY = "kubernetes:telemetry.istio.io/v1:Telemetry"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def stack_config(stack: str) -> StackConfig:
    raw = yaml.safe_load((FIXTURE_STACKS / f"Pulumi.{stack}.yaml").read_text())["config"]
    return parse_stack_config({key.split(":", 1)[1]: value for key, value in raw.items()})


def config_with(**observability: Any) -> StackConfig:
    return parse_stack_config(
        {
            "environment": "dev",
            "gcp": {"project": "llm-mesh-test"},
            "models": [served_model("m", canary=version("v2"), canaryWeight=10)],
            "observability": observability,
        }
    )


def problems(**observability: Any) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        config_with(**observability)
    return refused.value.problems


# --- config: every mistake refused with its key ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("observability", "line"),
    [
        (
            {"tracingSamplingPercent": 100.5},
            "llm-mesh:observability.tracingSamplingPercent = 100.5: a percentage of requests: at least 0 and at most 100",
        ),
        (
            {"tracingSamplingPercent": -1},
            "llm-mesh:observability.tracingSamplingPercent = -1: a percentage of requests: at least 0 and at most 100",
        ),
        (
            {"alerts": {"errorRate": 0}},
            "llm-mesh:observability.alerts.errorRate = 0: a share of requests: above 0 and at most 1",
        ),
        (
            {"alerts": {"errorRate": 5}},
            "llm-mesh:observability.alerts.errorRate = 5: a share of requests: above 0 and at most 1",
        ),
        (
            {"alerts": {"gpuUtilizationPercent": 120}},
            "llm-mesh:observability.alerts.gpuUtilizationPercent = 120: a percentage: above 0 and at most 100",
        ),
        (
            {"alerts": {"queueDepth": 0}},
            "llm-mesh:observability.alerts.queueDepth = 0: requests waiting: at least 1 and at most 100000",
        ),
        (
            {"alerts": {"latencyP99Seconds": 0}},
            "llm-mesh:observability.alerts.latencyP99Seconds = 0: seconds: above 0 and at most 3600",
        ),
        (
            {"availabilityGoal": 1},
            "llm-mesh:observability.availabilityGoal = 1: a share of requests: at least 0.5 and at most 0.9999",
        ),
        (
            {"alerts": {"notificationChannels": ["oncall@example.com"]}},
            "llm-mesh:observability.alerts.notificationChannels[0] = 'oncall@example.com': a channel's resource name: "
            "projects/PROJECT/notificationChannels/ID (`gcloud beta monitoring channels list` prints them)",
        ),
        (
            {"otelCollectorHost": "collector.example.com"},
            "llm-mesh:observability.otelCollectorHost = 'collector.example.com': the stack deploys the collector "
            "itself: name it as <service>.<namespace>.svc.cluster.local",
        ),
    ],
)
def test_out_of_range_observability_settings_are_refused_naming_the_key(
    observability: dict[str, Any], line: str
) -> None:
    assert problems(**observability) == [line]


def test_an_unknown_alert_metric_is_refused_with_the_known_ones() -> None:
    assert problems(alerts={"errorRatio": 0.1}) == [
        "llm-mesh:observability.alerts.errorRatio: unknown key; did you mean 'errorRate'? (known keys: "
        "notificationChannels, emails, errorRate, latencyP99Seconds, queueDepth, gpuUtilizationPercent)"
    ]


def test_prod_refuses_a_collector_image_by_tag() -> None:
    raw = yaml.safe_load((FIXTURE_STACKS / "Pulumi.prod.yaml").read_text())["config"]
    values = {key.split(":", 1)[1]: value for key, value in raw.items()}
    values["observability"] = {
        **values["observability"],
        "collectorImage": "otel/opentelemetry-collector-contrib:0.157.0",
    }
    with pytest.raises(ConfigError) as refused:
        parse_stack_config(values)
    assert refused.value.problems == [
        "llm-mesh:observability.collectorImage = 'otel/opentelemetry-collector-contrib:0.157.0': prod images must be "
        "pinned by digest: 'repo@sha256:<64 hex>'"
    ]


def test_sampling_follows_the_environment() -> None:
    assert {stack: stack_config(stack).observability.tracing_sampling_percent for stack in STACKS} == {
        "dev": 100.0,
        "staging": 10.0,
        "prod": 1.0,
    }
    assert {stack: stack_config(stack).observability.detailed_traces for stack in STACKS} == {
        "dev": True,
        "staging": True,
        "prod": False,
    }


# --- PromQL: every tile and condition parses and reads only the named metrics --------------------------------


def metric_names(query: str) -> list[str]:
    """The metrics a PromQL expression selects (promql_parser raises ValueError on a query that does not parse)."""
    names: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            # A selector by labels alone reads any metric: never one of the named ones.
            names.append(node.name or "<any metric>")

    promql_parser.walk(promql_parser.parse(query), visit)
    return names


def label_names(query: str) -> set[str]:
    """Every label a PromQL expression matches on, groups by or joins on."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.update(m.name for m in node.matchers.matchers)
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            names.update(node.modifier.labels)
        if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                names.update(node.modifier.matching.labels)
            names.update(node.modifier.group_labels or [])

    promql_parser.walk(promql_parser.parse(query), visit)
    return names


def test_the_label_reader_sees_matchers_groupings_and_joins() -> None:
    query = 'sum by (a)(rate(x{b="1",c!~"2"}[5m])) / on (pod) group_left (d) y'
    assert label_names(query) == {"a", "b", "c", "pod", "d"}


@pytest.mark.parametrize("stack", STACKS)
def test_every_label_a_query_reads_is_one_an_exporter_or_the_scrape_writes(stack: str) -> None:
    config = stack_config(stack)
    cluster = f"llm-mesh-{stack}"
    all_queries = overview(config, stack, cluster).queries() + [r.query for r in alert_rules(config, stack, cluster)]
    unknown = {(label, q) for q in all_queries for label in label_names(q) - exporters.label_names()}
    assert unknown == set()


def test_the_slo_filters_name_labels_the_scrape_and_istio_write() -> None:
    total, bad = availability_filters(PROD_CLUSTER, "inference", "llama-31-8b")
    metric_labels = set(re.findall(r"metric\.labels\.(\w+)", bad))
    resource_labels = set(re.findall(r"resource\.labels\.(\w+)", bad))
    assert metric_labels == {
        "reporter",
        "destination_canonical_service",
        "destination_canonical_revision",
        "response_code",
    }
    assert metric_labels <= set(exporters.ISTIO_LABELS)
    # Managed Prometheus's monitored resource prometheus_target carries these (and project_id, location, job, instance).
    assert resource_labels <= set(exporters.SCRAPE_LABELS)
    assert total in bad


def test_the_metric_reader_sees_every_selector_and_refuses_broken_queries() -> None:
    assert metric_names('sum(rate(a_total{x="1"}[5m])) / on() b and histogram_quantile(0.9, c_bucket)') == [
        "a_total",
        "b",
        "c_bucket",
    ]
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        metric_names("sum(rate(a_total[5m])")


@pytest.mark.parametrize("stack", STACKS)
def test_every_dashboard_and_alert_query_parses_and_names_known_metrics(stack: str) -> None:
    config = stack_config(stack)
    cluster = f"llm-mesh-{stack}"
    dashboard = overview(config, stack, cluster)
    conditions = [rule.query for rule in alert_rules(config, stack, cluster)]
    all_queries = dashboard.queries() + conditions
    # The dashboard charts every model's signals; the alerts cover each model three ways, and the GPUs.
    assert len(conditions) == 3 * len(config.models) + 1
    for query in all_queries:
        names = metric_names(query)
        assert names, query
        # Against what the exporters write (tests/exporters.py, from their sources), not the code's own constants.
        assert set(names) <= exporters.series_names(), (query, sorted(set(names) - exporters.series_names()))
    used = {name for query in all_queries for name in metric_names(query)}
    # Every signal of the issue is on the dashboard: Istio's requests and latency, vLLM's, DCGM's.
    assert used == set(queries.METRICS) - {queries.VLLM_PROMPT_TOKENS}


def test_every_metric_the_platform_names_is_one_an_exporter_writes() -> None:
    assert set(queries.METRICS) <= exporters.series_names(), sorted(set(queries.METRICS) - exporters.series_names())


# --- the dashboard model ----------------------------------------------------------------------------------------


def text(title: str) -> Widget:
    return Widget(title=title, text=Text(content="x"))


def test_tiles_must_fit_the_mosaic_and_not_overlap() -> None:
    with pytest.raises(ValueError, match="tile 'b' overlaps another tile"):
        MosaicLayout(
            columns=48,
            tiles=[Tile(width=24, height=4, widget=text("a")), Tile(x_pos=23, width=10, height=4, widget=text("b"))],
        )
    with pytest.raises(ValueError, match="tile 'a' reaches past column 48"):
        MosaicLayout(columns=48, tiles=[Tile(x_pos=40, width=16, height=4, widget=text("a"))])
    with pytest.raises(ValueError, match="exactly one of xyChart or text"):
        Widget(title="neither")


def test_the_dashboard_json_is_written_as_the_api_stores_it() -> None:
    layout = MosaicLayout(
        columns=48,
        tiles=[
            Tile(x_pos=0, y_pos=0, width=48, height=4, widget=text("a")),
            Tile(y_pos=4, width=16, height=16, widget=text("b")),
        ],
    )
    assert json.loads(Dashboard(display_name="d", mosaic_layout=layout).to_json()) == {
        "displayName": "d",
        "mosaicLayout": {
            "columns": 48,
            "tiles": [
                # A position of 0 is stored as absent: written so, the deployed dashboard reads back unchanged.
                {"width": 48, "height": 4, "widget": {"title": "a", "text": {"content": "x", "format": "MARKDOWN"}}},
                {
                    "yPos": 4,
                    "width": 16,
                    "height": 16,
                    "widget": {"title": "b", "text": {"content": "x", "format": "MARKDOWN"}},
                },
            ],
        },
    }


def test_canary_and_stable_are_side_by_side_on_each_chart() -> None:
    dashboard = overview(stack_config("prod"), "prod", PROD_CLUSTER)
    charts = {tile.widget.title: tile.widget.xy_chart for tile in dashboard.mosaic_layout.tiles if tile.widget.xy_chart}
    qps = charts["llama-31-8b: requests per second"]
    assert qps is not None
    assert [(d.legend_template, d.time_series_query.prometheus_query) for d in qps.data_sets] == [
        (track, queries.qps(queries.Scope("llama-31-8b", "inference", track)))
        for track in ("stable", "canary", "mirror")
    ]
    latency = charts["llama-31-8b canary: request latency P50/P95/P99"]
    assert latency is not None
    canary = queries.Scope("llama-31-8b", "inference", "canary")
    assert [(d.legend_template, d.time_series_query.prometheus_query) for d in latency.data_sets] == [
        ("p50", queries.latency_quantile(canary, 0.5)),
        ("p95", queries.latency_quantile(canary, 0.95)),
        ("p99", queries.latency_quantile(canary, 0.99)),
    ]
    assert sorted(charts) == sorted(
        [
            "Gateway: requests per second by model and response code",
            "GPU utilization by node (DCGM)",
            "GPU memory used by node (DCGM)",
            "llama-31-8b: requests per second",
            "llama-31-8b: 5xx error rate",
            "llama-31-8b: P99 request latency",
            "llama-31-8b stable: request latency P50/P95/P99",
            "llama-31-8b canary: request latency P50/P95/P99",
            "llama-31-8b mirror: request latency P50/P95/P99",
            "llama-31-8b: time to first token P99",
            "llama-31-8b: inter-token latency P99",
            "llama-31-8b: end-to-end latency P99 (vLLM)",
            "llama-31-8b: inference time P99 (on the GPU)",
            "llama-31-8b: queue depth",
            "llama-31-8b: KV cache usage (fullest replica)",
            "llama-31-8b: generated tokens per second",
            "llama-31-8b: GPU utilization (DCGM)",
        ]
    )


def test_the_dashboard_links_the_logs_explorer_query_of_the_servers_5xx() -> None:
    dashboard = overview(stack_config("prod"), "prod", PROD_CLUSTER)
    first = dashboard.mosaic_layout.tiles[0].widget
    query = server_errors_query(PROD_CLUSTER, "inference")
    assert query == "\n".join(
        [
            'resource.type="k8s_container"',
            'resource.labels.cluster_name="llm-mesh-prod"',
            'resource.labels.namespace_name="inference"',
            'resource.labels.container_name="istio-proxy"',
            'jsonPayload.upstream_cluster=~"^inbound"',
            "jsonPayload.response_code>=500",
        ]
    )
    assert first.text is not None and f"({logs_explorer_url('llm-mesh-prod', query)})" in first.text.content
    assert (
        logs_explorer_url("p", 'a="b"\nc>=5')
        == "https://console.cloud.google.com/logs/query;query=a%3D%22b%22%0Ac%3E%3D5?project=p"
    )


# --- alerts: thresholds from config ----------------------------------------------------------------------------


def test_alert_conditions_carry_the_configured_thresholds() -> None:
    config = config_with(
        alerts={"errorRate": 0.02, "latencyP99Seconds": 45, "queueDepth": 30, "gpuUtilizationPercent": 90}
    )
    rules = {rule.key: rule for rule in alert_rules(config, "dev", "llm-mesh-dev")}
    assert sorted(rules) == ["gpu-saturation", "m-errors", "m-latency", "m-queue"]
    scope = queries.Scope("m", "inference")
    assert rules["m-errors"].query == f"({queries.error_rate(scope)}) > 0.02 and ({queries.request_count(scope)}) >= 20"
    assert rules["m-latency"].query == f"({queries.latency_quantile(scope, 0.99)}) > 45000"
    assert rules["m-queue"].query == f"({queries.queue_depth(scope)}) > 30"
    assert rules["gpu-saturation"].query == f"({queries.gpu_utilization()}) > 90"
    assert [(r.duration, r.severity) for r in rules.values()] == [
        ("300s", "CRITICAL"),
        ("600s", "ERROR"),
        ("600s", "WARNING"),
        ("900s", "WARNING"),
    ]
    assert rules["m-errors"].display_name == "llm-mesh dev: m answers more than 2.0% of requests with 5xx"


# --- the collector's config ------------------------------------------------------------------------------------

# Each component's keys as the collector-contrib READMEs document them (memorylimiterprocessor, batchprocessor,
# resourcedetectionprocessor, googlecloudexporter, healthcheckextension, otlpreceiver), for the 0.13x-0.15x releases.
DOCUMENTED_KEYS = {
    ("extensions", "health_check"): {"endpoint", "path", "response_body", "check_collector_pipeline"},
    ("receivers", "otlp"): {"protocols"},
    ("processors", "memory_limiter"): {
        "check_interval", "limit_mib", "spike_limit_mib", "limit_percentage", "spike_limit_percentage",
    },
    ("processors", "batch"): {"timeout", "send_batch_size", "send_batch_max_size", "metadata_keys"},
    ("processors", "resourcedetection"): {"detectors", "timeout", "override", "attributes"},
    ("exporters", "googlecloud"): {"project", "user_agent", "impersonate", "metric", "trace", "log",
                                   "destination_project_quota"},
}  # fmt: skip


def test_the_collector_config_is_whole_and_uses_documented_keys_only() -> None:
    config = collector_config("llm-mesh-prod", 4317)
    assert pipeline_problems(config) == []
    defined = {
        (section, name)
        for section in ("extensions", "receivers", "processors", "exporters")
        for name in config[section]
    }
    assert defined == set(DOCUMENTED_KEYS)
    for (section, name), keys in DOCUMENTED_KEYS.items():
        assert set(config[section][name]) <= keys, (section, name)
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    assert config["processors"]["resourcedetection"]["detectors"] == ["gcp"]
    assert config["service"]["pipelines"] == {
        "traces": {
            "receivers": ["otlp"],
            # memory_limiter first, batch last, as the collector's README recommends.
            "processors": ["memory_limiter", "resourcedetection", "batch"],
            "exporters": ["googlecloud"],
        }
    }


def test_pipeline_problems_names_each_broken_reference() -> None:
    broken = copy.deepcopy(collector_config("p", 4317))
    broken["service"]["pipelines"]["traces"]["exporters"] = ["otlp"]
    broken["service"]["pipelines"]["traces"]["processors"].remove("batch")
    broken["service"]["extensions"].append("pprof")
    broken["service"]["pipelines"]["spans"] = {"receivers": ["otlp"], "exporters": []}
    assert pipeline_problems(broken) == [
        "service.pipelines.traces.exporters: 'otlp' is not defined in exporters",
        "service.pipelines.spans: a pipeline is one of traces, metrics, logs[/name]",
        "service.pipelines.spans.exporters: a pipeline needs at least one",
        "processors.batch: defined but in no pipeline",
        "exporters.googlecloud: defined but in no pipeline",
        "service.extensions: 'pprof' is not defined in extensions",
    ]


def test_every_stack_runs_the_collector_release_the_config_was_checked_against() -> None:
    release = "otel/opentelemetry-collector-contrib:0.157.0@sha256:"
    assert {stack: stack_config(stack).observability.collector_image.startswith(release) for stack in STACKS} == {
        stack: True for stack in STACKS
    }
    assert image_pinned(stack_config("dev").observability.collector_image)


# --- the plans as the engine shows them ------------------------------------------------------------------------


def test_the_prod_collector_is_deployed_pinned_hardened_and_in_the_mesh(previews: dict[str, Any]) -> None:
    prod = previews["prod"]
    deployment = resource(prod, DEPLOYMENT, "observability-collector")
    container = prop(deployment, "spec.template.spec.containers.0")
    mirror = "us-central1-docker.pkg.dev/llm-mesh-prod/llm-mesh-prod-dockerhub/"
    assert container["image"] == mirror + stack_config("prod").observability.collector_image, "through the mirror"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"] == ["--config=/conf/config.yaml"]
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("grpc-otlp", 4317),
        ("http-otlp", 4318),
        ("health", 13133),
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert prop(deployment, "spec.template.spec.automountServiceAccountToken") is False
    annotations = prop(deployment, "spec.template.metadata.annotations")
    assert annotations["traffic.sidecar.istio.io/excludeOutboundIPRanges"] == "169.254.169.254/32"
    namespace = resource(prod, "kubernetes:core/v1:Namespace", "istio-ns-observability")
    assert prop(namespace, "metadata.labels")["istio.io/rev"] == "1-31"
    service = resource(prod, "kubernetes:core/v1:Service", "observability-collector-svc")
    assert prop(service, "metadata.name") == "opentelemetry-collector"
    assert [(p["name"], p["port"], p["appProtocol"]) for p in prop(service, "spec.ports")] == [
        ("grpc-otlp", 4317, "grpc"),
        ("http-otlp", 4318, "http"),
    ]
    config_map = resource(prod, "kubernetes:core/v1:ConfigMap", "observability-collector-config")
    assert yaml.safe_load(config_map["inputs"]["data"]["config.yaml"]) == collector_config("llm-mesh-prod", 4317)


def test_the_collector_writes_traces_as_its_own_identity_and_nothing_more(previews: dict[str, Any]) -> None:
    prod = previews["prod"]
    granted = [
        s["newState"]["inputs"]
        for s in steps_of_type(prod, "gcp:projects/iAMMember:IAMMember")
        if "llm-mesh:observability:Observability$" in s["urn"]
    ]
    assert [(g["project"], g["role"]) for g in granted] == [("llm-mesh-prod", "roles/cloudtrace.agent")]
    binding = resource(prod, "gcp:serviceaccount/iAMMember:IAMMember", "observability-collector-workload-identity")
    assert prop(binding, "member") == "serviceAccount:llm-mesh-prod.svc.id.goog[observability/opentelemetry-collector]"
    assert prop(binding, "role") == "roles/iam.workloadIdentityUser"
    account = resource(prod, "gcp:serviceaccount/account:Account", "observability-collector-gsa")
    assert prop(account, "accountId") == "llm-mesh-prod-otel-a05f"


def test_only_the_meshs_identities_may_export_to_the_collector(previews: dict[str, Any]) -> None:
    prod = previews["prod"]
    ap = "kubernetes:security.istio.io/v1:AuthorizationPolicy"
    senders = resource(prod, ap, "observability-opentelemetry-collector-senders")
    assert prop(senders, "spec") == {
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "opentelemetry-collector",
                "app.kubernetes.io/part-of": "llm-mesh",
            }
        },
        "action": "ALLOW",
        "rules": [
            {
                "from": [
                    {
                        "source": {
                            "principals": [
                                "cluster.local/ns/istio-ingress/sa/istio-ingressgateway",
                                "cluster.local/ns/inference/sa/llama-31-8b",
                                "cluster.local/ns/model-store/sa/model-store",
                            ]
                        }
                    }
                ],
                "to": [
                    {
                        "operation": {
                            "ports": ["4317", "4318"],
                            "methods": ["POST"],
                            "paths": ["/opentelemetry.proto.collector.trace.v1.TraceService/Export", "/v1/traces"],
                        }
                    }
                ],
            }
        ],
    }
    assert prop(resource(prod, ap, "observability-allow-nothing"), "spec") == {}
    strict = resource(prod, "kubernetes:security.istio.io/v1:PeerAuthentication", "observability-default")
    assert prop(strict, "spec") == {"mtls": {"mode": "STRICT"}}
    entry = resource(prod, "kubernetes:networking.istio.io/v1:ServiceEntry", "observability-cloudtrace-googleapis")
    assert prop(entry, "spec.hosts") == ["cloudtrace.googleapis.com"]
    assert prop(entry, "spec.ports") == [{"number": 443, "name": "https", "protocol": "TLS"}]
    policy = resource(prod, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "observability-collector-senders")
    peers = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-ingress"}},
         "podSelector": {"matchLabels": {"istio": "ingressgateway"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "inference"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "model-store"}}},
    ]  # fmt: skip
    assert prop(policy, "spec.ingress") == [
        {"ports": [{"port": 4317, "protocol": "TCP"}], "from": peers},
        {"ports": [{"port": 4318, "protocol": "TCP"}], "from": peers},
    ]


@pytest.mark.parametrize(("stack", "percent"), [("dev", 100), ("staging", 10), ("prod", 1)])
def test_the_mesh_samples_per_environment_and_tags_spans_with_model_track_version(
    previews: dict[str, Any], stack: str, percent: int
) -> None:
    tracing = prop(resource(previews[stack], TELEMETRY, "istio-system-mesh-default"), "spec.tracing")
    assert tracing == [
        {
            "providers": [{"name": "otel-tracing"}],
            "randomSamplingPercentage": percent,
            "customTags": {
                "llm_mesh.model": {"environment": {"name": "LLM_MESH_MODEL"}},
                "llm_mesh.track": {"environment": {"name": "LLM_MESH_TRACK"}},
                "llm_mesh.version": {"environment": {"name": "LLM_MESH_VERSION"}},
                "llm_mesh.environment": {"literal": {"value": stack}},
            },
        }
    ]
    quiet = resource(previews[stack], TELEMETRY, "observability-no-export-spans")
    assert prop(quiet, "spec") == {"tracing": [{"disableSpanReporting": True}]}


def test_each_server_traces_to_the_collector_and_its_proxy_knows_the_model(previews: dict[str, Any]) -> None:
    for stack, detailed in (("prod", []), ("dev", ["--collect-detailed-traces", "all"])):
        deployment = resource(previews[stack], DEPLOYMENT, "model-llama-31-8b-stable")
        server = prop(deployment, "spec.template.spec.containers.0")
        flag = server["args"].index("--otlp-traces-endpoint")
        assert server["args"][flag : flag + 2 + len(detailed)] == ["--otlp-traces-endpoint", ENDPOINT, *detailed]
        env = {e["name"]: e.get("value") for e in server["env"]}
        assert env["OTEL_SERVICE_NAME"] == "llama-31-8b"
        assert env["OTEL_EXPORTER_OTLP_TRACES_INSECURE"] == "true"
        assert env["OTEL_RESOURCE_ATTRIBUTES"] == (
            f"service.namespace=inference,service.version=v1,deployment.environment.name={stack},"
            "llm_mesh.model=llama-31-8b,llm_mesh.track=stable,llm_mesh.version=v1"
        )
    canary = resource(previews["prod"], DEPLOYMENT, "model-llama-31-8b-canary")
    proxy = json.loads(prop(canary, "spec.template.metadata.annotations")["proxy.istio.io/config"])
    assert proxy["proxyMetadata"] == {
        "EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true",
        "LLM_MESH_MODEL": "llama-31-8b",
        "LLM_MESH_TRACK": "canary",
        "LLM_MESH_VERSION": "v2",
    }


def test_access_logs_are_json_with_the_model_and_feed_a_5xx_metric(previews: dict[str, Any]) -> None:
    prod = previews["prod"]
    mesh = prop(resource(prod, "kubernetes:helm.sh/v3:Release", "istio-istiod-1-31"), "values.meshConfig")
    assert mesh["accessLogEncoding"] == "JSON"
    fields = json.loads(mesh["accessLogFormat"])
    assert {
        key: fields[key] for key in ("model", "track", "version", "response_code", "duration_ms", "upstream_host")
    } == {
        "model": "%ENVIRONMENT(LLM_MESH_MODEL)%",
        "track": "%ENVIRONMENT(LLM_MESH_TRACK)%",
        "version": "%ENVIRONMENT(LLM_MESH_VERSION)%",
        "response_code": "%RESPONSE_CODE%",
        "duration_ms": "%DURATION%",
        "upstream_host": "%UPSTREAM_HOST%",
    }
    assert fields["logging.googleapis.com/trace"] == "projects/llm-mesh-prod/traces/%TRACE_ID%"
    metric = resource(prod, "gcp:logging/metric:Metric", "observability-server-5xx")
    assert prop(metric, "filter") == server_errors_query(PROD_CLUSTER, "inference")
    assert prop(metric, "labelExtractors") == {
        "model": "EXTRACT(jsonPayload.model)",
        "track": "EXTRACT(jsonPayload.track)",
    }
    assert prop(metric, "metricDescriptor.metricKind") == "DELTA"


def test_prod_scrapes_the_gateway_and_the_servers_and_gets_gpu_metrics(previews: dict[str, Any]) -> None:
    prod = previews["prod"]
    pod_monitoring = "kubernetes:monitoring.googleapis.com/v1:PodMonitoring"
    gateway = resource(prod, pod_monitoring, "observability-gateway-metrics")
    assert prop(gateway, "metadata.namespace") == "istio-ingress"
    assert prop(gateway, "spec") == {
        "selector": {"matchLabels": {"istio": "ingressgateway"}},
        "endpoints": [{"port": 15020, "path": "/stats/prometheus", "interval": "15s"}],
    }
    assert resource(prod, pod_monitoring, "model-llama-31-8b-metrics")
    cluster = resource(prod, "gcp:container/cluster:Cluster", "gpu-gke")
    assert "DCGM" in prop(cluster, "monitoringConfig.enableComponents")
    assert prop(cluster, "monitoringConfig.managedPrometheus.enabled") is True


def test_prod_declares_the_dashboard_alerts_and_slos(previews: dict[str, Any]) -> None:
    prod = previews["prod"]
    config = stack_config("prod")
    dashboard = resource(prod, "gcp:monitoring/dashboard:Dashboard", "observability-dashboard")
    assert json.loads(prop(dashboard, "dashboardJson")) == json.loads(overview(config, "prod", PROD_CLUSTER).to_json())
    rules = alert_rules(config, "prod", PROD_CLUSTER)
    policies = {s["urn"].rsplit("::", 1)[1]: s["newState"]["inputs"] for s in steps_of_type(prod, ALERT)}
    assert sorted(policies) == sorted(f"observability-alert-{rule.key}" for rule in rules)
    for rule in rules:
        policy = policies[f"observability-alert-{rule.key}"]
        assert policy["conditions"] == [
            {
                "displayName": rule.display_name,
                "conditionPrometheusQueryLanguage": {
                    "query": rule.query,
                    "duration": rule.duration,
                    "evaluationInterval": "60s",
                    "disableMetricValidation": True,
                },
            }
        ]
        # The email channel the stack declares for observability.alerts.emails, known once created.
        assert policy["severity"] == rule.severity and policy["notificationChannels"] == [UNKNOWN]
    channel = resource(prod, "gcp:monitoring/notificationChannel:NotificationChannel", "observability-email-b25b9162")
    assert (prop(channel, "type"), prop(channel, "labels")) == ("email", {"email_address": "llm-oncall@example.com"})
    slo = resource(prod, "gcp:monitoring/slo:Slo", "observability-slo-llama-31-8b")
    total, bad = availability_filters(PROD_CLUSTER, "inference", "llama-31-8b")
    assert prop(slo, "requestBasedSli") == {"goodTotalRatio": {"totalServiceFilter": total, "badServiceFilter": bad}}
    assert (prop(slo, "goal"), prop(slo, "rollingPeriodDays"), prop(slo, "service")) == (
        0.995,
        28,
        "llm-mesh-prod-llama-31-8b",
    )
    assert (
        bad == (total + ' AND metric.labels.response_code=monitoring.regex.full_match("5[0-9][0-9]")')
        and 'metric.type="prometheus.googleapis.com/istio_requests_total/counter"' in total
    )


def test_notification_channels_come_from_config() -> None:
    channel = "projects/llm-mesh-test/notificationChannels/123"
    assert config_with(alerts={"notificationChannels": [channel]}).observability.alerts.notification_channels == [
        channel
    ]


# --- nothing points at a service the plan does not deploy ------------------------------------------------------


def plan(previews: dict[str, Any], stack: str = "prod") -> list[EngineResource]:
    return read_document(copy.deepcopy(previews[stack]))


@pytest.mark.parametrize("stack", STACKS)
def test_the_tracing_provider_and_every_otlp_endpoint_name_a_deployed_service(
    previews: dict[str, Any], stack: str
) -> None:
    resources = plan(previews, stack)
    providers = [
        p["opentelemetry"]
        for r in resources
        if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs.get("chart") == "istiod"
        for p in r.inputs["values"]["meshConfig"]["extensionProviders"]
    ]
    assert providers == [{"service": COLLECTOR_HOST, "port": 4317}]
    assert telemetry_findings(resources) == []


def _istiod(resources: list[EngineResource]) -> dict[str, Any]:
    return next(r.inputs for r in resources if r.inputs.get("chart") == "istiod")


def test_spans_sent_where_no_service_listens_are_found(previews: dict[str, Any]) -> None:
    resources = [r for r in plan(previews) if r.name != "observability-collector-svc"]
    found = sorted((f.code, f.object, f.message) for f in serving_findings(resources, "prod"))
    gone = f"{COLLECTOR_HOST}, which no Service of the stack serves"
    assert found == [
        *(
            ("LM0103", f"Deployment/inference/llama-31-8b-{track}", f"container server sends its spans (--otlp-traces-endpoint) to {gone}")
            for track in ("canary", "mirror", "stable")
        ),
        ("LM0103", "Release/istio-system/istiod-1-31", f"tracing provider 'otel-tracing' sends the mesh's spans to {gone}"),
    ]  # fmt: skip
    resources = plan(previews)
    _istiod(resources)["values"]["meshConfig"]["extensionProviders"][0]["opentelemetry"]["port"] = 9411.0
    assert [f.message for f in telemetry_findings(resources)] == [
        f"tracing provider 'otel-tracing' sends the mesh's spans to {COLLECTOR_HOST} port 9411, which its Service "
        "does not expose (it exposes [4317, 4318])"
    ]


def test_validate_and_policy_stay_clean_on_prod(cli: Cli, previews: dict[str, Any]) -> None:
    validated = cli("validate", "--stack", "prod")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert validated.stdout.splitlines()[-1].endswith(": 0 errors, 0 warnings")
    policy = cli("policy", "--stack", "prod")
    assert policy.returncode == 0, policy.stdout + policy.stderr
    assert "Summary: 0 violations (0 mandatory) of 16 rules" in policy.stdout


def test_requirements_pin_the_promql_parser() -> None:
    lines = (Path(ROOT) / "requirements" / "dev.in").read_text().splitlines()
    assert "promql-parser==0.12.0" in lines


def test_the_stack_exports_where_its_dashboard_is(previews: dict[str, Any]) -> None:
    outputs = previews["prod"]["steps"][0]["newState"]["outputs"]
    # The console URL is built from the dashboard's id, which only Cloud Monitoring assigns.
    assert outputs["dashboards"] == {"inference": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}


def pooled_config() -> StackConfig:
    raw = yaml.safe_load((FIXTURE_STACKS / "Pulumi.staging.yaml").read_text())["config"]
    values = {key.split(":", 1)[1]: value for key, value in raw.items()}
    values["models"][0]["routing"] = {"balancing": "inference-pool"}
    return parse_stack_config(values)


def test_a_pooled_model_shows_its_pickers_view_beside_its_servers() -> None:
    config = pooled_config()
    dashboard = overview(config, "staging", "llm-mesh-staging")
    titles = [tile.widget.title for tile in dashboard.mosaic_layout.tiles]
    at = titles.index("llama-31-8b: KV cache usage (fullest replica)")
    assert titles[at + 1 : at + 7] == [
        "llama-31-8b: queue per replica, as the picker sees it",
        "llama-31-8b: KV cache use, as the picker sees it",
        "llama-31-8b stable: queue of each server, as the picker sees it",
        "llama-31-8b canary: queue of each server, as the picker sees it",
        "llama-31-8b: pods the picker chooses from",
        "llama-31-8b: picker's choice time P99",
    ]
    used = {name for query in dashboard.queries() for name in metric_names(query)}
    assert set(queries.PICKER_METRICS) <= used
    assert used <= exporters.series_names(), sorted(used - exporters.series_names())
    unknown = {(label, q) for q in dashboard.queries() for label in label_names(q) - exporters.label_names()}
    assert unknown == set()
    mesh = overview(stack_config("staging"), "staging", "llm-mesh-staging")
    assert not {name for query in mesh.queries() for name in metric_names(query)} & set(queries.PICKER_METRICS)
