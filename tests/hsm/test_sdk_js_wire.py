"""What the JavaScript SDKs (@azure/keyvault-keys 4.10, -secrets 4.11) send that Python's do
not, as raw HTTP against `strongroom dev`: Azure Key Vault accepts each of these, so the vault
must too. tests/sdk/js runs the SDKs themselves (scripts/test-sdk-js).

http.client and not requests: requests rewrites `%2D` to `-` before sending.
"""

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

import pytest

from .conftest import DevServer

JS_QUERY = "?api%2Dversion=2025-07-01"  # the JS SDKs' URL template percent-encodes the `-`


class Wire:
    def __init__(self, dev: DevServer) -> None:
        self.url = urlsplit(dev.url)
        self.context = ssl.create_default_context(cafile=dev.ca)
        self.token = dev.token

    def call(
        self, method: str, target: str, body: Any = None, token: bool = True
    ) -> tuple[int, dict[str, str], Any]:
        connection = http.client.HTTPSConnection(
            self.url.hostname or "", self.url.port, context=self.context, timeout=30
        )
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            payload = None if body is None else json.dumps(body).encode()
            connection.request(method, target, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            return response.status, dict(response.getheaders()), json.loads(raw) if raw else None
        finally:
            connection.close()


@pytest.fixture(scope="module")
def wire(dev: DevServer) -> Wire:
    return Wire(dev)


def test_a_percent_encoded_api_version_parameter_is_read_as_api_version(wire: Wire) -> None:
    status, _, body = wire.call("POST", "/keys/js-wire-query/create" + JS_QUERY, {"kty": "EC"})
    assert status == 200, body
    status, _, body = wire.call("GET", "/keys/js-wire-query?api%2Dversion=1.0")
    assert status == 400 and body["error"]["code"] == "BadParameter"


def test_a_get_with_a_trailing_slash_and_no_version_returns_the_latest(wire: Wire) -> None:
    """JS's getKey and getSecret without a version ask for `/keys/<name>/`, and the pollers of
    beginRecoverDeletedKey/-Secret poll it: Azure answers with the latest version."""
    wire.call("POST", "/keys/js-wire-latest/create" + JS_QUERY, {"kty": "EC"})
    _, _, latest = wire.call("POST", "/keys/js-wire-latest/create" + JS_QUERY, {"kty": "EC"})
    status, _, body = wire.call("GET", "/keys/js-wire-latest/" + JS_QUERY)
    assert status == 200 and body["key"]["kid"] == latest["key"]["kid"]
    wire.call("PUT", "/secrets/js-wire-latest" + JS_QUERY, {"value": "one"})
    wire.call("PUT", "/secrets/js-wire-latest" + JS_QUERY, {"value": "two"})
    status, _, body = wire.call("GET", "/secrets/js-wire-latest/" + JS_QUERY)
    assert status == 200 and body["value"] == "two"
    status, _, _ = wire.call("GET", "/keys/js-wire-absent/" + JS_QUERY)
    assert status == 404


def test_by_page_maxresults_is_kept_in_next_links_and_a_reencoded_skiptoken_works(
    wire: Wire,
) -> None:
    """JS's byPage({maxPageSize}) sends maxresults on the first request only, follows each
    nextLink as it is, and re-encodes `$skiptoken` as `%24skiptoken` on the way."""
    for index in range(5):
        wire.call("PUT", f"/secrets/js-wire-page-{index}" + JS_QUERY, {"value": "v"})
    target = "/secrets" + JS_QUERY + "&maxresults=2"
    names: list[str] = []
    while target:
        status, _, body = wire.call("GET", target)
        assert status == 200, body
        assert len(body["value"]) <= 2
        names += [item["id"].split("/")[4] for item in body["value"]]
        next_link = body.get("nextLink")
        if next_link:
            assert "maxresults=2" in next_link
            target = urlsplit(next_link)._replace(scheme="", netloc="").geturl()
            target = target.replace("$skiptoken", "%24skiptoken")
        else:
            target = ""
    assert {f"js-wire-page-{index}" for index in range(5)} <= set(names)
    assert len(names) == len(set(names))
    status, _, body = wire.call("GET", "/secrets" + JS_QUERY + "&maxresults=26")
    assert status == 400 and "maxresults" in body["error"]["message"]


def test_the_challenge_request_has_no_body_and_gets_a_401_with_the_challenge(wire: Wire) -> None:
    """The JS challenge policy sends the first request of a body-carrying call with its body
    removed (Content-Type kept, no Content-Length), then resends it with the token."""
    status, headers, body = wire.call(
        "POST", "/keys/js-wire-challenge/create" + JS_QUERY, token=False
    )
    assert status == 401 and body["error"]["code"] == "Unauthorized"
    challenge = {k.lower(): v for k, v in headers.items()}["www-authenticate"]
    assert challenge.startswith("Bearer authorization=") and 'resource="https://' in challenge
