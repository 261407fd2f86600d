"""Leader election (operator/lease.py): one active replica at a time, takeover within the
lease, the holder gone before anyone may take over, on a fake clock and a fake API server.

The API server is simulated with what matters to the election: one Lease with a
resourceVersion that every write must name (409 otherwise), and per-replica faults
(refused calls, calls that hang). Time is virtual: every replica's sleeps and requests
advance one shared clock, so a minute of failover runs in milliseconds and the moments
are exact.
"""

import argparse
import asyncio
import heapq
import itertools
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from strongroom.operator.kubelease import KubeLeaseApi, serve_probes
from strongroom.operator.lease import (
    Elector,
    LeaseConflict,
    LeaseRecord,
    Timings,
    lead,
    micro_time,
)
from strongroom.operator.options import add_arguments, timings

TIMINGS = Timings(lease_seconds=10, renew_deadline_seconds=7, retry_seconds=2)
START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """Virtual time shared by every replica: `run_until` wakes sleepers in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), future))
        await future

    async def settle(self) -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def run_until(self, moment: float, check: Callable[[], None] | None = None) -> None:
        """Advance to `moment`, running everything due on the way; `check` after each step."""
        while True:
            await self.settle()
            if check is not None:
                check()
            if not self._sleepers or self._sleepers[0][0] > moment:
                self.now = max(self.now, moment)
                return
            due, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            if not future.done():
                future.set_result(None)

    async def run_until_true(self, condition: Callable[[], bool], limit: float) -> float:
        """Advance until `condition()` holds; the moment it first did."""
        while not condition():
            if self.now >= limit:
                raise AssertionError(f"not reached by t={limit}")
            await self.settle()
            if condition():
                break
            if not self._sleepers:
                raise AssertionError("nothing left to run")
            due, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            if not future.done():
                future.set_result(None)
        return self.now


@dataclass
class FakeApiServer:
    """One Lease, written only at its current resourceVersion."""

    clock: FakeClock
    body: dict[str, Any] | None = None
    version: int = 0
    writes: list[tuple[float, str | None]] = field(default_factory=list)  # (when, holder)
    refused: set[str] = field(default_factory=set)  # replicas whose calls fail
    hanging: set[str] = field(default_factory=set)  # replicas whose calls never answer
    latency: float = 0.05

    def client(self, identity: str) -> "FakeLeaseApi":
        return FakeLeaseApi(self, identity)

    @property
    def holder(self) -> str | None:
        return None if self.body is None else self.body["spec"].get("holderIdentity")

    def store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.body = {
            "metadata": {
                **record.meta,
                "name": "strongroom-operator",
                "resourceVersion": str(self.version),
            },
            "spec": record.spec(),
        }
        self.writes.append((self.clock.now, record.holder))
        return LeaseRecord.from_body(self.body)


@dataclass
class FakeLeaseApi:
    server: FakeApiServer
    identity: str

    async def _answer(self, timeout: float) -> None:
        if self.identity in self.server.hanging:
            await self.server.clock.sleep(timeout)
            raise TimeoutError("no answer")
        await self.server.clock.sleep(min(self.server.latency, timeout))
        if self.identity in self.server.refused:
            raise ConnectionRefusedError("the API server is unreachable")

    async def read(self, timeout: float) -> LeaseRecord | None:
        await self._answer(timeout)
        body = self.server.body
        return None if body is None else LeaseRecord.from_body(body)

    async def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        await self._answer(timeout)
        if self.server.body is not None:
            raise LeaseConflict("exists")
        return self.server.store(record)

    async def replace(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        await self._answer(timeout)
        if self.server.body is None or record.version != str(self.server.version):
            raise LeaseConflict("changed meanwhile")
        return self.server.store(record)


class Replica:
    """One operator process: an Elector under `lead`, whose operator runs until stopped."""

    def __init__(self, server: FakeApiServer, name: str, timings: Timings = TIMINGS) -> None:
        self.name = name
        self.elector = Elector(
            server.client(name), name, "strongroom-system/strongroom-operator", timings,
            server.clock,
        )  # fmt: skip
        self.clock = server.clock
        self.operating_since: float | None = None
        self.stopped_at: float | None = None
        self.lost_reason: str | None = None
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _operate(self) -> None:
        self.operating_since = self.clock.now
        self.elector.operating = True
        await self.stop.wait()

    def _lost(self, reason: str) -> None:
        self.lost_reason = reason
        self.stopped_at = self.clock.now

    def start(self) -> "Replica":
        self.task = asyncio.ensure_future(lead(self.elector, self._operate, self._lost, None))
        return self

    @property
    def active(self) -> bool:
        return self.operating_since is not None and self.stopped_at is None

    def kill(self) -> None:
        """SIGKILL: nothing released, nothing logged."""
        assert self.task is not None
        self.task.cancel()
        self.stopped_at = self.clock.now


def scenario(body: Callable[[FakeClock, FakeApiServer], Awaitable[None]]) -> None:
    async def run() -> None:
        clock = FakeClock()
        await body(clock, FakeApiServer(clock))
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    asyncio.run(run())


def one_at_a_time(*replicas: Replica) -> Callable[[], None]:
    def check() -> None:
        active = [r.name for r in replicas if r.active]
        assert len(active) <= 1, f"two replicas reconciling at once: {active}"

    return check


# --- timings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lease", "deadline", "retry"),
    [(10, 10, 2), (10, 7, 7), (10, 12, 2), (10, 7, 0), (10, 7, -1)],
)
def test_timings_must_let_the_holder_give_up_before_anyone_takes_over(
    lease: int, deadline: float, retry: float
) -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        Timings(lease, deadline, retry)


def test_the_defaults_fail_over_well_within_30_seconds() -> None:
    default = Timings()
    assert default == TIMINGS
    assert default.worst_takeover_seconds == 14


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_command_line_takes_the_lease_and_the_identity(monkeypatch: Any) -> None:
    monkeypatch.setenv("POD_NAME", "strongroom-operator-7d9-abcde")
    args = _parse()
    assert args.identity == "strongroom-operator-7d9-abcde"
    assert args.lease_name == "strongroom-operator"
    assert args.health_address == "0.0.0.0:8080"
    assert timings(args) == TIMINGS
    args = _parse("--lease-duration=20", "--lease-renew-deadline=15", "--lease-retry-period=5")
    assert timings(args) == Timings(20, 15, 5)
    with pytest.raises(ValueError):
        timings(_parse("--lease-duration=5", "--lease-renew-deadline=7"))


def test_an_identity_is_required() -> None:
    with pytest.raises(ValueError, match="identity"):
        Elector(FakeApiServer(FakeClock()).client(""), "", "ns/name")


# --- electing -----------------------------------------------------------------------------


def test_the_first_replica_makes_the_lease_and_becomes_active(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        a = Replica(server, "a").start()
        await clock.run_until(1)
        assert a.active and a.operating_since is not None and a.operating_since < 0.5
        assert server.holder == "a"
        spec = server.body["spec"] if server.body else {}
        assert spec["leaseDurationSeconds"] == 10
        assert spec["leaseTransitions"] == 0
        acquired = spec["acquireTime"]
        assert acquired == spec["renewTime"] == micro_time(START + timedelta(seconds=0.05))
        # It renews every retry period (plus the requests' time): renewTime moves,
        # acquireTime stays.
        await clock.run_until(9)
        moments = [when for when, _ in server.writes]
        assert len(moments) == 5
        assert all(2 < later - earlier < 2.2 for earlier, later in itertools.pairwise(moments))
        assert server.body is not None and server.body["spec"]["acquireTime"] == acquired
        renewed = START + timedelta(seconds=moments[-1] - server.latency)
        assert server.body["spec"]["renewTime"] == micro_time(renewed)

    with caplog.at_level(logging.INFO, logger="strongroom.operator.lease"):
        scenario(body)
    assert "became active: a holds Lease strongroom-system/strongroom-operator" in caplog.text


def test_of_two_replicas_one_reconciles_and_the_other_stands_by(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        a, b = Replica(server, "a").start(), Replica(server, "b").start()
        await clock.run_until(120, one_at_a_time(a, b))
        assert [r.active for r in (a, b)].count(True) == 1
        standby = b if a.active else a
        assert standby.elector.role == "standby"
        assert standby.elector.holder == server.holder != standby.name
        assert {holder for _, holder in server.writes} == {server.holder}

    with caplog.at_level(logging.INFO, logger="strongroom.operator.lease"):
        scenario(body)
    standing = [r.message for r in caplog.records if r.message.startswith("standing by for")]
    # Said once, not at every look.
    assert len(standing) == 1, standing
    holder = "a" if "became active: a " in caplog.text else "b"
    assert standing[0] == (
        f"standing by for {holder}, which holds Lease strongroom-system/strongroom-operator; "
        "taking over if it is not renewed for 10s"
    )


def test_two_replicas_starting_at_the_same_moment_elect_one() -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        server.latency = 0.0  # both read "no Lease" before either writes
        replicas = [Replica(server, name).start() for name in ("a", "b", "c")]
        await clock.run_until(30, one_at_a_time(*replicas))
        assert sum(r.active for r in replicas) == 1

    scenario(body)


def test_a_killed_holder_is_replaced_after_the_lease_and_within_lease_plus_two_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    takeovers: list[float] = []

    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        for kill_at in (20.0, 20.7, 21.3, 21.99):  # every phase of the renewal cycle
            server.body, server.writes = None, []
            a = Replica(server, "a").start()
            await clock.run_until(clock.now + 1)
            b = Replica(server, "b").start()
            await clock.run_until(clock.now + kill_at, one_at_a_time(a, b))
            assert a.active and not b.active
            a.kill()
            killed = clock.now
            last_renewal = max(when for when, holder in server.writes if holder == "a")
            took_over = await clock.run_until_true(lambda b=b: b.active, killed + 60)  # type: ignore[misc]
            # Never before the lease ran out, as b counted it...
            assert took_over >= last_renewal + TIMINGS.lease_seconds
            # ...and at most a lease and two retry periods after the kill.
            assert took_over - killed <= TIMINGS.worst_takeover_seconds
            takeovers.append(took_over - killed)
            assert server.holder == "b"
            assert server.body is not None and server.body["spec"]["leaseTransitions"] == 1
            b.stop.set()
            await clock.run_until(clock.now + 1)

    with caplog.at_level(logging.INFO, logger="strongroom.operator.lease"):
        scenario(body)
    assert all(8 <= t <= 14 for t in takeovers), takeovers
    assert "became active: b holds Lease strongroom-system/strongroom-operator (taking over " \
        "from a, whose lease ran out)" in caplog.text  # fmt: skip


def test_a_new_replica_waits_a_whole_lease_whatever_renew_time_says() -> None:
    """Candidates count from when they saw the Lease change, on their own clock: a holder
    whose node clock is an hour behind is not taken over early."""

    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        stale = LeaseRecord(
            holder="elsewhere",
            lease_seconds=10,
            acquired=micro_time(START - timedelta(hours=1)),
            renewed=micro_time(START - timedelta(hours=1)),
        )
        server.store(stale)
        b = Replica(server, "b").start()
        took_over = await clock.run_until_true(lambda: b.active, 60)
        assert 10 <= took_over <= 10 + 2 * TIMINGS.retry_seconds

    scenario(body)


def test_a_graceful_stop_releases_the_lease_and_the_standby_takes_over_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        a = Replica(server, "a").start()
        await clock.run_until(1)
        b = Replica(server, "b").start()
        await clock.run_until(15, one_at_a_time(a, b))
        a.stop.set()  # SIGTERM: kopf returns
        stopped = clock.now
        await clock.run_until_true(lambda: a.task is not None and a.task.done(), stopped + 1)
        a.stopped_at = clock.now
        assert server.writes[-1][1] is None  # released: no holder
        assert server.body is not None and server.body["spec"]["leaseDurationSeconds"] == 1
        took_over = await clock.run_until_true(lambda: b.active, stopped + 30)
        assert took_over - stopped <= TIMINGS.retry_seconds + 0.5
        assert a.lost_reason is None

    with caplog.at_level(logging.INFO, logger="strongroom.operator.lease"):
        scenario(body)
    assert "released Lease strongroom-system/strongroom-operator" in caplog.text
    # b saw a hold it, then took the Lease a released: not "whose lease ran out".
    assert "became active: b holds Lease strongroom-system/strongroom-operator (the Lease " \
        "was free)" in caplog.text  # fmt: skip
    assert "ran out" not in caplog.text


def test_a_holder_cut_off_from_the_api_stops_before_anyone_may_take_over() -> None:
    """The safety property: the cut-off holder's keep() ends (and the process with it) at
    its renew deadline, before the standby's lease count runs out."""

    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        a = Replica(server, "a").start()
        await clock.run_until(1)
        b = Replica(server, "b").start()
        await clock.run_until(11, one_at_a_time(a, b))
        server.refused.add("a")
        cut = clock.now
        last_renewal = max(when for when, holder in server.writes if holder == "a")
        took_over = await clock.run_until_true(lambda: b.active, cut + 60)
        assert a.stopped_at is not None and a.lost_reason is not None
        assert a.lost_reason.startswith("not renewed for 7.")
        assert a.stopped_at <= last_renewal + TIMINGS.renew_deadline_seconds
        assert a.stopped_at < took_over
        assert took_over - a.stopped_at >= TIMINGS.lease_seconds - TIMINGS.renew_deadline_seconds

    scenario(body)


