"""Pure rules of the data plane: names, encodings, durations, config, the sidecar wire format."""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from strongroom.hsm import errors, protocol
from strongroom.hsm.pins import read_pool_secret, so_pin, user_pin
from strongroom.hsm.rsapad import oaep_decode, pkcs1_v15_decode
from strongroom.vault.config import AccessEntry, ServerConfig
from strongroom.vault.encoding import b64url, unb64url
from strongroom.vault.errors import BadParameter, Forbidden, NotFound, ServiceUnavailable, from_hsm
from strongroom.vault.keys import parse_duration
from strongroom.vault.names import check_name
from strongroom.vault.objects import Attributes, KeyEntry, KeyVersion


@pytest.mark.parametrize("name", ["a", "my-key-1", "A" * 127, "0"])
def test_key_vault_names_are_accepted(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "a/b", "a_b", "a.b", "x" * 128, "a\x00b", "ünï"])
def test_other_names_are_refused_with_a_reason(name: str) -> None:
    with pytest.raises(BadParameter, match="1-127 letters, digits and dashes"):
        check_name(name)


def test_base64url_round_trips_and_rejects_other_alphabets() -> None:
    assert unb64url(b64url(b"\xff\xfe\x00"), "v") == b"\xff\xfe\x00"
    for bad in ("a+b/", "***", 5, None):
        with pytest.raises(BadParameter):
            unb64url(bad, "v")


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("P90D", 90 * 86400),
        ("P1Y", 365 * 86400),
        ("PT12H", 43200),
        ("P1DT1M", 86460),
        ("P2W", 14 * 86400),
    ],
)
def test_iso_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["90D", "P", "PT", "P1X", "P1", 30])
def test_bad_durations(text: object) -> None:
    with pytest.raises(BadParameter):
        parse_duration(text)


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_oaep_decoding_matches_the_standard(hash_name: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    chosen = hashes.SHA1() if hash_name == "sha1" else hashes.SHA256()  # noqa: S303
    pad = padding.OAEP(padding.MGF1(chosen), chosen, None)
    ciphertext = key.public_key().encrypt(b"attack at dawn", pad)
    numbers = key.private_numbers()
    encoded = pow(int.from_bytes(ciphertext, "big"), numbers.d, numbers.public_numbers.n)
    assert oaep_decode(encoded.to_bytes(256, "big"), hash_name) == b"attack at dawn"
    tampered = bytearray(encoded.to_bytes(256, "big"))
    tampered[100] ^= 1
    with pytest.raises(errors.InvalidInput) as failed:
        oaep_decode(bytes(tampered), hash_name)
    with pytest.raises(errors.InvalidInput) as short:
        oaep_decode(b"\0" * 10, hash_name)
    assert str(failed.value) == str(short.value)


def _pkcs1(message: bytes, k: int = 256) -> bytes:
    return b"\x00\x02" + b"\x5a" * (k - 3 - len(message)) + b"\x00" + message


@pytest.mark.parametrize("message", [b"", b"m", b"x" * 245])
def test_pkcs1_v15_decoding_returns_a_well_formed_message(message: bytes) -> None:
    assert pkcs1_v15_decode(_pkcs1(message), b"c" * 256, b"secret") == message


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x01" + _pkcs1(b"m")[1:],  # first byte
        b"\x00\x01" + _pkcs1(b"m")[2:],  # block type
        b"\x00\x02" + b"\x5a" * 254,  # no separator
        b"\x00\x02" + b"\x5a" * 7 + b"\x00" + b"m" * 246,  # padding under 8 bytes
    ],
)
def test_a_malformed_pkcs1_v15_padding_gives_a_stable_synthetic_message(encoded: bytes) -> None:
    ciphertext = bytes(range(256))
    first = pkcs1_v15_decode(encoded, ciphertext, b"secret")
    assert first == pkcs1_v15_decode(encoded, ciphertext, b"secret")
    assert len(first) <= 256 - 11
    assert first != pkcs1_v15_decode(encoded, ciphertext, b"another key's secret")
    assert first != pkcs1_v15_decode(encoded, ciphertext[::-1], b"secret")


