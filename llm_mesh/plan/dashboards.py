"""The Cloud Monitoring dashboard as typed Python: a pydantic model of the dashboard JSON's mosaic layout, and the
one overview each stack gets, built from the named queries of llm_mesh.plan.queries and nothing else.

Field names and shapes follow the Monitoring API's Dashboard resource (`mosaicLayout.tiles[]` with `xPos`, `yPos`,
`width`, `height` and a `widget`; an `xyChart` of `dataSets[]`, each a `timeSeriesQuery.prometheusQuery`). The API
stores a tile position of 0 by leaving it out: the model writes it the same way, so that a deployed dashboard reads
back equal to its plan (hashicorp/terraform-provider-google#16173 tracks the diffs otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from llm_mesh.plan import queries
from llm_mesh.plan.config import StackConfig
from llm_mesh.plan.inference_pool import pools_of
from llm_mesh.plan.observability import logs_explorer_url, server_errors_query, trace_explorer_url
from llm_mesh.plan.topology import INGRESS_NAMESPACE, ModelNames, model_names

COLUMNS = 48  # the widest mosaic the API allows
CHART_WIDTH, CHART_HEIGHT = 16, 16
QUANTILES = (0.5, 0.95, 0.99)


class _Json(BaseModel):
    """Strict and camelCase, as the dashboard JSON is written."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class TimeSeriesQuery(_Json):
    prometheus_query: str = Field(min_length=1)
    unit_override: str | None = None


class DataSet(_Json):
    time_series_query: TimeSeriesQuery
    plot_type: Literal["LINE", "STACKED_AREA", "STACKED_BAR", "HEATMAP"] = "LINE"
    # A fixed name for the line: the track or the quantile it shows.
    legend_template: str | None = None
    target_axis: Literal["Y1", "Y2"] = "Y1"


class Axis(_Json):
    label: str
    scale: Literal["LINEAR", "LOG10"] = "LINEAR"


class ChartOptions(_Json):
    mode: Literal["COLOR", "X_RAY", "STATS"] = "COLOR"


class XyChart(_Json):
    data_sets: list[DataSet] = Field(min_length=1)
    y_axis: Axis | None = None
    # The API's default, written out: what it stores is what the plan says.
    chart_options: ChartOptions = ChartOptions()


class Text(_Json):
    content: str = Field(min_length=1)
    format: Literal["MARKDOWN", "RAW"] = "MARKDOWN"


class Widget(_Json):
    title: str
    xy_chart: XyChart | None = None
    text: Text | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Widget:
        if (self.xy_chart is None) == (self.text is None):
            raise ValueError(f"widget {self.title!r}: exactly one of xyChart or text")
        return self

    def queries(self) -> list[str]:
        return [d.time_series_query.prometheus_query for d in self.xy_chart.data_sets] if self.xy_chart else []


class Tile(_Json):
    # None: 0, as the API stores it.
    x_pos: int | None = Field(default=None, ge=0)
    y_pos: int | None = Field(default=None, ge=0)
    width: int = Field(ge=1, le=COLUMNS)
    height: int = Field(ge=1)
    widget: Widget

    @field_validator("x_pos", "y_pos")
    @classmethod
    def _zero_is_absent(cls, position: int | None) -> int | None:
        return None if position == 0 else position

    @property
    def cells(self) -> set[tuple[int, int]]:
        x, y = self.x_pos or 0, self.y_pos or 0
        return {(col, row) for col in range(x, x + self.width) for row in range(y, y + self.height)}


class MosaicLayout(_Json):
    columns: int = Field(ge=1, le=COLUMNS)
    tiles: list[Tile] = Field(min_length=1)

    @model_validator(mode="after")
    def _tiles_fit_and_do_not_overlap(self) -> MosaicLayout:
        taken: set[tuple[int, int]] = set()
        for tile in self.tiles:
            if (tile.x_pos or 0) + tile.width > self.columns:
                raise ValueError(f"tile {tile.widget.title!r} reaches past column {self.columns}")
            cells = tile.cells
            if cells & taken:
                raise ValueError(f"tile {tile.widget.title!r} overlaps another tile")
            taken |= cells
        return self


class Dashboard(_Json):
    display_name: str = Field(min_length=1)
    mosaic_layout: MosaicLayout
    labels: dict[str, str] | None = None

    def to_json(self) -> str:
        """The dashboard_json the Monitoring API takes: camelCase, unset fields left out."""
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def queries(self) -> list[str]:
        return [query for tile in self.mosaic_layout.tiles for query in tile.widget.queries()]