def test_a_hanging_api_call_cannot_keep_the_holder_past_its_deadline() -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        a = Replica(server, "a").start()
        await clock.run_until(1)
        server.hanging.add("a")
        last_renewal = max(when for when, holder in server.writes if holder == "a")
        await clock.run_until_true(lambda: a.stopped_at is not None, 60)
        assert a.stopped_at is not None
        assert a.stopped_at <= last_renewal + TIMINGS.renew_deadline_seconds

    scenario(body)


def test_a_holder_that_finds_another_in_the_lease_stops_at_once() -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        a = Replica(server, "a").start()
        await clock.run_until(5)
        record = LeaseRecord.from_body(server.body or {})
        server.store(LeaseRecord(holder="intruder", lease_seconds=10, meta=record.meta))
        await clock.run_until_true(lambda: a.stopped_at is not None, 10)
        assert a.lost_reason == "intruder holds it now"

    scenario(body)


def test_a_restarted_container_takes_its_own_lease_back_at_once() -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        a = Replica(server, "pod-a").start()
        await clock.run_until(5)
        a.kill()
        again = Replica(server, "pod-a").start()
        took_over = await clock.run_until_true(lambda: again.active, 60)
        assert took_over - 5 < 1
        assert server.body is not None and server.body["spec"]["leaseTransitions"] == 0

    scenario(body)


