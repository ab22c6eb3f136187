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


def workload_account(
    resource_prefix: str,
    role_resource: str,
    project: str,
    account_id: str,
    display_name: str,
    role: str,
    kubernetes_account: tuple[str, str],
    opts: pulumi.ResourceOptions,
) -> gcp.serviceaccount.Account:
    """A Google service account with one project role, that one Kubernetes service account (namespace, name) may
    act as: `<prefix>-gsa`-style names are the caller's, so that existing resources keep theirs."""
    account = gcp.serviceaccount.Account(
        f"{resource_prefix}-gsa", project=project, account_id=account_id, display_name=display_name, opts=opts
    )
    gcp.projects.IAMMember(
        role_resource, project=project, role=role, member=service_account_member(account.email), opts=opts
    )
    namespace, name = kubernetes_account
    workload_identity(f"{resource_prefix}-workload-identity", project, account, namespace, name, opts)
    return account
