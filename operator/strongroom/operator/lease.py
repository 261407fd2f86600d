"""Leader election: of the operator's replicas, the one holding a Lease reconciles.

The active replica holds the coordination.k8s.io/v1 Lease `strongroom-operator` in the
operator's namespace and renews it every `retry` seconds; the others read it as often and
stand by. The rules are client-go's (what kube-controller-manager runs):

- a candidate counts a lease's age from when *it* saw the Lease change (its own monotonic
  clock), never from the `renewTime` written by another node's clock, and takes the Lease
  over once it has not changed for `leaseDurationSeconds`;
- every write carries the resourceVersion that was read, so of two replicas writing at
  once the API server accepts one and answers the other 409 Conflict: one holder at a time;
- the holder gives up once it has not renewed for `renewDeadline` seconds, which is
  shorter than the lease, so it has stopped before anyone else may take over; every
  request is bounded by the time left until that deadline;
- at a graceful stop the holder releases the Lease (no holder, a one-second lease), so
  that a standby takes over at its next try instead of waiting for the lease to run out.

A holder that loses the Lease stops at once (operator.main ends the process), so nothing
reconciles without it. What it was doing when it stopped is safe to repeat: every object
the operator makes is made once per resource uid (reconcile/key.py, reconcile/secret.py).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

LEASE_NAME = "strongroom-operator"
Role = Literal["starting", "standby", "active", "stopped"]


@dataclass(frozen=True)
class Timings:
    """How long a lease lasts, how long its holder keeps trying to renew it, how often
    everyone looks. Worst failover after a holder dies: lease + 2 * retry, plus the time
    the new holder takes to start reconciling."""

    lease_seconds: int = 10
    renew_deadline_seconds: float = 7.0
    retry_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_seconds < self.renew_deadline_seconds < self.lease_seconds:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration "
                f"(got {self.retry_seconds}s, {self.renew_deadline_seconds}s, "
                f"{self.lease_seconds}s): the holder must give up before anyone may take over"
            )

    @property
    def worst_takeover_seconds(self) -> float:
        return self.lease_seconds + 2 * self.retry_seconds


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec as the election reads and writes it, with the resourceVersion that
    makes a write conditional. `meta` is the object's metadata, written back unchanged."""

    holder: str | None
    lease_seconds: int
    acquired: str | None = None
    renewed: str | None = None
    transitions: int = 0
    version: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "LeaseRecord":
        spec = body.get("spec") or {}
        meta = dict(body.get("metadata") or {})
        return cls(
            holder=spec.get("holderIdentity") or None,
            lease_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquired=spec.get("acquireTime"),
            renewed=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            version=meta.get("resourceVersion"),
            meta=meta,
        )

    def spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": self.acquired,
            "renewTime": self.renewed,
            "leaseTransitions": self.transitions,
        }


class LeaseConflict(Exception):
    """Another replica wrote the Lease first (HTTP 409): this write did not happen."""