def test_a_standby_keeps_looking_while_the_api_fails_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        server.refused.add("a")
        a = Replica(server, "a").start()
        await clock.run_until(30)
        assert not a.active and a.elector.role == "starting"
        server.refused.clear()
        await clock.run_until(33)
        assert a.active

    with caplog.at_level(logging.INFO, logger="strongroom.operator.lease"):
        scenario(body)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.message for r in warnings]
    assert "ConnectionRefusedError" in warnings[0].message


def test_stopping_a_standby_ends_it_without_operating() -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        a = Replica(server, "a").start()
        await clock.run_until(1)
        stopping = asyncio.Event()
        b = Elector(server.client("b"), "b", "ns/lease", TIMINGS, clock)
        ran: list[str] = []

        async def operate() -> None:
            ran.append("b")

        task = asyncio.ensure_future(lead(b, operate, ran.append, stopping))
        await clock.run_until(5)
        stopping.set()
        await clock.run_until(6)
        assert task.done() and task.exception() is None
        assert ran == [] and b.role == "stopped" and server.holder == "a"
        assert a.active

    scenario(body)


def test_an_operator_that_fails_releases_the_lease_and_raises() -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        elector = Elector(server.client("a"), "a", "ns/lease", TIMINGS, clock)

        async def operate() -> None:
            await clock.sleep(3)
            raise RuntimeError("startup handler failed")

        task = asyncio.ensure_future(lead(elector, operate, pytest.fail, None))
        await clock.run_until(5)
        assert task.done()
        with pytest.raises(RuntimeError, match="startup handler failed"):
            task.result()
        assert server.holder is None

    scenario(body)


