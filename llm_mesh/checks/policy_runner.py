"""The policy pack run offline: the same rule objects the Pulumi analyzer calls, on engine-shaped resources.

Props travel as the engine sends them (a protobuf Struct: every number a double) and are deserialized and wrapped
exactly as the analyzer does (`unknown_checking_proxy`), so a rule that reads a value only a deployment knows is
reported as not evaluated, as `pulumi preview` reports it. Stack rules say which resources they left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format, struct_pb2
from llm_mesh_policies.common import ENVIRONMENTS
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from llm_mesh.engine.readers import EngineResource, recorded_environment
from llm_mesh.errors import InputError, did_you_mean

LEVELS = {level.value: level for level in EnforcementLevel}
PARTIAL = "the document lists only changed resources; use `pulumi preview --json --show-sames` or `pulumi stack export`"


class PolicyConfigError(InputError):
    """The policy config asks for something this stack may not have."""


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    urn: str
    message: str


@dataclass
class PolicyReport:
    environment: str
    levels: dict[str, str]
    violations: list[Violation] = field(default_factory=list)
    not_evaluated: list[tuple[str, str, str]] = field(default_factory=list)  # (policy, urn, why)

    @property
    def mandatory_violations(self) -> list[Violation]:
        return [v for v in self.violations if v.level == EnforcementLevel.MANDATORY.value]

    def as_json(self) -> dict[str, Any]:
        counts = {name: 0 for name in self.levels}
        for v in self.violations:
            counts[v.policy] += 1
        return {
            "environment": self.environment,
            "policies": [
                {"name": n, "enforcementLevel": lvl, "violations": counts[n]} for n, lvl in self.levels.items()
            ],
            "violations": [
                {"policy": v.policy, "enforcementLevel": v.level, "urn": v.urn, "message": v.message}
                for v in self.violations
            ],
            "notEvaluated": [{"policy": p, "urn": u, "reason": r} for p, u, r in self.not_evaluated],
            "summary": {"mandatory": len(self.mandatory_violations), "total": len(self.violations)},
        }


def stack_environment(resources: list[EngineResource], override: str | None) -> str:
    """--env; else what the stack exports as its environment (the document knows it whatever the stack is called);
    else the stack's name when it is an environment's; else prod, the strictest."""
    if override:
        return override
    recorded = recorded_environment(None, resources)
    if recorded:
        return recorded
    stacks = {r.stack for r in resources}
    stack = stacks.pop() if len(stacks) == 1 else ""
    return stack if stack in ENVIRONMENTS else "prod"


def enforcement_levels(policies: list[Policy], config: Mapping[str, Any], environment: str) -> dict[str, str]:
    """Each policy's level: its own, or what the pack config (`--policy-pack-config` shape) sets.

    Lowering a rule below mandatory is for dev stacks only: elsewhere the config is refused.
    """
    check_config_keys(policies, config)
    levels = {}
    for policy in policies:
        level = (policy.enforcement_level or EnforcementLevel.MANDATORY).value
        for key in ("all", policy.name):
            entry = config.get(key)
            configured = entry.get("enforcementLevel") if isinstance(entry, Mapping) else entry
            if configured is not None:
                if configured not in LEVELS:
                    raise PolicyConfigError(f"{key}: enforcement level {configured!r} is not one of {sorted(LEVELS)}")
                level = str(configured)
        if level in ("advisory", "disabled") and environment != "dev":
            raise PolicyConfigError(f"{policy.name}: {level} is allowed in dev only; {environment} keeps it mandatory")
        levels[policy.name] = level
    return levels


def check_config_keys(policies: list[Policy], config: Mapping[str, Any]) -> None:
    """A misspelled rule or setting would be ignored by the engine, and the rule run as if unconfigured: refused."""
    by_name = {policy.name: policy for policy in policies}
    for key, entry in config.items():
        if key != "all" and key not in by_name:
            hint = did_you_mean(key, by_name)
            raise PolicyConfigError(f"{key}: no rule of that name; {hint}(rules: all, {', '.join(by_name)})")
        level = entry.get("enforcementLevel") if isinstance(entry, Mapping) else entry
        if level is not None and (not isinstance(level, str) or level not in LEVELS):
            hint = did_you_mean(level, sorted(LEVELS))
            raise PolicyConfigError(
                f"{key}: enforcement level {level!r} is not one of {sorted(LEVELS)}; {hint}".rstrip("; ")
            )
        if not isinstance(entry, Mapping):
            continue
        schema = getattr(by_name.get(key), "config_schema", None)
        known = {"enforcementLevel", *((getattr(schema, "properties", None) or {}) if key != "all" else {})}
        for setting in entry:
            if setting not in known:
                hint = did_you_mean(setting, sorted(known))
                raise PolicyConfigError(
                    f"{key}.{setting}: not a setting of this rule; {hint}(settings: {', '.join(sorted(known))})"
                )


def run_policies(
    policies: list[Policy],
    resources: list[EngineResource],
    config: Mapping[str, Any] | None = None,
    environment: str | None = None,
    complete: bool = True,
) -> PolicyReport:
    """Every policy over the resources; stack-wide rules only when the document lists the whole stack."""
    config = dict(config or {})
    env = stack_environment(resources, environment)
    # Rules read the environment from each URN's stack name unless told: tell them what the document records, or
    # a stack named acme-prod would be judged as prod whatever its config says.
    told = environment or recorded_environment(None, resources)
    report = PolicyReport(env, enforcement_levels(policies, config, env))
    policy_resources = _policy_resources(resources)
    for policy in policies:
        level = report.levels[policy.name]
        if level == "disabled":
            continue
        policy_config = _policy_config(config, policy.name, told)
        if isinstance(policy, ResourceValidationPolicy):
            for resource in resources:
                args = ResourceValidationArgs(
                    resource.type,
                    _props(resource),
                    resource.urn,
                    resource.name,
                    _options(resource),
                    None,
                    policy_config,
                )
                try:
                    policy.validate(args, _Collector(report, policy.name, level, resource.urn))
                except UnknownValueError as unknown:
                    # The reason is in .message: str() of this exception is empty.
                    report.not_evaluated.append((policy.name, resource.urn, unknown.message))
        elif isinstance(policy, StackValidationPolicy):
            if not complete:
                report.not_evaluated.append((policy.name, "", PARTIAL))
                continue
            try:
                policy.validate(
                    StackValidationArgs(policy_resources, policy_config), _Collector(report, policy.name, level)
                )
            except UnknownValueError as unknown:
                report.not_evaluated.append((policy.name, "", unknown.message))
    return report


@dataclass(frozen=True)
class _Collector:
    """The report_violation callback: a violation without a URN is the resource's (or the stack's). Stack rules
    also record here the resources they left out (llm_mesh_policies.common.RecordsNotEvaluated)."""

    report: PolicyReport
    policy: str
    level: str
    default_urn: str = ""

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.report.violations.append(Violation(self.policy, self.level, urn or self.default_urn, message))

    def not_evaluated(self, urn: str, reason: str) -> None:
        self.report.not_evaluated.append((self.policy, urn, reason))


def _policy_config(config: Mapping[str, Any], name: str, environment: str | None) -> dict[str, Any]:
    entry = config.get(name)
    properties = {k: v for k, v in entry.items() if k != "enforcementLevel"} if isinstance(entry, Mapping) else {}
    if environment:
        properties["environment"] = environment
    return properties


def _props(resource: EngineResource) -> Any:
    return unknown_checking_proxy(deserialize_properties(as_engine_sends(resource.inputs)))


def as_engine_sends(inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs as the analyzer receives them, after protobuf: every number a double (`1` becomes `1.0`)."""
    wire = struct_pb2.Struct()
    wire.update(inputs)
    return dict(json_format.MessageToDict(wire))


def _options(resource: EngineResource) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=resource.protect,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=resource.parent or None,
    )


def _policy_resources(resources: list[EngineResource]) -> list[PolicyResource]:
    by_urn: dict[str, PolicyResource] = {}
    for resource in resources:
        by_urn[resource.urn] = PolicyResource(
            resource.type, _props(resource), resource.urn, resource.name, _options(resource), None, None, [], {}
        )
    for resource in resources:
        if resource.parent in by_urn:
            by_urn[resource.urn].parent = by_urn[resource.parent]
        by_urn[resource.urn].dependencies = [by_urn[d] for d in resource.dependencies if d in by_urn]
    return list(by_urn.values())
