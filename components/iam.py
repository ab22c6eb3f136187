"""IAM member strings, written once."""

from __future__ import annotations

import pulumi


def service_account_member(email: pulumi.Input[str]) -> pulumi.Output[str]:
    """`serviceAccount:<email>` for an email that only the provider knows until deployment."""
    return pulumi.Output.from_input(email).apply(lambda value: f"serviceAccount:{value}")