def test_losing_the_lease_stops_the_operator_before_anything_else() -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        elector = Elector(server.client("a"), "a", "ns/lease", TIMINGS, clock)
        events: list[str] = []
        cancelled = asyncio.Event()

        async def operate() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                events.append("operator cancelled")
                cancelled.set()
                raise

        task = asyncio.ensure_future(
            lead(elector, operate, lambda why: events.append(f"lost: {why}"), None)
        )
        await clock.run_until(3)
        server.hanging.add("a")
        await clock.run_until(20)
        assert task.done() and task.exception() is None
        assert events[0].startswith("lost: not renewed") and events[1] == "operator cancelled"
        assert server.holder == "a"  # not released: the API did not answer; it expires

    scenario(body)


# --- probes -------------------------------------------------------------------------------


def test_health_says_what_each_replica_is_doing() -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        a = Replica(server, "a")
        assert a.elector.health() == (True, False, "starting")
        a.start()
        await clock.run_until(1)
        b = Replica(server, "b").start()
        await clock.run_until(3)
        assert a.elector.health() == (True, True, "active: holds the Lease")
        assert b.elector.health() == (True, True, "standby for a")
        # A standby that cannot read the Lease for a lease duration would not notice the
        # holder's death: not ready, still alive (a restart would not help).
        server.refused.add("b")
        await clock.run_until(14)
        assert b.elector.health() == (True, False, "standby for a: cannot read the Lease")
        # An election that stopped running its rounds is dead.
        b.task.cancel() if b.task else None
        await clock.run_until(14 + 31)
        assert b.elector.health()[0] is False
        assert a.elector.health() == (True, True, "active: holds the Lease")

    scenario(body)


