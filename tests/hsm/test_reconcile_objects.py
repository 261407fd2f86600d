"""Key and VaultSecret reconciles driven against a real vault server (`strongroom dev`).

The operator's own code runs here: its reconcile functions and its pool client,
with a client certificate from the dev server's client CA, as the operator has.
Only the Kubernetes side is a fake: which vault a resource names, and the
Secrets an import reads.
"""

import asyncio
import base64
import copy
import itertools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from strongroom.builders.common import Owner
from strongroom.builders.pool import OperatorSettings
from strongroom.models import (
    API_VERSION,
    KeySpec,
    KeyStatus,
    VaultSecretSpec,
    VaultSecretStatus,
)
from strongroom.reconcile import key as key_reconcile
from strongroom.reconcile import secret as secret_reconcile
from strongroom.reconcile.context import Context
from strongroom.reconcile.errors import (
    AdoptionNotAllowed,
    ImportNotAllowed,
    InvalidSpec,
    NotReady,
    ReconcileError,
)
from strongroom.reconcile.poolapi import PoolApi, VaultAddress
from strongroom.tls import make_ca

from .conftest import DevServer
from .test_management_api import call, manage

NAMESPACE = "team-r"
CANARY = "canary-VmF1bHRTZWNyZXQ-never-in-status"
_vault_names = itertools.count(1)


class FakeKube:
    """The few reads a Key or VaultSecret reconcile makes of the cluster: Secrets, and the
    Vault's annotations when it adopts."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.vaults: dict[str, dict[str, Any]] = {}

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        if (api_version, kind) == (API_VERSION, "Vault"):
            assert namespace == NAMESPACE
            found = self.vaults.get(name)
        else:
            assert (api_version, kind) == ("v1", "Secret")
            found = self.secrets.get(name)
        return copy.deepcopy(found) if found is not None else None

    def allow_adopt(self, vault: VaultAddress, names: str | None) -> None:
        """The Vault as the cluster has it, with `names` in its strongroom.io/allow-adopt."""
        annotations = {} if names is None else {"strongroom.io/allow-adopt": names}
        self.vaults[vault.vault] = {
            "metadata": {"name": vault.vault, "namespace": NAMESPACE, "annotations": annotations}
        }


def new_vault(dev: DevServer, purge_protection: bool = False) -> VaultAddress:
    """A vault put to the pool as the Vault reconcile does it; nobody but admins in its list."""
    name = f"r{next(_vault_names)}"
    host = f"{name}-vault.{NAMESPACE}.svc"
    body = {"hosts": [host], "access": [], "retentionDays": 7, "purgeProtection": purge_protection}
    status, answer = manage(dev, "PUT", f"/_strongroom/v1/vaults/{name}", body)
    assert status == 201, answer
    return VaultAddress(dev.url, name, host)


def run(
    dev: DevServer,
    vault: VaultAddress,
    scenario: Callable[[Context], Awaitable[Any]],
    kube: FakeKube | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> Any:
    """Run a scenario with the operator's context pointed at `vault` on the dev server."""
    assert monkeypatch is not None

    async def address(*_: Any) -> VaultAddress:
        return vault

    for module in (key_reconcile, secret_reconcile):
        monkeypatch.setattr(module, "vault_address", address)
        monkeypatch.setattr(module, "vault_address_for_delete", address)

    async def main() -> Any:
        pools = PoolApi(Path(dev.ca).read_text(), dev.client_ca())
        ctx = Context(
            kube=kube or FakeKube(),  # type: ignore[arg-type]
            pools=pools,
            ca=make_ca("unused"),
            client_ca=make_ca("unused"),
            settings=OperatorSettings(image="unused"),
        )
        try:
            return await scenario(ctx)
        finally:
            await pools.close()

    return asyncio.run(main())


