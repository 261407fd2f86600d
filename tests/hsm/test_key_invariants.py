"""Working keys are PRIVATE, SENSITIVE, non-EXTRACTABLE session objects that nothing
exports; the token keeps root keys only; sealed records open under their own binding only."""

import json
import os
import uuid

import pytest
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from strongroom.hsm import templates
from strongroom.hsm.engine import Engine
from strongroom.hsm.errors import HsmError, InvalidInput, KeyNotLoaded
from strongroom.hsm.sidecar import Sidecar

KINDS = [
    ("rsa", 2048),
    ("ec", "P-256"),
    ("ec", "P-384"),
    ("ec", "P-521"),
    ("aes", 128),
    ("aes", 256),
]


def make(engine: Engine, kind: str, arg: object) -> str:
    key_id = uuid.uuid4().hex
    getattr(engine, f"generate_{kind}")("t", key_id, f"inv-{kind}", arg)
    return key_id


def stored_key(engine: Engine, key_id: str):  # type: ignore[no-untyped-def]
    return engine._private("t", key_id)


@pytest.mark.parametrize("kind,arg", KINDS)
def test_every_attribute_reads_back_as_required(engine: Engine, kind: str, arg: object) -> None:
    key_id = make(engine, kind, arg)
    attributes = engine.key_attributes("t", key_id)
    assert attributes["TOKEN"] is False  # a session object: gone with the session
    assert attributes["PRIVATE"] is True
    assert attributes["SENSITIVE"] is True
    assert attributes["ALWAYS_SENSITIVE"] is True
    assert attributes["EXTRACTABLE"] is False


@pytest.mark.parametrize("kind,arg", KINDS)
def test_export_of_the_private_value_is_refused(engine: Engine, kind: str, arg: object) -> None:
    key = stored_key(engine, make(engine, kind, arg))
    secret_attribute = (
        Attribute.VALUE
        if kind == "aes"
        else (Attribute.PRIVATE_EXPONENT if kind == "rsa" else Attribute.VALUE)
    )
    with pytest.raises(p11.AttributeSensitive):
        key[secret_attribute]
    kek = engine._secret_key("t", templates.KEK_LABEL)
    with pytest.raises((p11.KeyUnextractable, p11.KeyNotWrappable)):
        kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    with pytest.raises((p11.AttributeReadOnly, p11.AttributeValueInvalid, p11.ArgumentsBad)):
        key[Attribute.EXTRACTABLE] = True
    assert engine.key_attributes("t", key.id.hex())["EXTRACTABLE"] is False


def test_no_call_through_the_sidecar_exports_a_key(engine: Engine) -> None:
    key_id = make(engine, "aes", 256)
    sidecar = Sidecar(engine)
    # Engine internals and PKCS#11 names are not operations, whatever their arguments.
    for op in ("_private", "_key", "_session", "_secret_key", "close", "__class__", "export"):
        with pytest.raises(HsmError, match="unknown HSM operation"):
            sidecar.call(op, {"vault": "t", "key_id": key_id})
    # What the served operations give back about a key holds no key material.
    attributes = sidecar.call("key_attributes", {"vault": "t", "key_id": key_id})
    assert set(attributes) == {a.name for a in engine_invariants()}
    assert all(isinstance(v, bool) for v in attributes.values())
    # Nor can the engine's own wrapping key take a working key out.
    key = stored_key(engine, key_id)
    with pytest.raises((p11.KeyUnextractable, p11.KeyNotWrappable)):
        engine._secret_key("t", templates.KEK_LABEL).wrap_key(
            key, mechanism=Mechanism.AES_KEY_WRAP_PAD
        )


def engine_invariants():  # type: ignore[no-untyped-def]
    from strongroom.hsm.engine import INVARIANT_ATTRIBUTES

    return INVARIANT_ATTRIBUTES


def test_working_keys_never_reach_the_token(engine: Engine) -> None:
    before = set(engine.token_key_ids("t"))
    made = {make(engine, kind, arg) for kind, arg in KINDS}
    assert not made & set(engine.token_key_ids("t"))
    assert set(engine.token_key_ids("t")) == before


def test_vault_keys_are_sensitive_and_never_extractable(engine: Engine) -> None:
    session = engine._session("t")
    for label in (templates.KEK_LABEL, templates.SEAL_LABEL):
        key = session.get_key(ObjectClass.SECRET_KEY, label=label)
        assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]
        assert key[Attribute.NEVER_EXTRACTABLE]