def test_an_active_replica_is_ready_once_it_operates() -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        server.latency = 0
        elector = Elector(server.client("a"), "a", "ns/lease", TIMINGS, clock)
        assert await elector.acquire()
        assert elector.health() == (True, False, "active: holds the Lease, starting")
        elector.operating = True
        assert elector.health() == (True, True, "active: holds the Lease")

    scenario(body)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_probes_answer_for_a_standby_and_for_the_active_replica() -> None:
    async def body(clock: FakeClock, server: FakeApiServer) -> None:
        server.latency = 0
        a = Elector(server.client("a"), "a", "ns/lease", TIMINGS, clock)
        b = Elector(server.client("b"), "b", "ns/lease", TIMINGS, clock)
        ports = _free_port(), _free_port()
        runners = [
            await serve_probes(e, "127.0.0.1", p) for e, p in zip((a, b), ports, strict=True)
        ]
        try:
            async with aiohttp.ClientSession() as http:

                async def probe(port: int, path: str) -> tuple[int, str]:
                    async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                        return response.status, await response.text()

                assert await probe(ports[0], "/healthz") == (200, "starting\n")
                assert await probe(ports[0], "/readyz") == (503, "starting\n")
                assert await a.acquire()
                a.operating = True
                standby = asyncio.ensure_future(b.acquire())
                await clock.run_until(1)
                assert await probe(ports[0], "/readyz") == (200, "active: holds the Lease\n")
                assert await probe(ports[1], "/readyz") == (200, "standby for a\n")
                assert await probe(ports[1], "/healthz") == (200, "standby for a\n")
                standby.cancel()
        finally:
            for runner in runners:
                await runner.cleanup()

    scenario(body)