def data_plane(
    dev: DevServer, vault: VaultAddress, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    sep = "&" if "?" in path else "?"
    # As the operator: its client certificate holds every permission in every vault.
    return call(dev, method, f"{path}{sep}api-version=7.5", None, body, host=vault.host, admin=True)


def owner(name: str) -> Owner:
    return Owner("Key", name, NAMESPACE, str(uuid.uuid4()))


def key_spec(vault: VaultAddress, **fields: Any) -> KeySpec:
    return KeySpec.model_validate({"vaultRef": {"name": vault.vault}, "kty": "EC-HSM"} | fields)


def last(url: str) -> str:
    """The version at the end of a kid or secret id."""
    return url.rsplit("/", 1)[1]


def versions(dev: DevServer, vault: VaultAddress, name: str) -> list[str]:
    status, answer = data_plane(dev, vault, "GET", f"/keys/{name}/versions")
    assert status == 200, answer
    return [last(item["kid"]) for item in answer["value"]]


# --- Key -----------------------------------------------------------------------------------


def test_a_key_is_made_once_and_its_status_verifies_its_signatures(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource, spec = owner("signing"), key_spec(vault)

    async def twice(ctx: Context) -> tuple[KeyStatus, KeyStatus]:
        first = await key_reconcile.reconcile_key(ctx, resource, spec, KeyStatus(), 1)
        second = await key_reconcile.reconcile_key(ctx, resource, spec, first, 1)
        return first, second

    first, second = run(dev, vault, twice, monkeypatch=monkeypatch)
    assert first.kid == second.kid and first.current_version == second.current_version
    assert versions(dev, vault, "signing") == [first.current_version]
    assert first.kid == f"https://{vault.host}/keys/signing/{first.current_version}"
    assert second.conditions[-1].status == "True" and second.conditions[-1].reason == "KeyReady"

    # The public key in the status verifies what the vault signs.
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"strongroom")
    value = digest.finalize()
    status, answer = data_plane(
        dev,
        vault,
        "POST",
        f"/keys/signing/{first.current_version}/sign",
        {"alg": "ES256", "value": base64.urlsafe_b64encode(value).decode().rstrip("=")},
    )
    assert status == 200, answer
    raw = base64.urlsafe_b64decode(answer["value"] + "==")
    jwk = first.public_key
    assert jwk is not None and jwk.crv == "P-256" and jwk.x and jwk.y
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(base64.urlsafe_b64decode(jwk.x + "=="), "big"),
        int.from_bytes(base64.urlsafe_b64decode(jwk.y + "=="), "big"),
        ec.SECP256R1(),
    ).public_key()
    signature = utils.encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    public.verify(signature, value, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_an_operator_killed_between_create_and_status_makes_no_second_key(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource, spec = owner("crash"), key_spec(vault, kty="RSA-HSM", size=2048)

    async def killed_then_restarted(ctx: Context) -> KeyStatus:
        create = ctx.pools.create_key

        async def create_then_die(*args: Any) -> dict[str, Any]:
            await create(*args)  # the vault made the key in its HSM ...
            raise asyncio.CancelledError  # ... and the operator died before writing status

        monkeypatch.setattr(ctx.pools, "create_key", create_then_die)
        with pytest.raises(asyncio.CancelledError):
            await key_reconcile.reconcile_key(ctx, resource, spec, KeyStatus(), 1)
        monkeypatch.setattr(ctx.pools, "create_key", create)
        # Restarted, with the status still empty; two handlers racing make one key, too.
        results = await asyncio.gather(
            key_reconcile.reconcile_key(ctx, resource, spec, KeyStatus(), 1),
            key_reconcile.reconcile_key(ctx, resource, spec, KeyStatus(), 1),
        )
        assert results[0].kid == results[1].kid
        return results[0]

    status = run(dev, vault, killed_then_restarted, monkeypatch=monkeypatch)
    assert versions(dev, vault, "crash") == [status.current_version]


def test_concurrent_first_creates_make_one_key(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource, spec = owner("race"), key_spec(vault)

    async def racing(ctx: Context) -> list[KeyStatus]:
        return list(
            await asyncio.gather(
                *(
                    key_reconcile.reconcile_key(ctx, resource, spec, KeyStatus(), 1)
                    for _ in range(4)
                )
            )
        )

    results = run(dev, vault, racing, monkeypatch=monkeypatch)
    assert len({r.kid for r in results}) == 1
    assert len(versions(dev, vault, "race")) == 1


def test_enabled_expiry_and_key_ops_are_applied(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource = owner("changing")
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)

    async def change(ctx: Context) -> KeyStatus:
        status = await key_reconcile.reconcile_key(
            ctx, resource, key_spec(vault, kty="RSA-HSM"), KeyStatus(), 1
        )
        changed = key_spec(
            vault, kty="RSA-HSM", enabled=False, expires=expires.isoformat(), keyOps=["sign"]
        )
        return await key_reconcile.reconcile_key(ctx, resource, changed, status, 2)

    status = run(dev, vault, change, monkeypatch=monkeypatch)
    code, answer = data_plane(dev, vault, "GET", "/keys/changing")
    assert code == 200
    assert answer["attributes"]["enabled"] is False
    assert answer["attributes"]["exp"] == int(expires.timestamp())
    assert answer["key"]["key_ops"] == ["sign"]
    assert status.versions is not None and status.versions[0].enabled is False
    assert status.observed_generation == 2
    code, answer = data_plane(
        dev,
        vault,
        "POST",
        f"/keys/changing/{status.current_version}/sign",
        {"alg": "RS256", "value": "A" * 43},
    )
    assert code == 403 and "disabled" in answer["error"]["message"]

    async def enable_again(ctx: Context) -> KeyStatus:
        spec = key_spec(vault, kty="RSA-HSM")
        return await key_reconcile.reconcile_key(ctx, resource, spec, status, 3)

    run(dev, vault, enable_again, monkeypatch=monkeypatch)
    code, answer = data_plane(dev, vault, "GET", "/keys/changing")
    assert answer["attributes"]["enabled"] is True and "exp" not in answer["attributes"]
    assert sorted(answer["key"]["key_ops"]) == sorted(key_reconcile.KEY_OPS["RSA"])


def test_the_rotation_policy_is_set_and_the_status_follows_a_rotation(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource = owner("rotating")
    policy = {"timeAfterCreate": "P30D", "expiryTime": "P1Y"}
    spec = key_spec(vault, rotationPolicy=policy)

    async def first(ctx: Context) -> KeyStatus:
        return await key_reconcile.reconcile_key(ctx, resource, spec, KeyStatus(), 1)

    before = run(dev, vault, first, monkeypatch=monkeypatch)
    code, answer = data_plane(dev, vault, "GET", "/keys/rotating/rotationpolicy")
    assert code == 200
    assert answer["lifetimeActions"] == [
        {"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}}
    ]
    assert answer["attributes"]["expiryTime"] == "P1Y"
    code, answer = data_plane(dev, vault, "GET", "/keys/rotating")
    year = 365 * 86400
    assert abs(answer["attributes"]["exp"] - (answer["attributes"]["created"] + year)) < 60

    # The vault's maintenance task rotates with KeyStore.rotate, as this call does.
    code, rotated = data_plane(dev, vault, "POST", "/keys/rotating/rotate")
    assert code == 200, rotated

    async def again(ctx: Context) -> KeyStatus:
        return await key_reconcile.reconcile_key(ctx, resource, spec, before, 1)

    after = run(dev, vault, again, monkeypatch=monkeypatch)
    assert after.current_version == last(rotated["key"]["kid"]) != before.current_version
    assert after.versions is not None
    assert [v.version for v in after.versions] == [before.current_version, after.current_version]
    # The new version keeps the vault's expiry from the policy; the operator leaves it.
    code, answer = data_plane(dev, vault, "GET", "/keys/rotating")
    assert abs(answer["attributes"]["exp"] - (answer["attributes"]["created"] + year)) < 60

    async def without_policy(ctx: Context) -> KeyStatus:
        return await key_reconcile.reconcile_key(ctx, resource, key_spec(vault), after, 2)

    run(dev, vault, without_policy, monkeypatch=monkeypatch)
    code, answer = data_plane(dev, vault, "GET", "/keys/rotating/rotationpolicy")
    assert answer["lifetimeActions"] == []


def test_delete_leaves_a_recoverable_key_that_purge_protection_keeps(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev, purge_protection=True)
    resource, spec = owner("leaving"), key_spec(vault)

    async def create_and_delete(ctx: Context) -> KeyStatus:
        status = await key_reconcile.reconcile_key(ctx, resource, spec, KeyStatus(), 1)
        await key_reconcile.delete_key(ctx, resource, spec)
        await key_reconcile.delete_key(ctx, resource, spec)  # a re-run is harmless
        return status

    status = run(dev, vault, create_and_delete, monkeypatch=monkeypatch)
    assert data_plane(dev, vault, "GET", "/keys/leaving")[0] == 404
    code, deleted = data_plane(dev, vault, "GET", "/deletedkeys/leaving")
    assert code == 200 and last(deleted["key"]["kid"]) == status.current_version
    seven_days = 7 * 86400
    assert deleted["scheduledPurgeDate"] - deleted["deletedDate"] == seven_days
    code, answer = data_plane(dev, vault, "DELETE", "/deletedkeys/leaving")
    assert code == 403 and "purge protection" in answer["error"]["message"]
    code, answer = data_plane(dev, vault, "POST", "/deletedkeys/leaving/recover")
    assert code == 200 and last(answer["key"]["kid"]) == status.current_version


def test_a_key_deleted_through_the_api_is_recovered_while_its_resource_wants_it(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource, spec = owner("wanted"), key_spec(vault)

    async def create(ctx: Context) -> KeyStatus:
        return await key_reconcile.reconcile_key(ctx, resource, spec, KeyStatus(), 1)

    first = run(dev, vault, create, monkeypatch=monkeypatch)
    assert data_plane(dev, vault, "DELETE", "/keys/wanted")[0] == 200
    second = run(dev, vault, create, monkeypatch=monkeypatch)
    assert second.kid == first.kid
    assert data_plane(dev, vault, "GET", "/keys/wanted")[0] == 200


def test_a_key_of_another_owner_is_neither_taken_nor_deleted(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    code, made = data_plane(dev, vault, "POST", "/keys/taken/create", {"kty": "EC-HSM"})
    assert code == 200
    resource, spec = owner("taken"), key_spec(vault)

    async def try_it(ctx: Context) -> None:
        with pytest.raises(InvalidSpec) as caught:
            await key_reconcile.reconcile_key(ctx, resource, spec, KeyStatus(), 1)
        assert caught.value.reason == "KeyNameTaken"
        await key_reconcile.delete_key(ctx, resource, spec)

    run(dev, vault, try_it, monkeypatch=monkeypatch)
    code, answer = data_plane(dev, vault, "GET", "/keys/taken")
    assert code == 200 and answer["key"]["kid"] == made["key"]["kid"]


# --- adopting a key made through the vault's API -------------------------------------------

Events = list[tuple[str, str]]


def pool_owner(dev: DevServer, vault: VaultAddress, kind: str, name: str) -> str | None:
    """Who the pool says owns the object."""
    code, state = manage(dev, "GET", f"/_strongroom/v1/vaults/{vault.vault}/{kind}/{name}")
    assert code == 200, state
    found: str | None = state["owner"]
    return found


def reconcile_key(
    dev: DevServer,
    vault: VaultAddress,
    kube: FakeKube,
    monkeypatch: pytest.MonkeyPatch,
    resource: Owner,
    spec: KeySpec,
    events: Events,
    status: KeyStatus | None = None,
) -> KeyStatus | ReconcileError:
    """One reconcile of the Key as its handler runs it; its failure returned, not raised."""

    async def once(ctx: Context) -> KeyStatus | ReconcileError:
        try:
            return await key_reconcile.reconcile_key(
                ctx,
                resource,
                spec,
                status or KeyStatus(),
                1,
                notify=lambda reason, message: events.append((reason, message)),
            )
        except ReconcileError as exc:
            return exc

    result: KeyStatus | ReconcileError = run(dev, vault, once, kube, monkeypatch)
    return result


def test_a_key_made_through_the_api_is_adopted_with_the_vaults_consent_and_kept(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    kube = FakeKube()
    expires = int(datetime.now(UTC).timestamp()) + 30 * 86400
    code, made = data_plane(
        dev, vault, "POST", "/keys/legacy/create", {"kty": "EC-HSM", "attributes": {"exp": expires}}
    )
    assert code == 200, made
    code, rotated = data_plane(dev, vault, "POST", "/keys/legacy/rotate")
    assert code == 200, rotated
    made_versions = [last(made["key"]["kid"]), last(rotated["key"]["kid"])]
    resource, events = owner("legacy"), []
    adopting = key_spec(vault, adopt=True, keyOps=["sign"])

    refused = reconcile_key(dev, vault, kube, monkeypatch, resource, key_spec(vault), events)
    assert isinstance(refused, InvalidSpec) and refused.reason == "KeyNameTaken"
    assert "made through the vault's API" in refused.message
    assert "spec.adopt: true" in refused.message and "strongroom.io/allow-adopt" in refused.message

    for names, suggested in (
        (None, "strongroom.io/allow-adopt=legacy"),
        ("", "strongroom.io/allow-adopt=legacy"),
        ("other, payments", "'strongroom.io/allow-adopt=other, payments,legacy'"),
        ("legacy-2,legacyx", "strongroom.io/allow-adopt=legacy-2,legacyx,legacy"),
    ):
        kube.allow_adopt(vault, names)
        refused = reconcile_key(dev, vault, kube, monkeypatch, resource, adopting, events)
        assert isinstance(refused, AdoptionNotAllowed), refused
        assert refused.retry_after is not None  # the Vault's owner may consent later
        command = f"kubectl -n {NAMESPACE} annotate vault {vault.vault} --overwrite {suggested}"
        assert command in refused.message, refused.message
        assert pool_owner(dev, vault, "keys", "legacy") is None
    assert events == []

    kube.allow_adopt(vault, "other, LEGACY")  # names in a vault match in any case
    status = reconcile_key(dev, vault, kube, monkeypatch, resource, adopting, events)
    assert isinstance(status, KeyStatus), status
    assert status.conditions[-1].status == "True" and status.conditions[-1].reason == "KeyReady"
    assert status.versions is not None
    assert [v.version for v in status.versions] == made_versions
    assert status.current_version == made_versions[-1]
    assert status.kid == f"https://{vault.host}/keys/legacy/{made_versions[-1]}"
    assert sorted(versions(dev, vault, "legacy")) == sorted(made_versions)  # none made
    assert pool_owner(dev, vault, "keys", "legacy") == resource.uid
    # From now on the spec's: key operations set, and the expiry it does not set cleared.
    code, current = data_plane(dev, vault, "GET", "/keys/legacy")
    assert code == 200 and current["key"]["key_ops"] == ["sign"]
    assert "exp" not in current["attributes"]
    [(reason, message)] = events
    assert reason == "Adopted" and f"key legacy of vault {vault.vault}" in message
    assert "2 version(s) kept" in message and made_versions[-1] in message

    # A later reconcile is an ordinary one: no second Event, even with the consent withdrawn.
    kube.allow_adopt(vault, None)
    again = reconcile_key(dev, vault, kube, monkeypatch, resource, adopting, events, status)
    assert isinstance(again, KeyStatus) and again.kid == status.kid and len(events) == 1

    # The key is the Key's: deleting the resource soft-deletes it.
    async def delete(ctx: Context) -> None:
        await key_reconcile.delete_key(ctx, resource, adopting)

    run(dev, vault, delete, kube, monkeypatch)
    assert data_plane(dev, vault, "GET", "/keys/legacy")[0] == 404
    assert data_plane(dev, vault, "GET", "/deletedkeys/legacy")[0] == 200


@pytest.mark.parametrize(
    "made,spec,found,wanted",
    [
        (
            {"kty": "RSA", "key_size": 3072},
            {"kty": "RSA-HSM"},
            "an RSA key of 3072 bits",
            "an RSA-HSM key of 2048 bits",
        ),
        (
            {"kty": "EC", "crv": "P-384"},
            {"kty": "EC-HSM"},
            "an EC key on curve P-384",
            "an EC-HSM key on curve P-256",
        ),
        (
            {"kty": "oct-HSM", "key_size": 128},
            {"kty": "oct-HSM", "size": 256},
            "an oct-HSM key of 128 bits",
            "an oct-HSM key of 256 bits",
        ),
        (
            {"kty": "RSA-HSM"},
            {"kty": "EC-HSM", "curve": "P-521"},
            "an RSA-HSM key of 2048 bits",
            "an EC-HSM key on curve P-521",
        ),
    ],
    ids=["rsa-size", "ec-curve", "oct-size", "family"],
)
def test_a_key_unlike_the_spec_is_not_adopted(
    dev: DevServer,
    monkeypatch: pytest.MonkeyPatch,
    made: dict[str, Any],
    spec: dict[str, Any],
    found: str,
    wanted: str,
) -> None:
    vault = new_vault(dev)
    kube = FakeKube()
    kube.allow_adopt(vault, "*")
    code, answer = data_plane(dev, vault, "POST", "/keys/unlike/create", made)
    assert code == 200, answer
    events: Events = []
    resource = owner("unlike")
    refused = reconcile_key(
        dev, vault, kube, monkeypatch, resource, key_spec(vault, adopt=True, **spec), events
    )
    assert isinstance(refused, InvalidSpec) and refused.reason == "AdoptionMismatch", refused
    assert f"is {found}, but this Key's spec asks for {wanted}" in refused.message
    assert pool_owner(dev, vault, "keys", "unlike") is None and events == []

    # A Key made again with what the message names adopts it.
    matching = {"kty": made["kty"]} | (
        {"curve": made.get("crv", "P-256")}
        if made["kty"].startswith("EC")
        else {"size": made.get("key_size", 2048)}
    )
    status = reconcile_key(
        dev, vault, kube, monkeypatch, resource, key_spec(vault, adopt=True, **matching), events
    )
    assert isinstance(status, KeyStatus), status
    assert status.current_version == last(answer["key"]["kid"])
    assert [reason for reason, _ in events] == ["Adopted"]


def test_a_key_owned_by_another_resource_or_deleted_is_not_adopted(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    kube = FakeKube()
    kube.allow_adopt(vault, "*")
    events: Events = []
    first = owner("shared")
    made = reconcile_key(dev, vault, kube, monkeypatch, first, key_spec(vault), events)
    assert isinstance(made, KeyStatus), made
    second = owner("shared")
    refused = reconcile_key(
        dev, vault, kube, monkeypatch, second, key_spec(vault, adopt=True), events
    )
    assert isinstance(refused, InvalidSpec) and refused.reason == "KeyNameTaken", refused
    assert "belongs to another resource" in refused.message
    assert pool_owner(dev, vault, "keys", "shared") == first.uid

    # Another resource adopts the key between this reconcile's look and its adoption.
    assert data_plane(dev, vault, "POST", "/keys/raced/create", {"kty": "EC"})[0] == 200
    raced, other = owner("raced"), str(uuid.uuid4())

    async def lose_the_race(ctx: Context) -> ReconcileError:
        adopt = ctx.pools.adopt_key

        async def after_another(vault: VaultAddress, name: str, uid: str) -> dict[str, Any]:
            assert (await adopt(vault, name, other))["owner"] == other
            return await adopt(vault, name, uid)

        monkeypatch.setattr(ctx.pools, "adopt_key", after_another)
        with pytest.raises(InvalidSpec) as caught:
            await key_reconcile.reconcile_key(
                ctx, raced, key_spec(vault, adopt=True), KeyStatus(), 1
            )
        return caught.value

    lost = run(dev, vault, lose_the_race, kube, monkeypatch)
    assert lost.reason == "KeyNameTaken" and "belongs to another resource" in lost.message
    assert pool_owner(dev, vault, "keys", "raced") == other

    # A deleted key is not adopted; recovered, it is.
    assert data_plane(dev, vault, "POST", "/keys/dropped/create", {"kty": "EC"})[0] == 200
    assert data_plane(dev, vault, "DELETE", "/keys/dropped")[0] == 200
    dropped = owner("dropped")
    spec = key_spec(vault, adopt=True)
    refused = reconcile_key(dev, vault, kube, monkeypatch, dropped, spec, events)
    assert isinstance(refused, ReconcileError) and refused.reason == "KeyDeleted", refused
    assert "/deletedkeys/dropped/recover" in refused.message
    assert pool_owner(dev, vault, "keys", "dropped") is None
    assert data_plane(dev, vault, "POST", "/deletedkeys/dropped/recover")[0] == 200
    adopted = reconcile_key(dev, vault, kube, monkeypatch, dropped, spec, events)
    assert isinstance(adopted, KeyStatus), adopted
    assert pool_owner(dev, vault, "keys", "dropped") == dropped.uid


# --- VaultSecret ---------------------------------------------------------------------------


def secret_owner(name: str) -> Owner:
    return Owner("VaultSecret", name, NAMESPACE, str(uuid.uuid4()))


def secret_spec(vault: VaultAddress, source: dict[str, Any], **fields: Any) -> VaultSecretSpec:
    return VaultSecretSpec.model_validate(
        {"vaultRef": {"name": vault.vault}, "source": source} | fields
    )


def secret_value(dev: DevServer, vault: VaultAddress, name: str) -> str:
    code, answer = data_plane(dev, vault, "GET", f"/secrets/{name}")
    assert code == 200, answer
    value: str = answer["value"]
    return value


def test_a_generated_secret_is_made_once_and_its_status_holds_no_value(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource = secret_owner("generated")
    spec = secret_spec(vault, {"generate": {"length": 24, "encoding": "hex"}}, contentType="x")

    async def twice(ctx: Context) -> tuple[VaultSecretStatus, VaultSecretStatus]:
        first = await secret_reconcile.reconcile_secret(ctx, resource, spec, VaultSecretStatus(), 1)
        second = await secret_reconcile.reconcile_secret(ctx, resource, spec, first, 1)
        return first, second

    first, second = run(dev, vault, twice, monkeypatch=monkeypatch)
    assert first.id == second.id and first.current_version == second.current_version
    assert first.id == f"https://{vault.host}/secrets/generated/{first.current_version}"
    value = secret_value(dev, vault, "generated")
    assert len(value) == 48 and int(value, 16) >= 0
    assert value not in repr(second.wire()) and value not in dev.log_text()

    alphanumeric = secret_spec(vault, {"generate": {"length": 32, "encoding": "alphanumeric"}})

    async def other(ctx: Context) -> VaultSecretStatus:
        return await secret_reconcile.reconcile_secret(
            ctx, secret_owner("password"), alphanumeric, VaultSecretStatus(), 1
        )

    run(dev, vault, other, monkeypatch=monkeypatch)
    password = secret_value(dev, vault, "password")
    assert len(password) == 43 and password.isalnum()


def test_a_generated_secret_rotates_when_due_once_and_the_old_version_stays(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource = secret_owner("rotating")
    spec = secret_spec(
        vault, {"generate": {"length": 24, "encoding": "hex"}}, rotation={"rotateAfter": "PT5M"}
    )

    async def scenario(ctx: Context) -> list[VaultSecretStatus]:
        made = await secret_reconcile.reconcile_secret(ctx, resource, spec, VaultSecretStatus(), 1)
        assert made.current_version_created is not None
        created = made.current_version_created.timestamp()
        early = await secret_reconcile.reconcile_secret(
            ctx, resource, spec, made, 1, now=created + 299
        )
        due = await secret_reconcile.reconcile_secret(
            ctx, resource, spec, early, 1, now=created + 300
        )
        # The operator killed before writing that status: the next reconcile starts from the
        # old one and finds the rotation made (the new version is minutes from due).
        retried = await secret_reconcile.reconcile_secret(ctx, resource, spec, early, 1)
        return [made, early, due, retried]

    made, early, due, retried = run(dev, vault, scenario, monkeypatch=monkeypatch)
    assert made.next_rotation is not None and made.current_version_created is not None
    assert made.next_rotation - made.current_version_created == timedelta(minutes=5)
    assert early.current_version == made.current_version
    assert due.current_version != made.current_version
    assert retried.current_version == due.current_version
    assert due.next_rotation is not None and due.current_version_created is not None
    assert due.next_rotation - due.current_version_created == timedelta(minutes=5)
    code, listed = data_plane(dev, vault, "GET", "/secrets/rotating/versions")
    assert code == 200, listed
    assert sorted(last(item["id"]) for item in listed["value"]) == sorted(
        [made.current_version, due.current_version]
    )
    before = data_plane(dev, vault, "GET", f"/secrets/rotating/{made.current_version}")[1]["value"]
    after = secret_value(dev, vault, "rotating")
    assert len(after) == 48 and after != before
    assert after not in repr(due.wire()) and after not in dev.log_text()


def test_a_secret_is_imported_once_from_a_kubernetes_secret(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    kube = FakeKube()
    resource = secret_owner("imported")
    spec = secret_spec(vault, {"fromSecret": {"name": "source", "key": "password"}})

    async def refused(ctx: Context) -> None:
        with pytest.raises(ImportNotAllowed):
            await secret_reconcile.reconcile_secret(ctx, resource, spec, VaultSecretStatus(), 1)

    run(dev, vault, refused, kube, monkeypatch)  # no Secret at all
    kube.secrets["source"] = {"data": {"password": base64.b64encode(CANARY.encode()).decode()}}
    run(dev, vault, refused, kube, monkeypatch)  # a Secret that does not opt in
    code, _ = data_plane(dev, vault, "GET", "/secrets/imported")
    assert code == 404  # nothing was read into the vault
    kube.secrets["source"]["metadata"] = {"annotations": {"strongroom.io/allow-import": "imported"}}

    async def reconcile(ctx: Context) -> VaultSecretStatus:
        return await secret_reconcile.reconcile_secret(ctx, resource, spec, VaultSecretStatus(), 1)

    status = run(dev, vault, reconcile, kube, monkeypatch)
    assert secret_value(dev, vault, "imported") == CANARY
    assert CANARY not in repr(status.wire()) and CANARY not in dev.log_text()
    # Imported once: a later change of the Kubernetes Secret is not followed.
    kube.secrets["source"]["data"] = {"password": base64.b64encode(b"changed").decode()}
    again = run(dev, vault, reconcile, kube, monkeypatch)
    assert again.current_version == status.current_version
    assert secret_value(dev, vault, "imported") == CANARY


def test_an_external_secret_is_only_reported_and_never_deleted(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource = secret_owner("external")
    spec = secret_spec(vault, {"external": {}})

    async def waiting(ctx: Context) -> None:
        with pytest.raises(NotReady) as caught:
            await secret_reconcile.reconcile_secret(ctx, resource, spec, VaultSecretStatus(), 1)
        assert caught.value.reason == "WaitingForValue"

    run(dev, vault, waiting, monkeypatch=monkeypatch)
    code, answer = data_plane(dev, vault, "PUT", "/secrets/external", {"value": CANARY})
    assert code == 200

    async def reported(ctx: Context) -> VaultSecretStatus:
        status = await secret_reconcile.reconcile_secret(
            ctx, resource, spec, VaultSecretStatus(), 1
        )
        await secret_reconcile.delete_secret(ctx, resource, spec)
        return status

    status = run(dev, vault, reported, monkeypatch=monkeypatch)
    assert status.current_version == last(answer["id"])
    assert secret_value(dev, vault, "external") == CANARY


def test_delete_soft_deletes_a_secret_the_resource_made(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev, purge_protection=True)
    resource = secret_owner("short-lived")
    spec = secret_spec(vault, {"generate": {}})

    async def create_and_delete(ctx: Context) -> None:
        await secret_reconcile.reconcile_secret(ctx, resource, spec, VaultSecretStatus(), 1)
        await secret_reconcile.delete_secret(ctx, resource, spec)

    run(dev, vault, create_and_delete, monkeypatch=monkeypatch)
    assert data_plane(dev, vault, "GET", "/secrets/short-lived")[0] == 404
    assert data_plane(dev, vault, "GET", "/deletedsecrets/short-lived")[0] == 200
    assert data_plane(dev, vault, "DELETE", "/deletedsecrets/short-lived")[0] == 403


def test_a_secret_set_through_the_api_is_adopted_kept_and_then_rotated(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    kube = FakeKube()
    body = {"value": CANARY, "contentType": "text/plain"}
    code, set_ = data_plane(dev, vault, "PUT", "/secrets/legacy-secret", body)
    assert code == 200, set_
    resource, events = secret_owner("legacy-secret"), []
    generate = {"generate": {"length": 24, "encoding": "hex"}}

    def attempt(spec: VaultSecretSpec, now: float | None = None) -> Any:
        """One reconcile as the handler runs it; its failure returned, not raised."""

        async def once(ctx: Context) -> VaultSecretStatus | ReconcileError:
            try:
                return await secret_reconcile.reconcile_secret(
                    ctx,
                    resource,
                    spec,
                    VaultSecretStatus(),
                    1,
                    now=now,
                    notify=lambda reason, message: events.append((reason, message)),
                )
            except ReconcileError as exc:
                return exc

        return run(dev, vault, once, kube, monkeypatch)

    refused = attempt(secret_spec(vault, generate))
    assert isinstance(refused, InvalidSpec) and refused.reason == "SecretNameTaken"
    assert "spec.adopt: true" in refused.message
    refused = attempt(secret_spec(vault, generate, adopt=True))
    assert isinstance(refused, AdoptionNotAllowed), refused
    assert "strongroom.io/allow-adopt=legacy-secret" in refused.message
    kube.allow_adopt(vault, "legacy-secret")
    refused = attempt(secret_spec(vault, generate, adopt=True, contentType="application/json"))
    assert isinstance(refused, InvalidSpec) and refused.reason == "AdoptionMismatch", refused
    assert "has 'text/plain', but this VaultSecret's spec.contentType is" in refused.message
    assert pool_owner(dev, vault, "secrets", "legacy-secret") is None and events == []

    adopting = secret_spec(vault, generate, adopt=True, rotation={"rotateAfter": "PT5M"})
    status = attempt(adopting)
    assert isinstance(status, VaultSecretStatus), status
    assert status.current_version == last(set_["id"])
    assert status.id == f"https://{vault.host}/secrets/legacy-secret/{last(set_['id'])}"
    assert status.conditions[-1].reason == "SecretReady"
    assert secret_value(dev, vault, "legacy-secret") == CANARY  # the value is kept
    assert CANARY not in repr(status.wire()) and CANARY not in repr(events)
    assert CANARY not in dev.log_text()
    assert pool_owner(dev, vault, "secrets", "legacy-secret") == resource.uid
    assert [reason for reason, _ in events] == ["Adopted"]

    # It rotates as a generated secret from now on: a new value from the HSM, once due.
    assert status.current_version_created is not None
    due = status.current_version_created.timestamp() + 300
    rotated = attempt(adopting, due)
    assert isinstance(rotated, VaultSecretStatus), rotated
    assert rotated.current_version != status.current_version
    value = secret_value(dev, vault, "legacy-secret")
    assert value != CANARY and len(value) == 48
    code, kept = data_plane(dev, vault, "GET", f"/secrets/legacy-secret/{status.current_version}")
    assert code == 200 and kept["value"] == CANARY
    assert len(events) == 1