def test_root_keys_in_use_are_session_copies_as_protected_as_the_token_objects(
    engine: Engine,
) -> None:
    """The engine uses its session-object copies of the vault's root keys (a token object is
    checked against its file at every use); each copy is as SENSITIVE and non-EXTRACTABLE
    as its token object, and the token still holds exactly one of each."""
    blob = engine.seal_records("t", [b"aad"], [b"a record"])[0]
    session = engine._session("t")
    for label in (templates.KEK_LABEL, templates.SEAL_LABEL):
        in_use = engine._secret_key("t", label)
        assert in_use[Attribute.TOKEN] is False
        assert in_use[Attribute.SENSITIVE] and not in_use[Attribute.EXTRACTABLE]
        assert in_use[Attribute.NEVER_EXTRACTABLE]
        with pytest.raises(p11.AttributeSensitive):
            in_use[Attribute.VALUE]
        wanted = {Attribute.LABEL: label, Attribute.CLASS: ObjectClass.SECRET_KEY}
        stored = list(session.get_objects(wanted | {Attribute.TOKEN: True}))
        assert len(stored) == 1
    # The copy is the same key: what it sealed opens under the token object itself.
    token_seal = session.get_key(ObjectClass.SECRET_KEY, label=templates.SEAL_LABEL)
    assert token_seal[Attribute.TOKEN] is True
    from pkcs11.mechanisms import GCMParams

    opened = token_seal.decrypt(
        blob[12:], mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(blob[:12], b"aad", 128)
    )
    assert bytes(opened) == b"a record"


def test_a_backup_restores_a_non_extractable_key_that_signs_alike(engine: Engine) -> None:
    key_id = uuid.uuid4().hex
    generated = engine.generate_ec("t", key_id, "restorable", "P-256")
    engine.destroy_key("t", key_id)
    with pytest.raises(KeyNotLoaded):
        engine.sign("t", key_id, "ES256", b"\x01" * 32)
    engine.load_key("t", key_id, "restorable", "EC-HSM", generated.wrapped)
    attributes = engine.key_attributes("t", key_id)
    assert attributes["EXTRACTABLE"] is False and attributes["SENSITIVE"] is True
    assert len(engine.sign("t", key_id, "ES256", b"\x01" * 32)) == 64


def test_wrong_digest_sizes_are_refused_before_the_hsm(engine: Engine) -> None:
    key_id = make(engine, "ec", "P-256")
    with pytest.raises(InvalidInput, match="32-byte digest"):
        engine.sign("t", key_id, "ES256", b"\x01" * 31)