def stack(widgets: list[Widget], first_row: int = 0) -> list[Tile]:
    """Charts three to a row, in order, below `first_row`."""
    per_row = COLUMNS // CHART_WIDTH
    return [
        Tile(
            x_pos=(i % per_row) * CHART_WIDTH,
            y_pos=first_row + (i // per_row) * CHART_HEIGHT,
            width=CHART_WIDTH,
            height=CHART_HEIGHT,
            widget=widget,
        )
        for i, widget in enumerate(widgets)
    ]


def chart(title: str, lines: list[tuple[str | None, str]], unit: str, axis: str) -> Widget:
    """One chart of lines: (legend, query); no legend: the series' own labels name them."""
    data_sets = [
        DataSet(time_series_query=TimeSeriesQuery(prometheus_query=query, unit_override=unit), legend_template=legend)
        for legend, query in lines
    ]
    return Widget(title=title, xy_chart=XyChart(data_sets=data_sets, y_axis=Axis(label=axis)))


def per_track(names: ModelNames, query: Callable[[queries.Scope], str]) -> list[tuple[str | None, str]]:
    """One line per track of the model: canary and stable side by side on the same axes."""
    return [(track, query(queries.Scope(names.model.name, names.namespace, track))) for track in names.tracks]


def model_charts(names: ModelNames) -> list[Widget]:
    """The golden signals of one model, then vLLM's own view, then its GPUs' load as vLLM sees it."""
    model = names.model.name

    def latency(track: str) -> Widget:
        scope = queries.Scope(model, names.namespace, track)
        lines: list[tuple[str | None, str]] = [
            (f"p{round(q * 100)}", queries.latency_quantile(scope, q)) for q in QUANTILES
        ]
        return chart(f"{model} {track}: request latency P50/P95/P99", lines, "ms", "milliseconds")

    return [
        chart(f"{model}: requests per second", per_track(names, queries.qps), "1/s", "requests/s"),
        chart(f"{model}: 5xx error rate", per_track(names, queries.error_rate), "1", "share of requests"),
        chart(
            f"{model}: P99 request latency",
            per_track(names, lambda s: queries.latency_quantile(s, 0.99)),
            "ms",
            "milliseconds",
        ),
        *(latency(track) for track in names.tracks),
        chart(f"{model}: time to first token P99", per_track(names, queries.time_to_first_token), "s", "seconds"),
        chart(f"{model}: inter-token latency P99", per_track(names, queries.inter_token_latency), "s", "seconds"),
        chart(f"{model}: end-to-end latency P99 (vLLM)", per_track(names, queries.end_to_end_latency), "s", "seconds"),
        chart(f"{model}: inference time P99 (on the GPU)", per_track(names, queries.inference_time), "s", "seconds"),
        chart(f"{model}: queue depth", per_track(names, queries.queue_depth), "1", "requests waiting"),
        chart(f"{model}: KV cache usage (fullest replica)", per_track(names, queries.kv_cache_usage), "1", "share"),
        *(picker_charts(names) if names.model.pooled else []),
        chart(f"{model}: generated tokens per second", per_track(names, queries.tokens_per_second), "1/s", "tokens/s"),
        chart(
            f"{model}: GPU utilization (DCGM)", per_track(names, queries.gpu_utilization_by_track), "%", "percent busy"
        ),
    ]


def picker_charts(names: ModelNames) -> list[Widget]:
    """What the endpoint pickers believed when they chose, per pool, beside the servers' own queue and KV cache: a
    replica the picker sees as busy gets fewer requests, and a pod it has not seen gets none."""
    model, namespace = names.model.name, names.namespace
    pools = pools_of(names)

    def per_pool(query: Callable[[str, str], str]) -> list[tuple[str | None, str]]:
        return [(pool.track, query(namespace, pool.pool)) for pool in pools]

    return [
        chart(
            f"{model}: queue per replica, as the picker sees it",
            per_pool(queries.picker_pool_queue),
            "1",
            "requests waiting",
        ),
        chart(f"{model}: KV cache use, as the picker sees it", per_pool(queries.picker_pool_kv_cache), "1", "share"),
        *(
            chart(
                f"{model} {pool.track}: queue of each server, as the picker sees it",
                [(None, queries.picker_pod_queue(namespace, pool.pool))],
                "1",
                "requests waiting",
            )
            for pool in pools
        ),
        chart(f"{model}: pods the picker chooses from", per_pool(queries.picker_ready_pods), "1", "pods"),
        chart(
            f"{model}: picker's choice time P99",
            [(pool.track, queries.picker_scheduling_latency(namespace, pool.picker)) for pool in pools],
            "s",
            "seconds",
        ),
    ]


def where_to_look(config: StackConfig, cluster: str) -> Widget:
    project = config.gcp.project
    errors = logs_explorer_url(project, server_errors_query(cluster, config.inference.namespace))
    content = "\n\n".join(
        [
            f"**Logs:** [the servers' 5xx answers in Logs Explorer]({errors}) (Envoy's JSON access log: `model`, "
            "`track`, `version`, `response_code`, `response_flags`, `duration_ms`, `upstream_host`; each line "
            "opens its trace).",
            f"**Traces:** [Trace Explorer]({trace_explorer_url(project)}): filter on `llm_mesh.track` or "
            "`llm_mesh.version` (the mesh's spans) and `service.version` (vLLM's).",
            "Lines are per track: a canary that misbehaves parts from stable on the same chart.",
        ]
    )
    return Widget(title="Where to look next", text=Text(content=content))


def overview(config: StackConfig, stack_name: str, cluster: str) -> Dashboard:
    """The stack's dashboard: where to look next, the gateway, each model's charts, the GPUs."""
    header = Tile(width=COLUMNS, height=8, widget=where_to_look(config, cluster))
    widgets = [
        chart(
            "Gateway: requests per second by model and response code",
            [(None, queries.gateway_requests(INGRESS_NAMESPACE))],
            "1/s",
            "requests/s",
        ),
        chart("GPU utilization by node (DCGM)", [(None, queries.gpu_utilization())], "%", "percent busy"),
        chart("GPU memory used by node (DCGM)", [(None, queries.gpu_memory_used_share())], "1", "share of memory"),
    ]
    for names in model_names(config):
        widgets += model_charts(names)
    layout = MosaicLayout(columns=COLUMNS, tiles=[header, *stack(widgets, first_row=header.height)])
    return Dashboard(
        display_name=f"llm-mesh {stack_name}: inference",
        mosaic_layout=layout,
        labels={"llm-mesh": ""},
    )
