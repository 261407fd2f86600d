"""Finding 9: tags under `strongroom.io/` belong to the operator; the data plane refuses them.

The attack: a data-plane caller plants an object carrying the owner tag of a
resource it does not own, so that the operator adopts the planted object.
"""

from collections.abc import Iterator

import pytest
import requests

from .conftest import DevServer, stop_dev
from .tenants import Caller, ok, refused, start_tenants

OWNER = "2f0c6b9e-1111-4c5e-9a7e-0123456789ab"
PLANTED = {"strongroom.io/uid": OWNER}


def operator_session(dev: DevServer) -> requests.Session:
    """The management API as the operator calls it: its client certificate, no token."""
    session = requests.Session()
    session.cert = (dev.info["clientCertificate"], dev.info["clientKey"])
    session.verify = dev.ca
    session.trust_env = False  # else a CA bundle named in the environment overrides `verify`
    return session


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    base = tmp_path_factory.mktemp("reserved")
    server = start_tenants(base / "state", base / "dev.log")
    yield server
    stop_dev(server)


def test_a_planted_owner_tag_is_refused_and_nothing_is_made(tenants: DevServer) -> None:
    writer = Caller(tenants, "dev:writer")
    key = writer.call("POST", "/keys/planted-key/create", {"kty": "EC", "tags": PLANTED})
    assert "strongroom.io/" in refused(key, 400)
    assert writer.call("GET", "/keys/planted-key").status_code == 404
    secret = writer.call("PUT", "/secrets/planted-secret", {"value": "v", "tags": PLANTED})
    assert "strongroom.io/" in refused(secret, 400)
    assert writer.call("GET", "/secrets/planted-secret").status_code == 404
    other_reserved = writer.call(
        "PUT", "/secrets/planted-secret", {"value": "v", "tags": {"strongroom.io/anything": "x"}}
    )
    refused(other_reserved, 400)


def test_updates_cannot_add_or_remove_the_owner_tag(tenants: DevServer) -> None:
    writer = Caller(tenants, "dev:writer")
    key = ok(writer.call("POST", "/keys/tagged-later/create", {"kty": "EC", "tags": {"a": "b"}}))
    version = key["key"]["kid"].rsplit("/", 1)[1]
    patched = writer.call("PATCH", f"/keys/tagged-later/{version}", {"tags": PLANTED})
    assert "strongroom.io/" in refused(patched, 400)
    assert ok(writer.call("GET", "/keys/tagged-later"))["tags"] == {"a": "b"}
    ok(writer.call("PUT", "/secrets/tagged-later", {"value": "v"}))
    latest = ok(writer.call("GET", "/secrets/tagged-later"))
    version = latest["id"].rsplit("/", 1)[1]
    patched_secret = writer.call("PATCH", f"/secrets/tagged-later/{version}", {"tags": PLANTED})
    assert "strongroom.io/" in refused(patched_secret, 400)
    assert "tags" not in ok(writer.call("GET", "/secrets/tagged-later"))


def test_the_management_api_does_not_adopt_what_it_did_not_make(tenants: DevServer) -> None:
    # The only way left to a data-plane caller: make the object first, without the tag.
    writer = Caller(tenants, "dev:writer")
    ok(writer.call("PUT", "/secrets/squatted", {"value": "attacker's value"}))
    adopt = operator_session(tenants).put(
        tenants.url + "/_strongroom/v1/vaults/dev/secrets/squatted",
        json={"owner": OWNER, "value": "operator's value"},
        timeout=30,
    )
    # The operator's create-once refuses an object without its owner tag.
    assert adopt.status_code == 409, adopt.text
    assert ok(writer.call("GET", "/secrets/squatted"))["value"] == "attacker's value"


def test_an_operator_owned_object_keeps_its_owner_through_data_plane_updates(
    tenants: DevServer,
) -> None:
    operator = operator_session(tenants)
    made = operator.put(
        tenants.url + "/_strongroom/v1/vaults/dev/keys/owned",
        json={"owner": OWNER, "kty": "EC", "tags": {"team": "a"}},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    writer = Caller(tenants, "dev:writer")
    version = ok(writer.call("GET", "/keys/owned"))["key"]["kid"].rsplit("/", 1)[1]
    patched = ok(writer.call("PATCH", f"/keys/owned/{version}", {"tags": {}}))
    assert patched["tags"] == PLANTED  # reserved tags survive; the caller cannot drop them
    state = operator.get(tenants.url + "/_strongroom/v1/vaults/dev/keys/owned", timeout=30)
    assert state.status_code == 200, state.text
    assert state.json()["owner"] == OWNER
