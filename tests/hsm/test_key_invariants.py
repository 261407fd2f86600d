"""HSM keys are TOKEN, PRIVATE, SENSITIVE and non-EXTRACTABLE, and cannot be exported."""

import uuid

import pytest
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from strongroom.hsm import templates
from strongroom.hsm.engine import Engine
from strongroom.hsm.errors import InvalidInput, KeyNotFound
from strongroom.hsm.protocol import OPERATIONS

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
    assert attributes["TOKEN"] is True
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


def test_the_sidecar_serves_no_export_operation() -> None:
    assert not any(word in op for op in OPERATIONS for word in ("export", "extract", "value"))


def test_vault_keys_are_sensitive_and_never_extractable(engine: Engine) -> None:
    session = engine._session("t")
    for label in (templates.KEK_LABEL, templates.SEAL_LABEL):
        key = session.get_key(ObjectClass.SECRET_KEY, label=label)
        assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]
        assert key[Attribute.NEVER_EXTRACTABLE]


def test_a_backup_restores_a_non_extractable_key_that_signs_alike(engine: Engine) -> None:
    key_id = uuid.uuid4().hex
    generated = engine.generate_ec("t", key_id, "restorable", "P-256")
    engine.destroy_key("t", key_id)
    with pytest.raises(KeyNotFound):
        engine.sign("t", key_id, "ES256", b"\x01" * 32)
    engine.restore_key("t", key_id, "restorable", "EC-HSM", generated.wrapped)
    attributes = engine.key_attributes("t", key_id)
    assert attributes["EXTRACTABLE"] is False and attributes["SENSITIVE"] is True
    assert len(engine.sign("t", key_id, "ES256", b"\x01" * 32)) == 64


def test_wrong_digest_sizes_are_refused_before_the_hsm(engine: Engine) -> None:
    key_id = make(engine, "ec", "P-256")
    with pytest.raises(InvalidInput, match="32-byte digest"):
        engine.sign("t", key_id, "ES256", b"\x01" * 31)


def test_records_survive_a_crash_between_create_and_destroy(engine: Engine) -> None:
    engine.put_record("t", "crash/a", b"old")
    session = engine._session("t")
    # A second object for the same record, as a crash mid-update would leave.
    session.create_object(templates.record("crash/a", (2**63).to_bytes(8, "big") + b"new"))
    engine._records.clear()
    assert engine.list_records("t")["records"]["crash/a"] == b"new"
    assert len(engine._find_records("t", "crash/a")) == 1


def test_records_are_listed_in_pages_of_bounded_size(engine: Engine) -> None:
    from strongroom.hsm.engine import MAX_RECORD_BYTES, RECORD_PAGE_BYTES

    for index in range(5):
        engine.put_record("t", f"paged/{index}", bytes([index]) * (RECORD_PAGE_BYTES // 3))
    with pytest.raises(InvalidInput):
        engine.put_record("t", "paged/huge", b"x" * (MAX_RECORD_BYTES + 1))
    seen: dict[str, bytes] = {}
    page = engine.list_records("t")
    pages = 1
    while True:
        assert sum(len(v) for v in page["records"].values()) <= RECORD_PAGE_BYTES
        seen |= page["records"]
        if page["next"] is None:
            break
        page = engine.list_records("t", after=page["next"])
        pages += 1
    assert pages >= 2
    assert {n for n in seen if n.startswith("paged/")} == {f"paged/{i}" for i in range(5)}
    assert seen["paged/3"] == b"\x03" * (RECORD_PAGE_BYTES // 3)
    for index in range(5):
        engine.delete_record("t", f"paged/{index}")
