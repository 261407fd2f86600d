"""Metrics without SoftHSM2: the operator's reconcile metrics through its real `reporting`
wrapper, scraped over HTTP from the real endpoint; the pool's metrics port and scrape
annotations; the command line's --metrics-port."""

import asyncio
import socket
from typing import Any

import aiohttp
import kopf
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from strongroom import cli, metrics
from strongroom.builders.common import Owner
from strongroom.builders.pool import OperatorSettings, Pool, build_stateful_set
from strongroom.models import HsmPoolSpec
from strongroom.operator.reporting import OperatorMetrics, reporting
from strongroom.reconcile.errors import InvalidSpec, NotReady

CANARY = "reconcile-canary-3b9f0d"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Patch:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {}


def _body(kind: str, uid: str, name: str = CANARY) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "strongroom.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "namespace": CANARY, "uid": uid, "generation": 1},
            "spec": {},
            "status": {},
        }
    )


def _ready(patch: _Patch, ready: bool) -> None:
    patch.status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]


async def _scrape(port: int) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
            assert answer.status == 200
            text = await answer.text()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def test_reconciles_are_counted_by_kind_action_and_outcome(monkeypatch: Any) -> None:
    monkeypatch.setattr(kopf, "event", lambda body, **kw: None)  # Events need an API server
    observed = OperatorMetrics()
    port = _free_port()

    async def reconcile(kind: str, uid: str, fail: Exception | None, ready: bool) -> None:
        patch = _Patch()
        try:
            async with reporting(_body(kind, uid), patch, observed=observed):  # type: ignore[arg-type]
                _ready(patch, ready)
                if fail is not None:
                    raise fail
        except (kopf.TemporaryError, kopf.PermanentError):
            pass

    async def delete(kind: str, uid: str) -> None:
        patch = _Patch()
        async with reporting(_body(kind, uid), patch, "delete", observed):  # type: ignore[arg-type]
            pass

    async def main() -> tuple[str, dict[Any, float]]:
        runner = await metrics.serve(observed.registry, port, "127.0.0.1")
        assert runner is not None
        try:
            await reconcile("Vault", "v1", None, True)
            await reconcile("Vault", "v2", NotReady("HsmPool 'p' is not Ready yet"), False)
            await reconcile("Key", "k1", InvalidSpec("no such thing"), False)
            await reconcile("Key", "k2", RuntimeError(CANARY), False)
            await reconcile("Key", "k2", None, True)  # the same Key, Ready now
            await reconcile("VaultSecret", "s1", None, False)
            await delete("VaultSecret", "s1")
            return await _scrape(port)
        finally:
            await runner.cleanup()

    text, samples = asyncio.run(main())

    def count(kind: str, action: str, outcome: str) -> float:
        labels = {"kind": kind, "action": action, "outcome": outcome}
        return samples.get(("strongroom_reconciles_total", frozenset(labels.items())), 0.0)

    assert count("Vault", "reconcile", "ok") == 1
    assert count("Vault", "reconcile", "not_ready") == 1
    assert count("Key", "reconcile", "failed") == 1
    assert count("Key", "reconcile", "retry") == 1
    assert count("Key", "reconcile", "ok") == 1
    assert count("VaultSecret", "reconcile", "ok") == 1
    assert count("VaultSecret", "delete", "ok") == 1

    def not_ready(kind: str) -> float:
        return samples[("strongroom_resources_not_ready", frozenset({("kind", kind)}))]

    assert not_ready("Vault") == 1  # v2
    assert not_ready("Key") == 1  # k1; k2 became Ready
    assert not_ready("VaultSecret") == 0  # deleted
    assert not_ready("HsmPool") == 0
    timed = frozenset({("kind", "Key"), ("action", "reconcile")})
    seconds = ("strongroom_reconcile_duration_seconds_count", timed)
    assert samples[seconds] == 3
    assert CANARY not in text  # neither names, namespaces nor error messages


def test_a_pool_serves_metrics_only_when_the_operator_says_so() -> None:
    owner = Owner("HsmPool", "main", "team-a", "11111111-2222-3333-4444-555555555555")
    pool = Pool(owner, HsmPoolSpec.model_validate({}))
    plain = build_stateful_set(pool, OperatorSettings(image="strongroom.io/strongroom:dev"))
    template = plain["spec"]["template"]
    assert "annotations" not in template["metadata"]
    assert "--metrics-port" not in template["spec"]["containers"][0]["args"]

    settings = OperatorSettings(image="strongroom.io/strongroom:dev", metrics_port=9102)
    template = build_stateful_set(pool, settings)["spec"]["template"]
    server, hsm = template["spec"]["containers"]
    assert server["args"][-2:] == ["--metrics-port", "9102"]
    assert {"name": "metrics", "containerPort": 9102, "protocol": "TCP"} in server["ports"]
    assert server["ports"][0]["name"] == "https"  # the data plane keeps its own port
    assert "ports" not in hsm  # the sidecar's metrics go out through the server's endpoint
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9102",
        "prometheus.io/path": "/metrics",
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["vault-server", "--config=c", "--tls-cert=c", "--tls-key=k", "--hsm-socket=s"]
        + ["--data-dir=d"],
        ["csi-node"],
        ["operator"],
    ],
)
def test_every_command_takes_a_metrics_port_that_is_off_by_default(argv: list[str]) -> None:
    assert cli.parser().parse_args(argv).metrics_port == 0
    assert cli.parser().parse_args([*argv, "--metrics-port=9102"]).metrics_port == 9102
    with pytest.raises(SystemExit):
        cli.parser().parse_args([*argv, "--metrics-port=70000"])


def test_port_zero_serves_nothing() -> None:
    assert asyncio.run(metrics.serve(metrics.registry(), 0)) is None


def _samples(registry: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_the_request_path_metrics_write_what_prometheus_clients_own_would() -> None:
    """Tally, Timings and Level (plain numbers on the request path) against
    prometheus_client's Counter, Histogram and Gauge fed the same observations: the same
    samples, buckets on their bounds included."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tally = metrics.Tally("t_requests", "Requests.", ("op", "code"), ours)
    timings = metrics.Timings("t_seconds", "Seconds.", ("op",), ours)
    level = metrics.Level("t_in_flight", "In flight.", ours)
    counter = Counter("t_requests", "Requests.", ["op", "code"], registry=theirs)
    histogram = Histogram(
        "t_seconds", "Seconds.", ["op"], buckets=metrics.LATENCY_BUCKETS, registry=theirs
    )
    gauge = Gauge("t_in_flight", "In flight.", registry=theirs)
    observations = [0.0, 0.0005, 0.001, 0.0010001, 0.0025, 0.7, 30.0, 31.0, 1e-9]
    for index, seconds in enumerate(observations):
        op = ("KeySign", "SecretGet")[index % 2]
        code = ("200", "404")[index % 3 == 0]
        tally.inc(op, code)
        counter.labels(op, code).inc()
        timings.observe(seconds, op)
        histogram.labels(op).observe(seconds)
    level.value += 3
    level.value -= 1
    gauge.set(2)
    assert _samples(ours) == _samples(theirs)
    assert tally.value("KeySign", "404") == 2
    assert timings.count("SecretGet") == 4
    assert ("t_seconds_bucket", frozenset({("op", "KeySign"), ("le", "0.001")})) in _samples(ours)