# --- the Lease on the Kubernetes API ------------------------------------------------------


@dataclass
class RecordingApiClient:
    """What KubeLeaseApi sends, and canned answers: the body shapes are the test."""

    answers: Iterator[Any]
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def call_api(self, url: str, method: str, **kwargs: Any) -> Any:
        self.calls.append({"url": url, "method": method, **kwargs})
        answer = next(self.answers)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _kube_api(*answers: Any) -> tuple[KubeLeaseApi, RecordingApiClient]:
    client = RecordingApiClient(iter(answers))
    return KubeLeaseApi(client, "strongroom-system", owner_deployment="op"), client  # type: ignore[arg-type]


LEASES = "/apis/coordination.k8s.io/v1/namespaces/strongroom-system/leases"


def test_the_lease_is_made_owned_by_the_deployment_and_replaced_conditionally() -> None:
    async def body() -> None:
        stored: dict[str, Any] = {
            "metadata": {
                "name": "strongroom-operator",
                "namespace": "strongroom-system",
                "resourceVersion": "41",
                "uid": "lease-uid",
                "ownerReferences": [{"kind": "Deployment", "name": "op", "uid": "dep-uid"}],
                "managedFields": [{"manager": "someone"}],
            },
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 10, "leaseTransitions": 3},
        }
        api, client = _kube_api(
            ApiException(status=404, reason="Not Found"),  # no Lease yet
            {"metadata": {"name": "op", "uid": "dep-uid"}},  # the Deployment
            stored,  # created
            stored,  # read
            stored | {"metadata": stored["metadata"] | {"resourceVersion": "42"}},  # replaced
            ApiException(status=409, reason="Conflict"),
            ApiException(status=500, reason="Internal Server Error"),
        )
        assert await api.read(5) is None
        mine = LeaseRecord(holder="a", lease_seconds=10)
        made = await api.create(mine, 5)
        assert made.version == "41" and made.holder == "a" and made.transitions == 3
        post = client.calls[2]
        assert post["method"] == "POST" and post["url"] == LEASES
        assert post["body"]["metadata"]["ownerReferences"] == [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "op", "uid": "dep-uid"}
        ]
        assert post["body"]["spec"]["holderIdentity"] == "a"
        read = await api.read(5)
        assert read is not None and read.version == "41"
        renewed = await api.replace(LeaseRecord("b", 10, version="41", meta=read.meta), 2.5)
        assert renewed.version == "42"
        put = client.calls[4]
        assert put["method"] == "PUT" and put["url"] == f"{LEASES}/strongroom-operator"
        # The write names the version it read (the API server's condition) and keeps the
        # owner; managedFields are the server's.
        assert put["body"]["metadata"]["resourceVersion"] == "41"
        assert put["body"]["metadata"]["ownerReferences"][0]["uid"] == "dep-uid"
        assert "managedFields" not in put["body"]["metadata"]
        assert put["_request_timeout"] == 2.5
        with pytest.raises(LeaseConflict):
            await api.replace(LeaseRecord("b", 10, version="41"), 1)
        with pytest.raises(ApiException):
            await api.read(1)

    asyncio.run(body())


def test_lease_records_read_back_what_they_write() -> None:
    record = LeaseRecord(
        holder="a", lease_seconds=10, acquired="x", renewed="y", transitions=2, version="7"
    )
    body = {"metadata": {"resourceVersion": "7"}, "spec": record.spec()}
    assert LeaseRecord.from_body(body) == record
    released = LeaseRecord.from_body({"metadata": {}, "spec": {"holderIdentity": ""}})
    assert released.holder is None and released.lease_seconds == 0
