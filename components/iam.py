"""IAM member strings, written once."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp


def service_account_member(email: pulumi.Input[str]) -> pulumi.Output[str]:
    """`serviceAccount:<email>` for an email that only the provider knows until deployment."""
    return pulumi.Output.from_input(email).apply(lambda value: f"serviceAccount:{value}")


def workload_identity(
    resource_name: str,
    project: str,
    account: gcp.serviceaccount.Account,
    namespace: str,
    kubernetes_account: str,
    opts: pulumi.ResourceOptions,
) -> gcp.serviceaccount.IAMMember:
    """The Kubernetes service account `namespace/kubernetes_account` may act as this Google account, and only it."""
    return gcp.serviceaccount.IAMMember(
        resource_name,
        service_account_id=account.name,
        role="roles/iam.workloadIdentityUser",
        member=f"serviceAccount:{project}.svc.id.goog[{namespace}/{kubernetes_account}]",
        opts=opts,
    )