class LeaseApi(Protocol):
    async def read(self, timeout: float) -> LeaseRecord | None:
        """The Lease, or None when there is none."""

    async def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        """Make the Lease; LeaseConflict when it exists."""

    async def replace(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        """Write the Lease if it is still at record.version; LeaseConflict otherwise."""


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def micro_time(moment: datetime) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One replica's side of the election. `acquire` waits until it holds the Lease, `keep`
    renews it until it is lost, `release` gives it up; `health` is what the probes see."""

    def __init__(
        self,
        api: LeaseApi,
        identity: str,
        where: str,
        timings: Timings | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not identity:
            raise ValueError("leader election needs this replica's identity (its pod name)")
        self.api = api
        self.identity = identity
        self.where = where  # "<namespace>/<name>", for the logs
        self.timings = timings or Timings()
        self.clock = clock or SystemClock()
        self.role: Role = "starting"
        self.operating = False  # set by the caller once the active replica reconciles
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0  # when the last successful renewal started
        self._last_round: float | None = None
        self._last_contact: float | None = None
        self._taken_from: str | None = None  # who held the Lease this replica took

    # --- what the other replicas hold ------------------------------------------------

    @property
    def acquire_budget(self) -> float:
        return (self.timings.renew_deadline_seconds - self.timings.retry_seconds) / 2

    @property
    def holder(self) -> str | None:
        return None if self._observed is None else self._observed.holder

    def _observe(self, record: LeaseRecord, at: float) -> None:
        """Remember the record, and when it changed as this replica's clock counts."""
        if self._observed is None or record.version != self._observed.version:
            self._observed_at = at
        self._observed = record

    def _expired(self, now: float) -> bool:
        record = self._observed
        if record is None or record.holder is None:
            return True
        return now >= self._observed_at + record.lease_seconds

    def _claim(self, record: LeaseRecord | None) -> LeaseRecord:
        now = micro_time(self.clock.wall())
        if record is not None and record.holder == self.identity:
            return replace(record, lease_seconds=self.timings.lease_seconds, renewed=now)
        transitions = 0 if record is None else record.transitions + 1
        return LeaseRecord(
            holder=self.identity,
            lease_seconds=self.timings.lease_seconds,
            acquired=now,
            renewed=now,
            transitions=transitions,
            version=None if record is None else record.version,
            meta={} if record is None else record.meta,
        )

    def _left(self, deadline: float) -> float:
        left = deadline - self.clock.monotonic()
        if left <= 0:
            raise TimeoutError("no time left for this round")
        return left

    async def _round(self, deadline: float) -> bool:
        """One look at the Lease, and a write when it is free, expired or this replica's:
        True when this replica holds it afterwards. Each request gets the time left until
        `deadline` (monotonic); API errors and timeouts propagate."""
        start = self.clock.monotonic()
        self._last_round = start
        record = await self.api.read(self._left(deadline))
        self._last_contact = start
        if record is None:
            try:
                mine = await self.api.create(self._claim(None), self._left(deadline))
            except LeaseConflict:
                return False
            self._observe(mine, start)
            self._taken_from = None
            return True
        self._observe(record, start)
        if record.holder not in (None, self.identity) and not self._expired(start):
            return False
        self._taken_from = record.holder
        try:
            mine = await self.api.replace(self._claim(record), self._left(deadline))
        except LeaseConflict:
            return False
        self._observe(mine, start)
        return True

    # --- the three phases --------------------------------------------------------------

    async def acquire(self, stopping: asyncio.Event | None = None) -> bool:
        """Wait until this replica holds the Lease (True), or until `stopping` is set
        (False). Says who it stands by for, each time that changes."""
        waiting_for: object = object()  # nobody yet, not even None
        failure = ""
        while stopping is None or not stopping.is_set():
            start = self.clock.monotonic()
            try:
                # Short enough that the first renewal, a retry period later, still has time.
                held = await self._round(start + self.acquire_budget)
            except Exception as exc:  # noqa: BLE001 - any API failure: try again
                held = False
                if str(exc) != failure:
                    failure = str(exc)
                    log.warning("cannot read Lease %s yet, retrying: %s", self.where, _short(exc))
            else:
                failure = ""
            if held:
                self.role = "active"
                self._renewed_at = start
                if self._taken_from is None:
                    came_from = "the Lease was free"
                elif self._taken_from == self.identity:
                    came_from = "it held the Lease before it restarted"
                else:
                    came_from = f"taking over from {self._taken_from}, whose lease ran out"
                log.info(
                    "became active: %s holds Lease %s (%s); reconciling now",
                    self.identity,
                    self.where,
                    came_from,
                )
                return True
            if self._last_contact is not None:
                self.role = "standby"
            # Said when the holder is known (not after losing a race to make the Lease)
            # and each time it changes, not at every look.
            record = self._observed
            if record is not None and record.holder is not None and record.holder != waiting_for:
                waiting_for = record.holder
                log.info(
                    "standing by for %s, which holds Lease %s; taking over if it is not "
                    "renewed for %ss",
                    record.holder,
                    self.where,
                    record.lease_seconds,
                )
            await self._pause(stopping)
        self.role = "stopped"
        return False

    async def _pause(self, stopping: asyncio.Event | None) -> None:
        if stopping is None:
            await self.clock.sleep(self.timings.retry_seconds)
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(self.timings.retry_seconds))
        stopper = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()

    async def keep(self) -> str:
        """Renew the Lease every retry period while this replica holds it. Returns why it
        was lost: another replica holds it, or it was not renewed within the renew
        deadline (counted from the start of the last renewal that succeeded, and woken
        for exactly then). The caller must stop reconciling at once."""
        timings = self.timings
        while True:
            deadline = self._renewed_at + timings.renew_deadline_seconds
            await self.clock.sleep(
                min(timings.retry_seconds, max(0.0, deadline - self.clock.monotonic()))
            )
            start = self.clock.monotonic()
            if start >= deadline:
                return f"not renewed for {start - self._renewed_at:.1f}s"
            try:
                held = await self._round(deadline)
            except Exception as exc:  # noqa: BLE001 - any API failure: retry until the deadline
                log.warning(
                    "could not renew Lease %s (%.1fs left): %s",
                    self.where,
                    max(0.0, deadline - self.clock.monotonic()),
                    _short(exc),
                )
                continue
            if held:
                self._renewed_at = start
            elif self.holder not in (None, self.identity):
                return f"{self.holder} holds it now"

    async def release(self) -> None:
        """Give the Lease up, if this replica still holds it, so that a standby takes over
        at its next try. Failing that, the lease runs out on its own."""
        self.role = "stopped"
        record = self._observed
        if record is None or record.holder != self.identity:
            return
        free = replace(record, holder=None, lease_seconds=1, renewed=micro_time(self.clock.wall()))
        try:
            await self.api.replace(free, self.timings.retry_seconds)
        except Exception as exc:  # noqa: BLE001 - it expires anyway
            log.warning("could not release Lease %s: %s", self.where, _short(exc))
            return
        log.info("released Lease %s", self.where)

    # --- probes ------------------------------------------------------------------------

    def health(self) -> tuple[bool, bool, str]:
        """(live, ready, what). Live while the election keeps running its rounds. Ready
        when this replica can do its part: the active one holds the Lease and reconciles;
        a standby has read the Lease within a lease duration, so it would notice the
        holder's death and take over. A standby is Ready on purpose: a rolling update
        waits for new pods to be Ready, and new pods are standbys until the old holder
        goes."""
        now = self.clock.monotonic()
        timings = self.timings
        live_window = max(30.0, 3.0 * timings.lease_seconds)
        live = self._last_round is None or now - self._last_round < live_window
        contact = self._last_contact is not None and now - self._last_contact < (
            timings.lease_seconds
        )
        if self.role == "active":
            ready = self.operating and now - self._renewed_at < timings.renew_deadline_seconds
            what = "active: holds the Lease" + ("" if self.operating else ", starting")
        elif self.role == "standby":
            ready = contact
            what = f"standby for {self.holder or 'another replica'}" + (
                "" if contact else ": cannot read the Lease"
            )
        else:
            ready = False
            what = self.role
        return live, ready, what


