"""The vault server's metrics endpoint (with its HSM sidecar's), scraped over HTTP from a
`strongroom dev` started with --metrics-port: counters move by exactly what was asked of
the data plane, and no value, object name or token ever reaches a label."""

import base64
import hashlib
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .conftest import DevServer, free_port, start_dev, stop_dev

API = "api-version=7.5"
CANARY_VALUE = "metrics-canary-value-5e1d7c3a9b"
CANARY_NAME = "metrics-canary-name-0c4f8a2e"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevServer, str]]:
    base = tmp_path_factory.mktemp("metrics")
    port = free_port()
    server = start_dev(base / "state", base / "dev.log", extra=("--metrics-port", str(port)))
    yield server, f"http://127.0.0.1:{port}/metrics"
    stop_dev(server)


def scrape_text(url: str) -> str:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the endpoint by (sample name, labels)."""
    samples = {}
    for family in text_string_to_metric_families(scrape_text(url)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Plane:
    """Plain HTTPS calls to the dev server, each checked for the status it must get."""

    def __init__(self, dev: DevServer) -> None:
        self.dev = dev
        self.session = requests.Session()

    def call(
        self,
        status: int,
        method: str,
        path: str,
        body: object = None,
        token: str | None = "",
    ) -> dict[str, Any]:
        bearer = self.dev.token if token == "" else token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
        sep = "&" if "?" in path else "?"
        response = self.session.request(
            method,
            f"{self.dev.url}{path}{sep}{API}",
            json=body,
            headers=headers,
            timeout=30,
            verify=self.dev.ca,
        )
        assert response.status_code == status, (method, path, response.text)
        return response.json() if response.content else {}


def delta(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_requests_errors_and_auth_failures_are_counted_exactly(
    served: tuple[DevServer, str],
) -> None:
    dev, url = served
    plane = Plane(dev)
    before = scrape(url)
    plane.call(200, "PUT", "/secrets/metrics-a", {"value": "v1"})
    plane.call(200, "GET", "/secrets/metrics-a")
    plane.call(404, "GET", "/secrets/metrics-absent")
    plane.call(404, "GET", "/no-such-collection")
    plane.call(401, "GET", "/secrets/metrics-a", token=None)
    plane.call(401, "GET", "/secrets/metrics-a", token="not.a.token")
    plane.call(401, "GET", "/secrets/metrics-a", token=dev.issue("dev:admin", ttl=60, now=1e9))
    plane.call(401, "GET", "/secrets/metrics-a", token=dev.issue("dev:admin", "elsewhere"))
    plane.call(403, "PUT", "/secrets/metrics-a", {"value": "v2"}, token=dev.issue("dev:reader"))
    health = requests.get(f"{dev.url}/healthz", verify=dev.ca, timeout=10)
    assert health.status_code == 200
    after = scrape(url)

    requests_total = "strongroom_requests_total"
    assert delta(before, after, requests_total, op="SecretSet", code="200") == 1
    assert delta(before, after, requests_total, op="SecretGet", code="200") == 1
    assert delta(before, after, requests_total, op="SecretGet", code="404") == 1
    assert delta(before, after, requests_total, op="SecretSet", code="403") == 1
    # Refused before an operation was known: no route, or no caller.
    assert delta(before, after, requests_total, op="Unknown", code="404") == 1
    assert delta(before, after, requests_total, op="Unknown", code="401") == 4
    assert delta(before, after, requests_total, op="Healthz", code="200") == 1
    duration = "strongroom_request_duration_seconds_count"
    assert delta(before, after, duration, op="SecretGet") == 2
    assert delta(before, after, duration, op="SecretSet") == 2

    failures = "strongroom_auth_failures_total"
    for reason in ("missing", "bad_token", "expired", "wrong_audience", "denied"):
        assert delta(before, after, failures, reason=reason) == 1, reason
    # The scrape is not a request of the data plane, and nothing is in flight between them.
    assert value(after, "strongroom_requests_in_flight") == 0


def test_hsm_calls_are_timed_by_operation_and_mechanism_in_the_server_and_the_sidecar(
    served: tuple[DevServer, str],
) -> None:
    dev, url = served
    plane = Plane(dev)
    created = plane.call(200, "POST", "/keys/metrics-signer/create", {"kty": "EC", "crv": "P-256"})
    version = created["key"]["kid"].rsplit("/", 1)[1]
    digest = base64.urlsafe_b64encode(hashlib.sha256(b"m").digest()).rstrip(b"=").decode()
    before = scrape(url)
    plane.call(
        200,
        "POST",
        f"/keys/metrics-signer/{version}/sign",
        {"alg": "ES256", "value": digest},
    )
    after = scrape(url)
    calls = "strongroom_hsm_call_duration_seconds_count"
    assert delta(before, after, calls, operation="sign", mechanism="ES256") == 1
    assert delta(before, after, "strongroom_hsm_operations_total", operation="sign") == 1
    in_hsm = "strongroom_hsm_operation_duration_seconds_count"
    assert delta(before, after, in_hsm, operation="sign") == 1
    assert value(after, "strongroom_hsm_sidecar_up") == 1
    assert value(after, "strongroom_hsm_queue_depth") == 0
    generated = value(after, calls, operation="generate_ec", mechanism="P-256")
    assert generated >= 1


def test_objects_are_counted_per_vault_and_kind(served: tuple[DevServer, str]) -> None:
    dev, url = served
    plane = Plane(dev)
    before = scrape(url)
    plane.call(200, "PUT", "/secrets/metrics-count-1", {"value": "x"})
    plane.call(200, "PUT", "/secrets/metrics-count-2", {"value": "x"})
    plane.call(200, "PUT", "/secrets/metrics-count-2", {"value": "y"})  # a version, not an object
    plane.call(200, "POST", "/keys/metrics-count-k/create", {"kty": "EC", "crv": "P-256"})
    after = scrape(url)
    assert delta(before, after, "strongroom_vault_objects", vault="dev", kind="secret") == 2
    assert delta(before, after, "strongroom_vault_objects", vault="dev", kind="key") == 1


def test_a_request_waiting_for_its_body_is_in_flight(served: tuple[DevServer, str]) -> None:
    dev, url = served
    host, port = urllib.parse.urlsplit(dev.url).netloc.rsplit(":", 1)
    context = ssl.create_default_context(cafile=dev.ca)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(
                f"PUT /secrets/metrics-slow?{API} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {dev.token}\r\nContent-Type: application/json\r\n"
                "Content-Length: 20\r\n\r\n".encode()
            )
            deadline = time.monotonic() + 10
            while value(scrape(url), "strongroom_requests_in_flight") != 1:
                assert time.monotonic() < deadline, "the waiting request is not in flight"
                time.sleep(0.05)
    deadline = time.monotonic() + 10
    while value(scrape(url), "strongroom_requests_in_flight") != 0:
        assert time.monotonic() < deadline, "the abandoned request stayed in flight"
        time.sleep(0.05)


def test_no_value_object_name_or_token_reaches_the_metrics(served: tuple[DevServer, str]) -> None:
    dev, url = served
    plane = Plane(dev)
    plane.call(200, "PUT", f"/secrets/{CANARY_NAME}", {"value": CANARY_VALUE})
    plane.call(200, "GET", f"/secrets/{CANARY_NAME}")
    plane.call(404, "GET", f"/secrets/{CANARY_NAME}/00000000000000000000000000000000")
    plane.call(404, "GET", f"/{CANARY_NAME}/{CANARY_VALUE}")
    plane.call(200, "POST", f"/keys/{CANARY_NAME}/create", {"kty": "RSA", "key_size": 2048})
    plane.call(401, "GET", f"/secrets/{CANARY_NAME}", token=CANARY_VALUE)
    text = scrape_text(url)
    assert "strongroom_requests_total" in text and "strongroom_hsm_operations_total" in text
    for forbidden in (CANARY_VALUE, CANARY_NAME, dev.token, "dev:admin", "dev:reader"):
        assert forbidden not in text
