"""The IAM roles the identity that runs `pulumi up` needs, from the Google Cloud resources a plan declares.

One predefined role per kind of resource (the narrowest that can create, update, delete it and set its IAM
policy), so the deploy workflow's service account is granted what the stack uses and nothing else. A resource
type missing here is a plan this module cannot vouch for: `unlisted_types` names it, and a test fails until it
is added with its role.
"""

from __future__ import annotations

from collections.abc import Iterable

# Each resource type the stack declares: the role that manages it.
ROLE_OF_TYPE = {
    "gcp:container/cluster:Cluster": "roles/container.admin",
    "gcp:container/nodePool:NodePool": "roles/container.admin",
    "gcp:compute/firewall:Firewall": "roles/compute.securityAdmin",
    "gcp:compute/router:Router": "roles/compute.networkAdmin",
    "gcp:compute/routerNat:RouterNat": "roles/compute.networkAdmin",
    "gcp:kms/keyRing:KeyRing": "roles/cloudkms.admin",
    "gcp:kms/cryptoKey:CryptoKey": "roles/cloudkms.admin",
    "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember": "roles/cloudkms.admin",
    "gcp:logging/metric:Metric": "roles/logging.configWriter",
    "gcp:monitoring/alertPolicy:AlertPolicy": "roles/monitoring.editor",
    "gcp:monitoring/customService:CustomService": "roles/monitoring.editor",
    "gcp:monitoring/dashboard:Dashboard": "roles/monitoring.editor",
    "gcp:monitoring/notificationChannel:NotificationChannel": "roles/monitoring.editor",
    "gcp:monitoring/slo:Slo": "roles/monitoring.editor",
    "gcp:projects/iAMMember:IAMMember": "roles/resourcemanager.projectIamAdmin",
    "gcp:serviceaccount/account:Account": "roles/iam.serviceAccountAdmin",
    "gcp:serviceaccount/iAMMember:IAMMember": "roles/iam.serviceAccountAdmin",
    "gcp:storage/bucket:Bucket": "roles/storage.admin",
    "gcp:storage/bucketIAMMember:BucketIAMMember": "roles/storage.admin",
    "gcp:storage/transferJob:TransferJob": "roles/storagetransfer.admin",
    "gcp:artifactregistry/repository:Repository": "roles/artifactregistry.admin",
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": "roles/artifactregistry.admin",
}

# Roles a deployment needs whatever its resources: what the program reads, and what GKE checks.
ALWAYS = {
    # The project's number, for the GKE and Storage Transfer service agents (gcp.organizations.get_project).
    "roles/browser": "read the project's number",
    # Node pools run as the stack's node service account: creating them acts as it (iam.serviceAccounts.actAs).
    "roles/iam.serviceAccountUser": "create node pools that run as the node service account",
    # The Kubernetes provider reaches the API server through the DNS endpoint: container.clusters.connect, and
    # Kubernetes RBAC through IAM. roles/container.admin carries both.
    "roles/container.admin": "reach the API server (DNS endpoint) and manage every Kubernetes object",
}


def deploy_roles(resource_types: Iterable[str]) -> dict[str, list[str]]:
    """Each role the deploying identity needs, with what it is needed for, sorted by role."""
    needs: dict[str, set[str]] = {role: {why} for role, why in ALWAYS.items()}
    for type_ in resource_types:
        if type_ in ROLE_OF_TYPE:
            needs.setdefault(ROLE_OF_TYPE[type_], set()).add(type_.rsplit(":", 1)[-1])
    return {role: sorted(needs[role]) for role in sorted(needs)}


def unlisted_types(resource_types: Iterable[str]) -> list[str]:
    """Google Cloud resource types in a plan that no role here accounts for."""
    return sorted({t for t in resource_types if t.startswith("gcp:") and t not in ROLE_OF_TYPE})
