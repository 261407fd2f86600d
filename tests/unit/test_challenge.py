"""Our Bearer challenge passes the Azure SDK's own checks for an in-cluster vault host."""

import pytest
from azure.keyvault.keys._shared.challenge_auth_policy import _validate_challenge_resource
from azure.keyvault.keys._shared.http_challenge import HttpChallenge

from strongroom.vault.app import bearer_challenge


@pytest.mark.parametrize(
    "host",
    ["payments.team-a.svc:8443", "payments.team-a.svc", "v.pool.team-a.svc.cluster.local:443"],
)
def test_the_sdk_accepts_the_default_resource_for_cluster_hosts(host: str) -> None:
    url = f"https://{host}/keys/k/create"
    challenge = HttpChallenge(url, bearer_challenge(host))
    scope = challenge.get_scope() or challenge.get_resource()
    _validate_challenge_resource(scope, url)  # raises when the SDK would refuse


def test_localhost_cannot_pass_and_says_so() -> None:
    url = "https://localhost:8443/secrets"
    challenge = HttpChallenge(url, bearer_challenge("localhost:8443"))
    with pytest.raises(ValueError, match="verify_challenge_resource=False"):
        _validate_challenge_resource(challenge.get_resource(), url)


def test_a_foreign_resource_is_refused_by_the_sdk() -> None:
    url = "https://payments.team-a.svc/keys"
    challenge = HttpChallenge(url, bearer_challenge("payments.team-a.svc", "https://evil.example"))
    with pytest.raises(ValueError):
        _validate_challenge_resource(challenge.get_resource(), url)
