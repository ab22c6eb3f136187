"""Typed Istio objects: pure Python (no Pulumi), strict, with Istio's field names and cross-field rules."""

from llm_mesh.mesh.base import IstioObject, ObjectMeta, WorkloadSelector
from llm_mesh.mesh.networking import DestinationRule, Gateway, ServiceEntry, VirtualService
from llm_mesh.mesh.security import AuthorizationPolicy, PeerAuthentication, RequestAuthentication
from llm_mesh.mesh.telemetry import Telemetry

__all__ = [
    "AuthorizationPolicy",
    "DestinationRule",
    "Gateway",
    "IstioObject",
    "ObjectMeta",
    "PeerAuthentication",
    "RequestAuthentication",
    "ServiceEntry",
    "Telemetry",
    "VirtualService",
    "WorkloadSelector",
]
