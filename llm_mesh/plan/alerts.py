"""The alert policies decided from config: for each model, a condition per golden signal that fails a client
(5xx, P99 latency, a queue that does not drain), and one for the GPUs; each a PromQL condition over the named
queries of llm_mesh.plan.queries, above a threshold of `observability.alerts`, held for a while.

Conditions group by track, as the queries do when no track is given: a canary breaching opens its own incident,
named by its `destination_canonical_revision` or `llm_mesh_track` label, while stable stays quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llm_mesh.plan import queries
from llm_mesh.plan.config import StackConfig
from llm_mesh.plan.observability import logs_explorer_url, server_errors_query
from llm_mesh.plan.topology import model_names

Severity = Literal["CRITICAL", "ERROR", "WARNING"]
# Fewer requests than this in the 5-minute window, and a share of them answered 5xx says nothing.
MIN_REQUESTS = 20
# How long a condition holds before the incident opens: long enough that one slow batch or a pod's restart does
# not page, short enough that users are not failing for long. Saturation waits longer: the autoscaler adds a
# replica in minutes (weights included), and a queue that survives that is capacity, not a spike.
ERRORS_FOR, LATENCY_FOR, QUEUE_FOR, GPU_FOR = "300s", "600s", "600s", "900s"


@dataclass(frozen=True)
class AlertRule:
    key: str  # unique in the stack, usable in a resource name
    display_name: str
    query: str  # PromQL: one series per track (or node) that breaches
    duration: str
    severity: Severity
    documentation: str  # Markdown: what it means and where to look


def _look(config: StackConfig, stack_name: str, cluster: str) -> str:
    errors = logs_explorer_url(config.gcp.project, server_errors_query(cluster, config.inference.namespace))
    return (
        f"Dashboard **llm-mesh {stack_name}: inference** (canary and stable side by side); "
        f"[the servers' 5xx in Logs Explorer]({errors}); traces: filter on `llm_mesh.track`."
    )


def alert_rules(config: StackConfig, stack_name: str, cluster: str) -> list[AlertRule]:
    alerts = config.observability.alerts
    look = _look(config, stack_name, cluster)
    prefix = f"llm-mesh {stack_name}"
    rules = []
    for names in model_names(config):
        model = names.model.name
        scope = queries.Scope(model, names.namespace)
        rules += [
            AlertRule(
                f"{model}-errors",
                f"{prefix}: {model} answers more than {alerts.error_rate:.1%} of requests with 5xx",
                queries.with_traffic(queries.above(queries.error_rate(scope), alerts.error_rate), scope, MIN_REQUESTS),
                ERRORS_FOR,
                "CRITICAL",
                f"A track of {model} fails its clients (at least {MIN_REQUESTS} requests in 5 minutes). A canary: "
                f"set its weight to 0. {look}",
            ),
            AlertRule(
                f"{model}-latency",
                f"{prefix}: {model} P99 latency above {alerts.latency_p99_seconds:g} s",
                queries.above(queries.latency_quantile(scope, 0.99), alerts.latency_p99_seconds * 1000),
                LATENCY_FOR,
                "ERROR",
                f"Requests to a track of {model} take longer than {alerts.latency_p99_seconds:g} s at P99 (as the "
                f"server's sidecar measures them: a whole streamed generation). Compare time to first token and "
                f"queue depth. {look}",
            ),
            AlertRule(
                f"{model}-queue",
                f"{prefix}: {model} queue above {alerts.queue_depth} requests",
                queries.above(queries.queue_depth(scope), alerts.queue_depth),
                QUEUE_FOR,
                "WARNING",
                f"More than {alerts.queue_depth} requests wait for a GPU slot on a track of {model} for 10 minutes: "
                f"the autoscaler is at maxReplicas ({names.model.max_replicas}) or cannot get GPU nodes. {look}",
            ),
        ]
    rules.append(
        AlertRule(
            "gpu-saturation",
            f"{prefix}: GPUs busy above {alerts.gpu_utilization_percent:g}%",
            queries.above(queries.gpu_utilization(), alerts.gpu_utilization_percent),
            GPU_FOR,
            "WARNING",
            f"A node's GPUs were busy more than {alerts.gpu_utilization_percent:g}% of the time for 15 minutes: no "
            f"headroom for a burst. Compare queue depth and KV cache usage per model. {look}",
        )
    )
    return rules
