"""spec.rotation of a generated VaultSecret: when a new version is due, what the pool is asked,
and what status says. The pool here keeps versions in memory with the management API's
rule (a rotation names the version it replaces); tests/hsm has the real one."""

import asyncio
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from strongroom.builders.common import Owner
from strongroom.models import VaultSecretSpec, VaultSecretStatus
from strongroom.operator import handlers
from strongroom.reconcile import secret as secret_reconcile
from strongroom.reconcile.errors import InvalidSpec
from strongroom.reconcile.poolapi import VaultAddress
from strongroom.reconcile.secret import (
    SecretState,
    reconcile_secret,
    rotate_after_seconds,
    rotation_plan,
)

UID = "5d1f-uid"
NOW = 1_800_000_000
DAY = 86400
VAULT = VaultAddress("https://pool-pool.ns.svc", "payments", "payments-vault.ns.svc")
OWNER = Owner("VaultSecret", "db-password", "ns", UID)


def spec(rotate_after: str | None = "P30D", **source: Any) -> VaultSecretSpec:
    body: dict[str, Any] = {
        "vaultRef": {"name": "payments"},
        "source": source or {"generate": {"length": 24, "encoding": "hex"}},
        "contentType": "text/plain",
    }
    if rotate_after is not None:
        body["rotation"] = {"rotateAfter": rotate_after}
    return VaultSecretSpec.model_validate(body)


def state(created: int | None, *, deleted: bool = False) -> SecretState:
    return SecretState(
        "db-password", UID, "https://v/secrets/db-password/b", ("a", "b"), deleted, created
    )


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("P30D", 30 * DAY),
        ("P1Y", 365 * DAY),
        ("P1M", 30 * DAY),
        ("P2W", 14 * DAY),
        ("PT12H", 12 * 3600),
        ("PT5M", 300),
        ("PT1M", 60),
        ("P1DT6H30M", DAY + 6 * 3600 + 1800),
    ],
)
def test_rotate_after_is_counted_as_the_vault_counts_durations(text: str, seconds: int) -> None:
    assert rotate_after_seconds(text) == seconds


@pytest.mark.parametrize("text", ["P", "PT", "PT0M", "P0D", "PT30S", "30D", "P1.5D", "p30d"])
def test_a_rotate_after_that_is_no_duration_of_a_minute_or_more_is_refused(text: str) -> None:
    with pytest.raises(InvalidSpec, match="rotateAfter"):
        rotate_after_seconds(text)


def test_a_rotation_is_due_once_the_current_version_is_rotate_after_old() -> None:
    created = NOW - 10 * DAY
    plan = rotation_plan(spec("P30D"), state(created), NOW)
    assert not plan.due and plan.next_at == created + 30 * DAY
    assert not rotation_plan(spec("P30D"), state(created), created + 30 * DAY - 1).due
    assert rotation_plan(spec("P30D"), state(created), created + 30 * DAY).due
    assert rotation_plan(spec("P10D"), state(created), NOW).due


def test_nothing_is_due_without_rotation_a_creation_time_or_a_live_generated_secret() -> None:
    old = NOW - 400 * DAY
    for plan in (
        rotation_plan(spec(None), state(old), NOW),
        rotation_plan(spec("P1D"), state(None), NOW),
        rotation_plan(spec("P1D"), state(old, deleted=True), NOW),
        rotation_plan(spec("P1D", external={}), state(old), NOW),
    ):
        assert not plan.due and plan.next_at is None


