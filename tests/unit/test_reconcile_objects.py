"""Pure decisions of the Key and VaultSecret reconciles: what to create, change, delete."""

import asyncio
import base64
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from strongroom.builders.common import Owner
from strongroom.models import API_VERSION, KeySpec, KeyStatus, VaultSecretSpec
from strongroom.operator import handlers
from strongroom.reconcile import key as key_reconcile
from strongroom.reconcile.adopt import adoption_allowed, not_allowed
from strongroom.reconcile.errors import (
    InvalidSpec,
    NotReady,
    PoolApiError,
    ReconcileError,
    classify,
)
from strongroom.reconcile.key import (
    KeyState,
    KeyVersionState,
    PolicyUpdate,
    VersionUpdate,
    check_adoptable,
    check_owner,
    check_spec,
    create_body,
    desired_policy,
    duration_seconds,
    key_name,
    key_status,
    key_updates,
    should_delete,
)
from strongroom.reconcile.poolapi import VaultAddress
from strongroom.reconcile.secret import (
    SecretState,
    check_adopt_source,
    generate_body,
    imported_value,
    source_of,
)
from strongroom.reconcile.secret import check_adoptable as check_adoptable_secret
from strongroom.reconcile.secret import check_owner as check_secret_owner
from strongroom.reconcile.secret import should_delete as should_delete_secret
from strongroom.vault.secrets import alphanumeric_length, encode_random

UID = "0b9c0c3e-uid"
NOW = 1_800_000_000
DAY = 86400
CANARY = "canary-c2VjcmV0-not-in-messages"


def spec(**fields: Any) -> KeySpec:
    return KeySpec.model_validate({"vaultRef": {"name": "v"}, "kty": "EC-HSM"} | fields)


def version(
    v: str, *, enabled: bool = True, exp: int | None = None, ops: tuple[str, ...] = ("sign",)
) -> KeyVersionState:
    return KeyVersionState(v, NOW, enabled, None, exp, ops)


def state(*versions: KeyVersionState, policy: Any = None, owner: str = UID) -> KeyState:
    return KeyState(
        "k", owner, {"kid": "https://v/keys/k/b", "kty": "EC-HSM"}, versions, policy, False
    )


IN_SYNC = state(version("a", ops=("sign", "verify")), version("b", ops=("sign", "verify")))


def test_a_key_is_named_after_its_resource_unless_spec_names_it() -> None:
    owner = Owner("Key", "signing", "ns", UID)
    assert key_name(owner, spec()) == "signing"
    assert key_name(owner, spec(keyName="other")) == "other"


