"""What the Java SDK sends, on the wire, is taken as Azure Key Vault takes it.

azure-security-keyvault-keys (4.11.1) creates an RSA key with
`{"kty": "RSA", "public_exponent": 0, "attributes": {}}` when the caller sets no exponent;
the Python SDK sends no `public_exponent` at all. Azure reads 0 and absent as its default,
65537, and refuses other exponents.
"""

import base64
from typing import Any

import pytest
import requests

from .conftest import DevServer

API = "?api-version=2025-07-01"  # the api-version azure-security-keyvault-keys 4.11.1 sends


def create_key(dev: DevServer, name: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{dev.url}/keys/{name}/create{API}",
        json=body,
        headers={"Authorization": f"Bearer {dev.token}"},
        verify=dev.ca,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("java-default-exponent-0", {"public_exponent": 0}),
        ("python-no-exponent", {}),
        ("exponent-65537", {"public_exponent": 65537}),
        ("exponent-null", {"public_exponent": None}),  # JSON null is absent, as Azure reads it
    ],
)
def test_rsa_public_exponent_0_absent_or_65537_makes_an_f4_key(
    dev: DevServer, name: str, extra: dict[str, Any]
) -> None:
    created = create_key(dev, name, {"kty": "RSA", "attributes": {}} | extra)
    assert created.status_code == 200, created.text
    assert base64.urlsafe_b64decode(created.json()["key"]["e"] + "==") == b"\x01\x00\x01"


@pytest.mark.parametrize("exponent", [3, 17, 65539, -1, 1, True, 65537.0, "65537", "AQAB"])
def test_other_rsa_public_exponents_are_refused_with_a_clear_message(
    dev: DevServer, exponent: object
) -> None:
    refused = create_key(dev, "exponent-refused", {"kty": "RSA-HSM", "public_exponent": exponent})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "BadParameter"
    assert "'public_exponent' must be 65537" in error["message"]
    names = requests.get(
        f"{dev.url}/keys{API}",
        headers={"Authorization": f"Bearer {dev.token}"},
        verify=dev.ca,
        timeout=30,
    ).json()["value"]
    assert not [item for item in names if item["kid"].endswith("/exponent-refused")]