class Pool:
    """The management API's secret calls, in memory, with the same rules."""

    def __init__(self, created: int) -> None:
        self.versions: list[tuple[str, int]] = [(uuid.uuid4().hex, created)]
        self.clock = created
        self.rotations: list[dict[str, Any]] = []

    def answer(self) -> dict[str, Any]:
        return {
            "name": "db-password",
            "owner": UID,
            "id": f"https://{VAULT.host}/secrets/db-password/{self.versions[-1][0]}",
            "versions": [{"version": v, "created": c, "enabled": True} for v, c in self.versions],
            "deleted": None,
        }

    async def get_secret(self, vault: VaultAddress, name: str) -> dict[str, Any]:
        assert (vault, name) == (VAULT, "db-password")
        answer = self.answer()
        await asyncio.sleep(0)  # the network: another reconcile may run meanwhile
        return answer

    async def rotate_secret(
        self, vault: VaultAddress, name: str, owner: str, current: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        assert (vault, name, owner) == (VAULT, "db-password", UID)
        self.rotations.append(body | {"ifCurrentVersion": current})
        if self.versions[-1][0] == current:
            self.versions.append((uuid.uuid4().hex, self.clock))
        return self.answer()


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Pool:
    async def address(*_: Any) -> VaultAddress:
        return VAULT

    monkeypatch.setattr(secret_reconcile, "vault_address", address)
    return Pool(NOW - 31 * DAY)


def reconcile(pool: Pool, the_spec: VaultSecretSpec, status: VaultSecretStatus, now: float) -> Any:
    ctx: Any = SimpleNamespace(pools=pool)
    return asyncio.run(reconcile_secret(ctx, OWNER, the_spec, status, 2, now=now))


def test_a_due_secret_gets_one_new_version_and_status_shows_the_next_rotation(
    pool: Pool,
) -> None:
    first = pool.versions[0][0]
    pool.clock = NOW
    status = reconcile(pool, spec("P30D"), VaultSecretStatus(current_version=first), NOW)
    assert len(pool.versions) == 2
    assert pool.rotations == [
        {
            "generate": {"length": 24, "encoding": "hex"},
            "contentType": "text/plain",
            "ifCurrentVersion": first,
        }
    ]
    new = pool.versions[-1][0]
    assert status.current_version == new and status.id.endswith(f"/{new}")
    assert status.current_version_created == datetime.fromtimestamp(NOW, UTC)
    assert status.next_rotation == datetime.fromtimestamp(NOW + 30 * DAY, UTC)
    wire = status.wire()
    assert wire["nextRotation"] == datetime.fromtimestamp(NOW + 30 * DAY, UTC).isoformat().replace(
        "+00:00", "Z"
    )
    ready = status.conditions[-1]
    assert ready.status == "True" and new in ready.message and "Next rotation at" in ready.message

    # A minute later, and a day later: not due, nothing asked.
    for later in (NOW + 60, NOW + DAY):
        again = reconcile(pool, spec("P30D"), status, later)
        assert len(pool.rotations) == 1 and again.current_version == new
        assert again.next_rotation == status.next_rotation


def test_a_rotation_retried_after_it_was_made_makes_no_second_version(pool: Pool) -> None:
    """The operator dies after the pool made the version, before status was written: the
    next reconcile sees the new version, not due. And a request repeated with the version it
    replaced (a retry racing another reconcile) changes nothing at the pool."""
    first = pool.versions[0][0]
    pool.clock = NOW
    reconcile(pool, spec("P30D"), VaultSecretStatus(), NOW)
    assert len(pool.versions) == 2
    reconcile(pool, spec("P30D"), VaultSecretStatus(current_version=first), NOW + 5)
    assert len(pool.versions) == 2 and len(pool.rotations) == 1
    answer = asyncio.run(
        pool.rotate_secret(VAULT, "db-password", UID, first, {"generate": {"length": 24}})
    )
    assert len(pool.versions) == 2 and answer["versions"][-1]["version"] != first


def test_concurrent_reconciles_of_a_due_secret_make_one_version(pool: Pool) -> None:
    """The timer and an update handler may run at once: both see the same current version,
    both ask; the pool makes one."""
    pool.clock = NOW

    async def both() -> list[VaultSecretStatus]:
        ctx: Any = SimpleNamespace(pools=pool)
        return await asyncio.gather(
            *(
                reconcile_secret(ctx, OWNER, spec("P30D"), VaultSecretStatus(), 2, now=NOW)
                for _ in range(2)
            )
        )

    statuses = asyncio.run(both())
    assert len(pool.versions) == 2 and len(pool.rotations) == 2
    assert {s.current_version for s in statuses} == {pool.versions[-1][0]}


def test_without_rotation_the_status_has_no_next_rotation(pool: Pool) -> None:
    status = reconcile(pool, spec(None), VaultSecretStatus(), NOW)
    assert pool.rotations == [] and status.next_rotation is None
    assert (
        "nextRotation" not in status.wire() and "Next rotation" not in status.conditions[-1].message
    )
    assert status.current_version_created == datetime.fromtimestamp(NOW - 31 * DAY, UTC)


def test_an_invalid_rotate_after_reaching_the_operator_is_an_invalid_spec(pool: Pool) -> None:
    bad = spec("P30D").model_copy(
        update={"rotation": spec("P30D").rotation.model_copy(update={"rotate_after": "PT0M"})}  # type: ignore[union-attr]
    )
    with pytest.raises(InvalidSpec, match="shorter than a minute"):
        reconcile(pool, bad, VaultSecretStatus(), NOW)
    assert pool.rotations == []


# --- the handler: status written, nextRotation cleared, an Event on a new version ------


class _Patch:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {}


def _body(the_spec: VaultSecretSpec, status: dict[str, Any]) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "strongroom.io/v1alpha1",
            "kind": "VaultSecret",
            "metadata": {"name": OWNER.name, "namespace": "ns", "uid": UID, "generation": 2},
            "spec": the_spec.wire(),
            "status": status,
        }
    )


def test_the_handler_clears_next_rotation_and_posts_an_event_on_a_new_version(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: events.append(kw))
    monkeypatch.setattr(secret_reconcile.time, "time", lambda: NOW)
    memo: Any = {"context": SimpleNamespace(pools=pool)}
    first = pool.versions[0][0]
    pool.clock = NOW

    patch = _Patch()
    body = _body(spec("P30D"), {"currentVersion": first})
    asyncio.run(handlers.vault_secret(body=body, patch=patch, memo=memo))
    new = pool.versions[-1][0]
    assert patch.status["currentVersion"] == new and "nextRotation" in patch.status
    assert events == [
        {
            "type": "Normal",
            "reason": "NewVersion",
            "message": f"The secret's current version is now {new} (was {first}).",
        }
    ]

    # spec.rotation removed: nextRotation goes from the status, and no Event.
    patch = _Patch()
    body = _body(spec(None), {"currentVersion": new, "nextRotation": "2027-01-01T00:00:00Z"})
    asyncio.run(handlers.vault_secret(body=body, patch=patch, memo=memo))
    assert patch.status["nextRotation"] is None and len(events) == 1