@pytest.mark.parametrize(
    "fields,expected",
    [
        ({}, {"kty": "EC-HSM", "crv": "P-256", "key_ops": ["sign", "verify"]}),
        ({"kty": "RSA"}, {"kty": "RSA", "key_size": 2048}),
        ({"kty": "oct-HSM"}, {"kty": "oct-HSM", "key_size": 256}),
        (
            {"kty": "RSA-HSM", "size": 4096, "keyOps": ["sign"]},
            {"key_size": 4096, "key_ops": ["sign"]},
        ),
        ({"curve": "P-384"}, {"crv": "P-384"}),
    ],
)
def test_what_the_vault_is_asked_to_make(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = create_body(spec(**fields), NOW)
    assert body | expected == body
    assert body["attributes"] == {"enabled": True, "nbf": None, "exp": None}


def test_a_new_key_gets_its_expiry_from_the_spec_or_the_policy() -> None:
    expires = datetime.fromtimestamp(NOW + DAY, UTC)
    body = create_body(spec(expires=expires.isoformat(), enabled=False), NOW)
    assert body["attributes"] == {"enabled": False, "nbf": None, "exp": NOW + DAY}
    policy = {"timeAfterCreate": "P30D", "expiryTime": "P1Y"}
    body = create_body(spec(rotationPolicy=policy), NOW)
    assert body["attributes"]["exp"] == NOW + 365 * DAY


def test_durations_are_counted_as_the_vault_counts_them() -> None:
    assert duration_seconds("P90D") == 90 * DAY
    assert duration_seconds("P1Y2M1W") == (365 + 60 + 7) * DAY
    with pytest.raises(InvalidSpec):
        duration_seconds("P")


@pytest.mark.parametrize(
    "fields,words",
    [
        ({"keyOps": ["encrypt"]}, "cannot encrypt"),
        (
            {
                "expires": "2030-01-01T00:00:00Z",
                "rotationPolicy": {"timeAfterCreate": "P1D", "expiryTime": "P2D"},
            },
            "keep one",
        ),
        ({"rotationPolicy": {"timeBeforeExpiry": "P30D"}}, "needs spec.rotationPolicy.expiryTime"),
        (
            {"rotationPolicy": {"timeBeforeExpiry": "P30D", "expiryTime": "P30D"}},
            "shorter than expiryTime",
        ),
        ({"rotationPolicy": {"timeAfterCreate": "P"}}, "not an ISO 8601 duration"),
    ],
)
def test_specs_that_cannot_work_are_refused(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        check_spec(spec(**fields))
    assert words in caught.value.message and caught.value.retry_after is None


def test_a_sound_spec_passes() -> None:
    check_spec(spec(rotationPolicy={"timeBeforeExpiry": "P30D", "expiryTime": "P1Y"}))
    check_spec(spec(kty="RSA-HSM", keyOps=["sign", "decrypt"]))


def test_a_key_in_step_with_its_spec_needs_nothing() -> None:
    assert key_updates(spec(), IN_SYNC) == []


def test_disabling_reaches_every_version_and_expiry_only_the_current_one() -> None:
    expires = datetime.fromtimestamp(NOW + DAY, UTC)
    updates = key_updates(spec(enabled=False, expires=expires.isoformat()), IN_SYNC)
    assert updates == [
        VersionUpdate("a", {"attributes": {"enabled": False}}),
        VersionUpdate("b", {"attributes": {"enabled": False, "exp": NOW + DAY}}),
    ]


def test_key_ops_and_a_cleared_expiry_are_put_on_the_current_version() -> None:
    current = state(version("a", exp=NOW, ops=("sign", "verify")))
    assert key_updates(spec(keyOps=["sign"]), current) == [
        VersionUpdate("a", {"key_ops": ["sign"], "attributes": {"exp": None}})
    ]


def test_the_policy_is_put_when_it_differs_and_emptied_when_the_spec_drops_it() -> None:
    policy = {"timeAfterCreate": "P30D", "expiryTime": "P1Y"}
    wanted = desired_policy(spec(rotationPolicy=policy).rotation_policy)
    assert wanted == {
        "lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}}],
        "attributes": {"expiryTime": "P1Y"},
    }
    updates = key_updates(spec(rotationPolicy=policy), IN_SYNC)
    assert updates == [PolicyUpdate(wanted)]
    # As the vault stores it, with its own timestamps: in step.
    stored = wanted | {"attributes": {"expiryTime": "P1Y", "created": NOW, "updated": NOW}}
    in_step = state(*IN_SYNC.versions, policy=stored)
    assert key_updates(spec(rotationPolicy=policy), in_step) == []
    assert key_updates(spec(), in_step) == [PolicyUpdate(desired_policy(None))]


def test_with_a_policy_expiry_the_vault_owns_each_versions_expiry() -> None:
    policy = {"timeAfterCreate": "P30D", "expiryTime": "P1Y"}
    stored = desired_policy(spec(rotationPolicy=policy).rotation_policy)
    rotated = state(
        version("a", exp=NOW + 365 * DAY, ops=("sign", "verify")),
        version("b", exp=NOW + 400 * DAY, ops=("sign", "verify")),
        policy=stored,
    )
    assert key_updates(spec(rotationPolicy=policy), rotated) == []


def test_only_the_resources_own_key_is_taken_or_deleted() -> None:
    check_owner(IN_SYNC, UID, "v")
    with pytest.raises(InvalidSpec) as caught:
        check_owner(state(version("a"), owner="someone-else"), UID, "v")
    assert caught.value.reason == "KeyNameTaken" and "spec.keyName" in caught.value.message
    assert should_delete(IN_SYNC, UID)
    assert not should_delete(None, UID)
    assert not should_delete(state(version("a"), owner="other"), UID)
    deleted = KeyState("k", UID, {}, (version("a"),), None, True)
    assert not should_delete(deleted, UID)


def test_the_status_reports_the_current_version_and_public_key() -> None:
    raw = {
        "name": "k",
        "owner": UID,
        "key": {
            "kid": "https://v/keys/k/b",
            "kty": "EC-HSM",
            "crv": "P-256",
            "x": "AA",
            "y": "AQ",
            "key_ops": ["sign"],
        },
        "versions": [
            {"version": "a", "keyOps": ["sign"], "attributes": {"created": NOW, "enabled": False}},
            {
                "version": "b",
                "keyOps": ["sign"],
                "attributes": {"created": NOW + 1, "enabled": True},
            },
        ],
        "rotationPolicy": None,
        "deleted": None,
    }
    status = key_status(KeyState.parse(raw), "v", KeyStatus(), 4)
    wire = status.wire()
    assert wire["kid"] == "https://v/keys/k/b" and wire["currentVersion"] == "b"
    assert [v["version"] for v in wire["versions"]] == ["a", "b"]
    assert wire["versions"][0]["enabled"] is False
    assert wire["publicKey"] == raw["key"]
    assert wire["observedGeneration"] == 4 and wire["conditions"][-1]["reason"] == "KeyReady"


# --- VaultSecret ---------------------------------------------------------------------------


def secret_spec(source: dict[str, Any], **fields: Any) -> VaultSecretSpec:
    return VaultSecretSpec.model_validate({"vaultRef": {"name": "v"}, "source": source} | fields)


FROM_SECRET = secret_spec({"fromSecret": {"name": "src", "key": "password"}})


def test_the_source_decides_what_the_vault_is_asked() -> None:
    generated = secret_spec(
        {"generate": {"length": 64, "encoding": "hex"}}, contentType="text/plain"
    )
    assert source_of(generated) == "generate"
    assert generate_body(generated) == {
        "generate": {"length": 64, "encoding": "hex"},
        "contentType": "text/plain",
    }
    assert source_of(FROM_SECRET) == "fromSecret"
    assert source_of(secret_spec({"external": {}})) == "external"


def test_an_imported_value_is_read_from_the_secrets_data() -> None:
    data = {"data": {"password": base64.b64encode(CANARY.encode()).decode()}}
    assert imported_value(data, FROM_SECRET) == CANARY


@pytest.mark.parametrize(
    "secret,kind,reason",
    [
        ({"data": {"other": "eA=="}}, NotReady, "SourceKeyNotFound"),
        (
            {"data": {"password": base64.b64encode(b"\xff" + CANARY.encode()).decode()}},
            InvalidSpec,
            "SourceNotText",
        ),
    ],
)
def test_an_import_that_cannot_be_made_says_why_without_the_value(
    secret: dict[str, Any], kind: type, reason: str
) -> None:
    with pytest.raises(kind) as caught:
        imported_value(secret, FROM_SECRET)
    assert caught.value.reason == reason
    assert CANARY not in caught.value.message and "src" in caught.value.message


def test_a_secret_the_operator_makes_must_be_its_own_an_external_one_need_not() -> None:
    foreign = SecretState("s", None, "https://v/secrets/s/a", ("a",), False)
    with pytest.raises(InvalidSpec) as caught:
        check_secret_owner(foreign, UID, FROM_SECRET, "v")
    assert caught.value.reason == "SecretNameTaken"
    check_secret_owner(foreign, UID, secret_spec({"external": {}}), "v")
    assert not should_delete_secret(foreign, UID)
    assert should_delete_secret(SecretState("s", UID, "i", ("a",), False), UID)
    assert not should_delete_secret(SecretState("s", UID, "i", ("a",), True), UID)


def test_generated_values_are_encoded_as_asked() -> None:
    raw = bytes(range(256))
    assert encode_random(raw[:3], "hex") == "000102"
    assert encode_random(raw[:3], "base64") == "AAEC"
    alphanumeric = encode_random(raw, "alphanumeric")
    # Bytes 248-255 are dropped so that each of the 62 characters is equally likely.
    assert len(alphanumeric) == 248 and alphanumeric.isalnum()
    assert all(alphanumeric.count(c) == 4 for c in set(alphanumeric))
    assert alphanumeric_length(32) == 43  # 32 bytes of randomness in [0-9A-Za-z]


def test_a_vault_the_pool_does_not_serve_yet_is_waited_for() -> None:
    error = classify(PoolApiError(404, "VaultNotFound", "No vault 'v' is served by this pool."))
    assert isinstance(error, NotReady) and error.reason == "VaultNotServed"


# --- adoption ------------------------------------------------------------------------------


def unowned(kty: str = "EC-HSM", size: int | None = None, **jwk: str) -> KeyState:
    """A key made through the vault's API: no owner."""
    return KeyState(
        "legacy",
        None,
        {"kid": "https://v/keys/legacy/a", "kty": kty} | jwk,
        (version("a"),),
        None,
        False,
        size,
    )


def test_a_key_without_an_owner_is_adopted_only_with_spec_adopt() -> None:
    with pytest.raises(InvalidSpec) as caught:
        check_owner(unowned(), UID, "v")
    assert caught.value.reason == "KeyNameTaken"
    assert "made through the vault's API" in caught.value.message
    assert "spec.adopt: true" in caught.value.message
    assert "strongroom.io/allow-adopt" in caught.value.message
    assert check_owner(unowned(), UID, "v", adopt=True) is True
    assert check_owner(IN_SYNC, UID, "v", adopt=True) is False
    # Another resource's key is never adopted, and the message does not offer it.
    with pytest.raises(InvalidSpec) as caught:
        check_owner(state(version("a"), owner="someone-else"), UID, "v", adopt=True)
    assert caught.value.reason == "KeyNameTaken"
    assert "another resource" in caught.value.message and "adopt" not in caught.value.message


def _modulus(bits: int) -> str:
    return base64.urlsafe_b64encode((1 << (bits - 1)).to_bytes(bits // 8, "big")).decode()


@pytest.mark.parametrize(
    "found,fields",
    [
        (unowned("EC", crv="P-256"), {}),
        (unowned("EC-HSM", crv="P-384"), {"curve": "P-384"}),
        (unowned("RSA", 2048), {"kty": "RSA-HSM"}),
        (unowned("RSA-HSM", 4096), {"kty": "RSA", "size": 4096}),
        # From a pool that does not report sizes: an RSA key's is its modulus's.
        (unowned("RSA", None, n=_modulus(3072)), {"kty": "RSA", "size": 3072}),
        (unowned("oct-HSM", 256), {"kty": "oct-HSM"}),
        (unowned("oct-HSM", 128), {"kty": "oct-HSM", "size": 128}),
    ],
)
def test_a_key_of_the_specs_type_and_size_may_be_adopted(
    found: KeyState, fields: dict[str, Any]
) -> None:
    check_adoptable(found, spec(**fields), "v")


@pytest.mark.parametrize(
    "found,fields,words",
    [
        (
            unowned("EC", crv="P-521"),
            {},
            "is an EC key on curve P-521, but this Key's spec asks for an EC-HSM key on curve "
            "P-256: it is not adopted; to adopt it, make this Key again with spec.kty: EC and "
            "spec.curve: P-521",
        ),
        (
            unowned("RSA", 3072),
            {"kty": "RSA-HSM"},
            "is an RSA key of 3072 bits, but this Key's spec asks for an RSA-HSM key of 2048 bits",
        ),
        (
            unowned("RSA", None, n=_modulus(4096)),
            {"kty": "RSA", "size": 2048},
            "spec.kty: RSA and spec.size: 4096",
        ),
        (unowned("oct-HSM", 128), {"kty": "oct-HSM"}, "an oct-HSM key of 256 bits"),
        (unowned("RSA-HSM", 2048), {}, "is an RSA-HSM key of 2048 bits, but this Key's spec asks"),
        # Without the size, the key cannot be shown to be the spec's: not adopted.
        (unowned("oct-HSM", None), {"kty": "oct-HSM"}, "is an oct-HSM key of unknown size"),
    ],
)
def test_a_key_unlike_the_spec_is_not_adopted_and_the_message_names_both(
    found: KeyState, fields: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        check_adoptable(found, spec(**fields), "v")
    assert caught.value.reason == "AdoptionMismatch" and words in caught.value.message


def test_a_deleted_key_is_not_adopted_until_recovered() -> None:
    deleted = KeyState("legacy", None, {"kty": "EC"}, (version("a"),), None, True)
    with pytest.raises(ReconcileError) as caught:
        check_adoptable(deleted, spec(), "v")
    assert caught.value.reason == "KeyDeleted" and caught.value.retry_after is not None
    assert "POST /deletedkeys/legacy/recover" in caught.value.message


@pytest.mark.parametrize(
    "annotations,allowed",
    [
        (None, False),
        ({}, False),
        ({"strongroom.io/allow-adopt": ""}, False),
        ({"strongroom.io/allow-adopt": "other,legacy-2"}, False),
        ({"strongroom.io/allow-import": "legacy"}, False),
        ({"strongroom.io/allow-adopt": "legacy"}, True),
        ({"strongroom.io/allow-adopt": "other, Legacy "}, True),
        ({"strongroom.io/allow-adopt": " * "}, True),
    ],
)
def test_the_vault_consents_by_naming_the_object_or_star(
    annotations: dict[str, str] | None, allowed: bool
) -> None:
    vault: dict[str, Any] = {"metadata": {"name": "v"}}
    if annotations is not None:
        vault["metadata"]["annotations"] = annotations
    assert adoption_allowed(vault, "legacy") is allowed
    assert adoption_allowed(None, "legacy") is False


def test_a_refusal_says_exactly_what_to_set() -> None:
    vault = {"metadata": {"annotations": {"strongroom.io/allow-adopt": "a,b"}}}
    error = not_allowed(vault, "team", "payments", "secret", "db")
    assert error.reason == "AdoptionNotAllowed" and error.retry_after is not None
    assert "Vault 'payments' does not allow adopting its secret 'db'" in error.message
    assert error.message.endswith(
        "kubectl -n team annotate vault payments --overwrite strongroom.io/allow-adopt=a,b,db"
    )
    assert not_allowed(None, "team", "payments", "key", "k").message.endswith(
        "--overwrite strongroom.io/allow-adopt=k"
    )


GENERATED = secret_spec({"generate": {}})
ADOPTING = secret_spec({"generate": {}}, adopt=True)


def test_only_a_generated_secret_with_spec_adopt_adopts() -> None:
    foreign = SecretState("s", None, "https://v/secrets/s/a", ("a",), False)
    assert check_secret_owner(foreign, UID, ADOPTING, "v") is True
    with pytest.raises(InvalidSpec) as caught:
        check_secret_owner(foreign, UID, GENERATED, "v")
    assert caught.value.reason == "SecretNameTaken" and "spec.adopt: true" in caught.value.message
    # An external secret only reports, whoever owns it: nothing to adopt.
    assert check_secret_owner(foreign, UID, secret_spec({"external": {}}), "v") is False
    owned = SecretState("s", "another-uid", "https://v/secrets/s/a", ("a",), False)
    with pytest.raises(InvalidSpec) as caught:
        check_secret_owner(owned, UID, ADOPTING, "v")
    assert "another resource" in caught.value.message
    check_adopt_source(ADOPTING)
    for source in ({"fromSecret": {"name": "src", "key": "k"}}, {"external": {}}):
        with pytest.raises(InvalidSpec) as caught:
            check_adopt_source(secret_spec(source, adopt=True))
        assert caught.value.reason == "AdoptionNotSupported"
        assert "replace the adopted value with the imported one" in caught.value.message
        check_adopt_source(secret_spec(source))


def test_a_secret_of_another_content_type_or_deleted_is_not_adopted() -> None:
    plain = SecretState("s", None, "i", ("a",), False, NOW, "text/plain")
    check_adoptable_secret(plain, ADOPTING, "v")  # a spec without contentType takes it
    check_adoptable_secret(plain, secret_spec({"generate": {}}, contentType="text/plain"), "v")
    for found, wanted, words in (
        (plain, "application/json", "has 'text/plain', but this VaultSecret's spec.contentType"),
        (
            SecretState("s", None, "i", ("a",), False, NOW, None),
            "text/plain",
            "has no content type, but this VaultSecret's spec.contentType is 'text/plain': it is "
            "not adopted; to adopt it, make this VaultSecret again with no spec.contentType",
        ),
    ):
        with pytest.raises(InvalidSpec) as caught:
            check_adoptable_secret(found, secret_spec({"generate": {}}, contentType=wanted), "v")
        assert caught.value.reason == "AdoptionMismatch" and words in caught.value.message
    deleted = SecretState("s", None, "i", ("a",), True)
    with pytest.raises(ReconcileError) as caught:
        check_adoptable_secret(deleted, ADOPTING, "v")
    assert (
        caught.value.reason == "SecretDeleted"
        and "/deletedsecrets/s/recover" in caught.value.message
    )


# --- the handler: an Event when a key is adopted, the refusal in the status ------------------


class UnownedKeyPool:
    """A pool holding key `legacy`, made through the vault's API, as the management API
    reports it: the create-once refuses it, and an adoption makes it the owner's."""

    def __init__(self) -> None:
        self.owner: str | None = None
        self.adopted: list[str] = []

    def answer(self) -> dict[str, Any]:
        return {
            "name": "legacy",
            "owner": self.owner,
            "key": {
                "kid": "https://v/keys/legacy/b",
                "kty": "EC",
                "crv": "P-256",
                "x": "AA",
                "y": "AQ",
                "key_ops": ["sign", "verify"],
            },
            "versions": [
                {
                    "version": v,
                    "keyOps": ["sign", "verify"],
                    "attributes": {"created": NOW, "enabled": True},
                }
                for v in ("a", "b")
            ],
            "rotationPolicy": None,
            "deleted": None,
        }

    async def create_key(self, *_: Any) -> dict[str, Any]:
        raise PoolApiError(409, "KeyOwnedElsewhere", "A key named legacy exists")

    async def get_key(self, *_: Any) -> dict[str, Any]:
        return self.answer()

    async def adopt_key(self, vault: VaultAddress, name: str, owner: str) -> dict[str, Any]:
        assert self.owner in (None, owner)
        self.owner = owner
        self.adopted.append(owner)
        return self.answer()


class VaultKube:
    def __init__(self, annotations: dict[str, str]) -> None:
        self.annotations = annotations

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        assert (api_version, kind, namespace, name) == (API_VERSION, "Vault", "ns", "v")
        return {"metadata": {"name": name, "namespace": namespace, "annotations": self.annotations}}


class _Patch:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {}


def _key_body(status: dict[str, Any]) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": API_VERSION,
            "kind": "Key",
            "metadata": {"name": "legacy", "namespace": "ns", "uid": UID, "generation": 1},
            "spec": spec(adopt=True).wire(),
            "status": status,
        }
    )


def test_the_handler_reports_a_refused_adoption_and_posts_an_event_on_an_adopted_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: events.append(kw))

    async def address(*_: Any) -> VaultAddress:
        return VaultAddress("https://pool-pool.ns.svc", "v", "v-vault.ns.svc")

    monkeypatch.setattr(key_reconcile, "vault_address", address)
    pool, kube = UnownedKeyPool(), VaultKube({})
    memo: Any = {"context": SimpleNamespace(pools=pool, kube=kube)}

    patch = _Patch()
    with pytest.raises(kopf.TemporaryError):
        asyncio.run(handlers.key(body=_key_body({}), patch=patch, memo=memo))
    [condition] = patch.status["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "AdoptionNotAllowed")
    assert "strongroom.io/allow-adopt=legacy" in condition["message"]
    assert [e["reason"] for e in events] == ["AdoptionNotAllowed"]
    assert events[0]["type"] == "Warning" and pool.adopted == []

    kube.annotations = {"strongroom.io/allow-adopt": "legacy"}
    patch = _Patch()
    asyncio.run(handlers.key(body=_key_body({}), patch=patch, memo=memo))
    assert patch.status["currentVersion"] == "b" and pool.adopted == [UID]
    assert patch.status["conditions"][-1]["reason"] == "KeyReady"
    assert events[1:] == [
        {
            "type": "Normal",
            "reason": "Adopted",
            "message": "Adopted key legacy of vault v, made through the vault's API: it now "
            "belongs to this Key, its 2 version(s) kept (current b).",
        }
    ]
    # The next reconcile finds its own key: no second adoption, no second Event.
    asyncio.run(handlers.key(body=_key_body(patch.status), patch=_Patch(), memo=memo))
    assert pool.adopted == [UID] and len(events) == 2