def _short(exc: BaseException) -> str:
    """An API failure in one line: the HTTP status of an ApiException, not its body."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return f"HTTP {status} {getattr(exc, 'reason', '')}".rstrip()
    return f"{type(exc).__name__}: {exc}"[:300]


# --- running the operator under the Lease ------------------------------------------------


async def lead(
    elector: Elector,
    operate: Callable[[], Awaitable[None]],
    lost: Callable[[str], None],
    stopping: asyncio.Event | None = None,
) -> None:
    """Stand by until this replica holds the Lease, then `operate` (kopf) while renewing it.

    - the Lease lost: `lost(reason)` at once, while the operator still runs; in the
      operator it ends the process, so that no handler outlives the Lease;
    - the operator returned (a signal: a rolling update, a drain): the Lease is released,
      so that a standby takes over at its next try;
    - the operator failed: the Lease is released too, and the error raised.
    """
    if not await elector.acquire(stopping):
        return
    # Made before the operator starts: kopf leaves alone the tasks that existed before it.
    keeper = asyncio.ensure_future(elector.keep())
    operator = asyncio.ensure_future(operate())
    try:
        done, _ = await asyncio.wait({keeper, operator}, return_when=asyncio.FIRST_COMPLETED)
        if keeper in done:
            lost(keeper.result())
            operator.cancel()
            await asyncio.gather(operator, return_exceptions=True)
            return
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    elector.operating = False
    try:
        operator.result()
    finally:
        await elector.release()
