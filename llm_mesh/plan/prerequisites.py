"""What the plan refers to but does not create: the user provides it before traffic can flow."""

from __future__ import annotations

from llm_mesh.plan.config import StackConfig
from llm_mesh.plan.topology import INGRESS_NAMESPACE


def outside_the_stack(config: StackConfig) -> list[str]:
    """Each thing the stack needs from outside it, as one line naming it and where it comes from."""
    needs = []
    if config.gateway.tls_credential_name:
        needs.append(
            f"Secret {INGRESS_NAMESPACE}/{config.gateway.tls_credential_name} (kubernetes.io/tls for "
            f"*.{config.gateway.domain}, gateway.tlsCredentialName), e.g. issued by cert-manager"
        )
    return needs