def test_synthetic_lengths_spread_over_the_allowed_range() -> None:
    lengths = {
        len(pkcs1_v15_decode(b"\x00" * 256, i.to_bytes(2, "big"), b"secret")) for i in range(200)
    }
    assert max(lengths) <= 245 and len(lengths) > 100


def test_pins_are_derived_per_vault_and_never_equal(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("00" * 32)
    secret = read_pool_secret(secret_file)
    assert user_pin(secret, "a") != user_pin(secret, "b") != so_pin(secret, "a")
    assert len(user_pin(secret, "a")) == 32
    secret_file.write_text("short")
    with pytest.raises(ValueError, match="shorter than 16 bytes"):
        read_pool_secret(secret_file)


def test_the_wire_format_carries_bytes_and_errors() -> None:
    line = protocol.encode({"i": 1, "op": "sign", "a": {"digest": b"\x00\x01", "n": (1, 2)}})
    assert line.endswith(b"\n")
    assert protocol.decode(line) == {
        "i": 1,
        "op": "sign",
        "a": {"digest": b"\x00\x01", "n": [1, 2]},
    }
    error = protocol.error_from(["KeyNotFound", "no such key"])
    assert isinstance(error, errors.KeyNotFound)
    assert isinstance(protocol.error_from(["Whatever", "x"]), errors.HsmError)


def test_hsm_errors_map_to_http_in_one_place() -> None:
    assert isinstance(from_hsm(errors.InvalidInput("x")), BadParameter)
    assert isinstance(from_hsm(errors.OperationNotAllowed("x")), Forbidden)
    assert isinstance(from_hsm(errors.KeyNotFound("x")), NotFound)
    assert isinstance(from_hsm(errors.HsmUnavailable("x")), ServiceUnavailable)


def test_config_parses_access_lists_and_refuses_unknown_permissions(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "vaults": [
                    {
                        "name": "v",
                        "hosts": ["V.example"],
                        "retentionDays": 7,
                        "purgeProtection": True,
                        "access": [
                            {
                                "subject": "system:serviceaccount:ns:app",
                                "keys": ["Sign", "get"],
                                "secrets": ["all"],
                            }
                        ],
                    }
                ]
            }
        )
    )
    config = ServerConfig.load(path)
    vault = config.vaults[0]
    assert vault.hosts == ("v.example",) and vault.purge_protection
    assert vault.permissions("system:serviceaccount:ns:app", "keys") == {"sign", "get"}
    assert "purge" in vault.permissions("system:serviceaccount:ns:app", "secrets")
    assert vault.permissions("someone-else", "keys") == frozenset()
    with pytest.raises(ValueError, match="unknown keys permission"):
        AccessEntry.parse({"subject": "x", "keys": ["export"]})
    path.write_text(json.dumps({"vaults": [{"name": "v", "hosts": ["h"], "retentionDays": 3}]}))
    with pytest.raises(ValueError, match="retentionDays"):
        ServerConfig.load(path)


def test_attributes_refuse_wrong_types_and_report_usability() -> None:
    attributes = Attributes()
    with pytest.raises(BadParameter):
        attributes.update_from({"enabled": "yes"})
    with pytest.raises(BadParameter):
        attributes.update_from({"exp": "tomorrow"})
    attributes.update_from({"exp": 1})
    assert "expired" in (attributes.usable_now() or "")
    wire = Attributes().wire(90, False)
    assert wire["recoveryLevel"] == "Recoverable+Purgeable" and wire["recoverableDays"] == 90
    assert Attributes().wire(7, True)["recoveryLevel"] == "CustomizedRecoverable"


def test_key_records_round_trip_without_private_material() -> None:
    entry = KeyEntry(
        "k",
        [
            KeyVersion(
                "a" * 32, "EC-HSM", ["sign"], {"x": "01", "y": "02"}, "d3JhcHBlZA==", crv="P-256"
            )
        ],
    )
    loaded = KeyEntry.load(entry.dump())
    assert loaded == entry
    jwk = loaded.current.jwk("https://v/keys/k/" + "a" * 32)
    assert jwk["x"] == "AQ" and jwk["crv"] == "P-256" and "d" not in jwk