def test_a_key_loads_again_after_eviction(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from strongroom.hsm import engine as engine_module

    monkeypatch.setattr(engine_module, "MAX_LOADED_KEYS", 1)
    first = uuid.uuid4().hex
    blob = engine.generate_ec("t", first, "evicted", "P-256").wrapped
    make(engine, "ec", "P-256")  # one more than the bound: the least recently used goes
    with pytest.raises(KeyNotLoaded):
        engine.sign("t", first, "ES256", b"\x02" * 32)
    engine.load_key("t", first, "evicted", "EC-HSM", blob)
    assert len(engine.sign("t", first, "ES256", b"\x02" * 32)) == 64


def test_a_key_of_another_vault_does_not_load(engine: Engine) -> None:
    engine.ensure_vault("other")
    key_id = uuid.uuid4().hex
    blob = engine.generate_ec("other", key_id, "elsewhere", "P-256").wrapped
    with pytest.raises(HsmError):
        engine.load_key("t", key_id, "elsewhere", "EC-HSM", blob)


def test_sealed_records_open_only_under_their_own_binding(engine: Engine) -> None:
    aad = b"strongroom-record-v1\0t\0secret\0a\0v1"
    (sealed,) = engine.seal_records("t", [aad], [b"value"])
    assert b"value" not in sealed
    assert engine.unseal_records("t", [aad], [sealed]) == [b"value"]
    for other in (aad.replace(b"\0a\0", b"\0b\0"), aad[:-1] + b"2", b""):
        with pytest.raises(HsmError):
            engine.unseal_records("t", [other], [sealed])
    with pytest.raises(HsmError):
        engine.unseal_records("other-vault-that-is-not-there", [aad], [sealed])
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(HsmError):
        engine.unseal_records("t", [aad], [tampered])


def _legacy_record(engine: Engine, name: str, value: bytes, stamp: int) -> None:
    """A token record as the first storage design wrote it: stamp, then value."""
    engine._session("t").create_object(templates.record(name, stamp.to_bytes(8, "big") + value))


def test_token_records_survive_a_crash_between_create_and_destroy(engine: Engine) -> None:
    _legacy_record(engine, "crash/a", b"old", 1)
    # A second object for the same record, as a crash mid-update would leave.
    _legacy_record(engine, "crash/a", b"new", 2**63)
    engine._records.clear()
    assert engine.list_token_records("t", "")["records"]["crash/a"] == b"new"
    assert len(engine._find_records("t", "crash/a")) == 1
    engine.delete_token_record("t", "crash/a")
    assert engine._find_records("t", "crash/a") == []


def test_token_records_are_listed_in_pages_of_bounded_size(engine: Engine) -> None:
    from strongroom.hsm.engine import RECORD_PAGE_BYTES

    for index in range(5):
        _legacy_record(engine, f"paged/{index}", bytes([index]) * (RECORD_PAGE_BYTES // 3), 1)
    seen: dict[str, bytes] = {}
    page = engine.list_token_records("t", "")
    pages = 1
    while True:
        assert sum(len(v) for v in page["records"].values()) <= RECORD_PAGE_BYTES
        seen |= page["records"]
        if page["next"] is None:
            break
        page = engine.list_token_records("t", page["next"])
        pages += 1
    assert pages >= 2
    assert {n for n in seen if n.startswith("paged/")} == {f"paged/{i}" for i in range(5)}
    assert seen["paged/3"] == b"\x03" * (RECORD_PAGE_BYTES // 3)
    for index in range(5):
        engine.delete_token_record("t", f"paged/{index}")


# --- imported keys (BYOK): kept exactly as generated ones ------------------------------


def _imported_parts(kind: str) -> tuple[str, str, dict[str, bytes], bytes]:
    """(kty, crv, parts, the private value) of a fresh key made here."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from strongroom.vault.keyimport import from_private_key

    if kind == "oct":
        secret = os.urandom(32)
        return "oct-HSM", "", {"k": secret}, secret
    if kind == "rsa":
        material = from_private_key(rsa.generate_private_key(65537, 2048))
        return "RSA-HSM", "", material.parts, material.parts["d"]
    material = from_private_key(ec.generate_private_key(ec.SECP384R1()))
    return "EC-HSM", "P-384", material.parts, material.parts["d"]


@pytest.mark.parametrize("kind", ["rsa", "ec", "oct"])
def test_an_imported_key_is_sensitive_and_never_leaves(engine: Engine, kind: str) -> None:
    kty, crv, parts, private = _imported_parts(kind)
    key_id = uuid.uuid4().hex
    before = set(engine.token_key_ids("t"))
    imported = engine.import_key("t", key_id, f"imported-{kind}", kty, crv, parts)
    # What leaves the HSM: public parts and the KEK-wrapped blob, which hides the value.
    assert private.hex() not in json.dumps(imported.public)
    assert private not in imported.wrapped
    attributes = engine.key_attributes("t", key_id)
    assert attributes["TOKEN"] is False and attributes["PRIVATE"] is True
    assert attributes["SENSITIVE"] is True and attributes["EXTRACTABLE"] is False
    key = stored_key(engine, key_id)
    secret_attribute = Attribute.PRIVATE_EXPONENT if kind == "rsa" else Attribute.VALUE
    with pytest.raises(p11.AttributeSensitive):
        key[secret_attribute]
    if kind == "rsa":
        for attribute in (Attribute.PRIME_1, Attribute.PRIME_2, Attribute.COEFFICIENT):
            with pytest.raises(p11.AttributeSensitive):
                key[attribute]
    with pytest.raises((p11.KeyUnextractable, p11.KeyNotWrappable)):
        engine._secret_key("t", templates.KEK_LABEL).wrap_key(
            key, mechanism=Mechanism.AES_KEY_WRAP_PAD
        )
    with pytest.raises((p11.AttributeReadOnly, p11.AttributeValueInvalid, p11.ArgumentsBad)):
        key[Attribute.EXTRACTABLE] = True
    # Nothing the sidecar serves gives it back, and it is not in the token.
    sidecar = Sidecar(engine)
    for op in ("_private", "_key", "export", "export_key", "get_attribute"):
        with pytest.raises(HsmError, match="unknown HSM operation"):
            sidecar.call(op, {"vault": "t", "key_id": key_id})
    answer = sidecar.call("key_attributes", {"vault": "t", "key_id": key_id})
    assert all(isinstance(v, bool) for v in answer.values())
    assert set(engine.token_key_ids("t")) == before
    # Reloaded from its blob, as after a restart: as sensitive, and the same key.
    engine.destroy_key("t", key_id)
    engine.load_key("t", key_id, f"imported-{kind}", kty, imported.wrapped)
    reloaded = engine.key_attributes("t", key_id)
    assert reloaded["SENSITIVE"] is True and reloaded["EXTRACTABLE"] is False
    with pytest.raises(p11.AttributeSensitive):
        stored_key(engine, key_id)[secret_attribute]


def test_the_hsm_refuses_imported_parts_of_the_wrong_shape(engine: Engine) -> None:
    _, _, parts, _ = _imported_parts("rsa")
    ec_parts = _imported_parts("ec")[2]
    cases = [
        ("RSA", "", {k: v for k, v in parts.items() if k != "qi"}, "exactly the parts"),
        ("RSA", "", parts | {"k": b"x"}, "exactly the parts"),
        ("RSA", "", parts | {"n": parts["n"][:128]}, "2048, 3072 or 4096"),
        ("EC", "P-256", ec_parts, "32 bytes each"),
        ("EC", "P-192", ec_parts, "unsupported curve"),
        ("oct", "", {"k": b"k" * 20}, "16, 24 or 32"),
        ("oct", "", {"k": "text"}, "is bytes"),
        ("DSA", "", {"k": b"k" * 16}, "unknown key type"),
    ]
    for kty, crv, given, message in cases:
        key_id = uuid.uuid4().hex
        with pytest.raises(InvalidInput, match=message):
            engine.import_key("t", key_id, "refused", kty, crv, given)  # type: ignore[arg-type]
        with pytest.raises(KeyNotLoaded):
            engine.key_attributes("t", key_id)
