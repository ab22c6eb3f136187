"""security.istio.io/v1: PeerAuthentication, AuthorizationPolicy, RequestAuthentication."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from llm_mesh.mesh.base import IstioModel, IstioObject, WorkloadSelector

SECURITY = "security.istio.io/v1"
MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class MutualTLS(IstioModel):
    mode: MtlsMode


class PeerAuthenticationSpec(IstioModel):
    selector: WorkloadSelector | None = None
    mtls: MutualTLS | None = None
    # Keys are port numbers; JSON object keys are strings.
    port_level_mtls: dict[str, MutualTLS] | None = None

    @model_validator(mode="after")
    def _ports_need_selector(self) -> PeerAuthenticationSpec:
        if self.port_level_mtls and self.selector is None:
            raise ValueError("portLevelMtls needs a selector (Istio ignores it on namespace-wide policies)")
        for port in self.port_level_mtls or {}:
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"portLevelMtls key {port!r} is not a port number")
        return self


class PeerAuthentication(IstioObject):
    api_version: ClassVar[str] = SECURITY
    kind: ClassVar[str] = "PeerAuthentication"
    spec: PeerAuthenticationSpec


class Source(IstioModel):
    principals: list[str] | None = None
    not_principals: list[str] | None = None
    request_principals: list[str] | None = None
    not_request_principals: list[str] | None = None
    namespaces: list[str] | None = None
    not_namespaces: list[str] | None = None
    ip_blocks: list[str] | None = None


class Operation(IstioModel):
    hosts: list[str] | None = None
    ports: list[str] | None = None
    methods: list[str] | None = None
    paths: list[str] | None = None
    not_methods: list[str] | None = None
    not_paths: list[str] | None = None


class RuleFrom(IstioModel):
    source: Source


class RuleTo(IstioModel):
    operation: Operation


class Condition(IstioModel):
    key: str
    values: list[str] | None = None
    not_values: list[str] | None = None


class Rule(IstioModel):
    from_: list[RuleFrom] | None = Field(default=None, alias="from")
    to: list[RuleTo] | None = None
    when: list[Condition] | None = None


class AuthorizationPolicySpec(IstioModel):
    selector: WorkloadSelector | None = None
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] | None = None
    rules: list[Rule] | None = None

    @model_validator(mode="after")
    def _deny_needs_rules(self) -> AuthorizationPolicySpec:
        if self.action == "DENY" and not self.rules:
            raise ValueError("a DENY policy without rules denies nothing; give it rules")
        return self

    @property
    def allows_nothing(self) -> bool:
        """Istio's allow-nothing policy: ALLOW (the default) with no rules matches no request."""
        return self.action in (None, "ALLOW") and not self.rules


class AuthorizationPolicy(IstioObject):
    api_version: ClassVar[str] = SECURITY
    kind: ClassVar[str] = "AuthorizationPolicy"
    spec: AuthorizationPolicySpec


class JWTRule(IstioModel):
    issuer: str = Field(min_length=1)
    jwks_uri: str = Field(pattern=r"^https://")
    audiences: list[str] | None = None
    forward_original_token: bool | None = None


class RequestAuthenticationSpec(IstioModel):
    selector: WorkloadSelector | None = None
    jwt_rules: list[JWTRule] = Field(min_length=1)


class RequestAuthentication(IstioObject):
    api_version: ClassVar[str] = SECURITY
    kind: ClassVar[str] = "RequestAuthentication"
    spec: RequestAuthenticationSpec
