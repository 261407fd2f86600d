"""The vocabulary the vault server and the operator share: one duration parser, one list of
permissions and key operations, the management API's bodies, and the layering that keeps
them shared."""

import ast
import json
import re
from pathlib import Path
from typing import Any, get_args

import pydantic
import pytest

import strongroom
from strongroom.api import management as wire
from strongroom.api import vocabulary
from strongroom.api.durations import (
    DAYS_OR_MORE_PATTERN,
    MINUTES_OR_MORE_PATTERN,
    InvalidDuration,
    parse_duration,
)
from strongroom.reconcile import key as key_reconcile
from strongroom.reconcile import secret as secret_reconcile
from strongroom.reconcile.errors import InvalidSpec, PoolApiError
from strongroom.reconcile.poolapi import read_answer
from strongroom.vault import keylife as vault_keys
from strongroom.vault import objects as vault_objects
from strongroom.vault.errors import BadParameter

DAY = 86400
CANARY = "canary-3c1f-never-in-a-message"


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("P30D", 30 * DAY),
        ("PT12H", 12 * 3600),
        ("P1Y2M3DT4H5M6S", (365 + 2 * 30 + 3) * DAY + 4 * 3600 + 5 * 60 + 6),
        ("P1W", 7 * DAY),
        ("P90D", 90 * DAY),
        ("P1Y", 365 * DAY),
        ("P1M", 30 * DAY),
        ("PT1M", 60),
        ("PT1S", 1),
        ("P1DT1M", DAY + 60),
        ("P2W3D", 17 * DAY),
        ("P0DT1H", 3600),
        ("P007D", 7 * DAY),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "P",
        "PT",
        "P1",
        "30D",
        "P1H",  # hours without T
        "PT1D",  # days after T
        "P1DT",  # a T with no time after it
        "P-1D",
        "P+1D",
        "P1.5D",
        "P1,5D",
        "P1D1Y",  # out of order
        "P1D1D",
        "PT1H1H",
        "p1d",
        "P1d",
        " P1D",
        "P1D ",
        "P1D\n",
        "P0D",  # zero
        "PT0S",
        "P\u0663D",  # ARABIC-INDIC DIGIT THREE: a digit to str.isdigit, not to ISO 8601
        "P\u00b2D",  # SUPERSCRIPT TWO
        "P" + "9" * 40 + "D",  # too long
        30,
        None,
        ["P1D"],
    ],
)
def test_what_is_not_a_duration_is_refused_by_each_side(text: object) -> None:
    with pytest.raises(InvalidDuration, match="ISO 8601 duration|shorter than a second"):
        parse_duration(text)
    with pytest.raises(BadParameter):  # the vault: a 400
        vault_objects.parse_duration(text)
    if isinstance(text, str):
        with pytest.raises(InvalidSpec):  # the operator: a spec a person has to change
            key_reconcile.duration_seconds(text)


def test_the_vault_and_the_operator_count_durations_alike() -> None:
    for text in ("PT12H", "P1Y2M3DT4H5M6S", "P1W", "P30D"):
        assert vault_keys.parse_duration(text) == key_reconcile.duration_seconds(text)


@pytest.mark.parametrize("text", ["P1D", "P1Y", "P2M", "P3W", "P1Y2M3W4D", "P10Y"])
def test_every_duration_a_resource_may_write_is_one_the_vault_reads(text: str) -> None:
    assert re.fullmatch(DAYS_OR_MORE_PATTERN, text)
    assert re.fullmatch(MINUTES_OR_MORE_PATTERN, text)
    assert parse_duration(text) % DAY == 0


@pytest.mark.parametrize("text", ["PT12H", "PT5M", "P1DT6H", "P1DT6H30M", "P1YT1M"])
def test_a_secret_rotation_may_also_be_hours_and_minutes(text: str) -> None:
    assert re.fullmatch(MINUTES_OR_MORE_PATTERN, text)
    assert not re.fullmatch(DAYS_OR_MORE_PATTERN, text)
    assert parse_duration(text) % 60 == 0
    assert secret_reconcile.rotate_after_seconds(text) == parse_duration(text)


def test_permissions_and_key_operations_exist_once() -> None:
    assert vault_keys.KEY_OPS is vocabulary.KEY_OPS is key_reconcile.KEY_OPS
    assert vault_keys.family is vocabulary.family is key_reconcile.family
    # Every operation a key may have is one the CRD lets a Key ask for, and the reverse.
    operations = {op for ops in vocabulary.KEY_OPS.values() for op in ops}
    assert operations == set(get_args(vocabulary.KeyOperation))


# --- the management API's bodies ----------------------------------------------------------


def refused(model: type[pydantic.BaseModel], body: Any) -> str:
    """Why `body`, sent as JSON, is refused: as the vault server reads a request."""
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate_json(json.dumps(body))
    message = wire.problems(caught.value)
    assert CANARY not in message
    return message


@pytest.mark.parametrize(
    "body,words",
    [
        ({"kty": "EC"}, "owner: Field required"),
        ({"owner": "", "kty": "EC"}, "owner: String should have at least 1 character"),
        ({"owner": "u" * 129, "kty": "EC"}, "owner: String should have at most 128"),
        ({"owner": "u"}, "kty: Field required"),
        ({"owner": "u", "kty": "RSA", "key_size": "2048"}, "key_size: Input should be a valid"),
        ({"owner": "u", "kty": "RSA", "key_size": True}, "key_size: Input should be a valid"),
        ({"owner": "u", "kty": "EC", "key_ops": "sign"}, "key_ops: Input should be a valid array"),
        ({"owner": "u", "kty": "EC", "attributes": {"exp": "soon"}}, "attributes.exp:"),
        ({"owner": "u", "kty": "EC", "attributes": {"enabled": 1}}, "attributes.enabled:"),
        ({"owner": "u", "kty": "EC", "tags": {"a": 1}}, "tags.a: Input should be a valid string"),
    ],
)
def test_a_bad_key_body_names_the_field(body: dict[str, Any], words: str) -> None:
    assert words in refused(wire.KeyPut, body)


@pytest.mark.parametrize(
    "body,words",
    [
        ({"value": CANARY}, "owner: Field required"),
        ({"owner": "u"}, "'value' or 'generate'"),
        ({"owner": "u", "value": CANARY, "generate": {}}, "'value' or 'generate'"),
        ({"owner": "u", "value": 5}, "value: Input should be a valid string"),
        ({"owner": "u", "generate": {"length": 8}}, "generate.length: 16-4096 bytes of"),
        ({"owner": "u", "generate": {"length": 4097}}, "generate.length: 16-4096 bytes"),
        ({"owner": "u", "generate": {"length": "32"}}, "generate.length: Input should be a"),
        ({"owner": "u", "generate": {"encoding": "rot13"}}, "generate.encoding: Input should be"),
        ({"owner": "u", "generate": []}, "generate: Input should be an object"),
        ({"owner": "u", "value": CANARY, "contentType": 5}, "contentType: Input should be"),
    ],
)
def test_a_bad_secret_body_names_the_field_and_never_the_value(
    body: dict[str, Any], words: str
) -> None:
    assert words in refused(wire.SecretPut, body)


@pytest.mark.parametrize(
    "body,words",
    [
        ({"owner": "u", "generate": {}}, "ifCurrentVersion: Field required"),
        ({"owner": "u", "ifCurrentVersion": ""}, "ifCurrentVersion: String should have at"),
        ({"owner": "u", "ifCurrentVersion": "v"}, "generate: Field required"),
        (
            {"owner": "u", "ifCurrentVersion": "v", "generate": {}, "value": CANARY},
            "a rotation is generated in the HSM: give 'generate', not 'value'",
        ),
    ],
)
def test_a_bad_rotation_body_names_the_field(body: dict[str, Any], words: str) -> None:
    assert words in refused(wire.SecretRotate, body)


@pytest.mark.parametrize(
    "body,words",
    [
        ({}, "hosts: Field required"),
        ({"hosts": []}, "hosts: List should have at least 1 item"),
        ({"hosts": [""]}, "hosts: each host name is 1-253 characters"),
        ({"hosts": ["h"], "retentionDays": 3}, "retentionDays: Input should be greater"),
        ({"hosts": ["h"], "retentionDays": "30"}, "retentionDays: Input should be a valid"),
        ({"hosts": ["h"], "purgeProtection": "false"}, "purgeProtection: Input should be a valid"),
        ({"hosts": ["h"], "audience": ""}, "audience: String should have at least 1"),
        ({"hosts": ["h"], "access": [{"keys": ["get"]}]}, "access[0].subject: Field required"),
        (
            {"hosts": ["h"], "access": [{"subject": "s", "keys": ["get", "export"]}]},
            "access[0].keys: unknown keys permission(s): export",
        ),
        (
            {"hosts": ["h"], "access": [{"subject": "s", "secrets": ["sign"]}]},
            "access[0].secrets: unknown secrets permission(s): sign",
        ),
    ],
)
def test_a_bad_vault_body_names_the_field(body: dict[str, Any], words: str) -> None:
    assert words in refused(wire.VaultSettings, body)


def test_permissions_match_case_insensitively_and_keep_all() -> None:
    grant = wire.AccessGrant.model_validate(
        {"subject": "s", "keys": ["Sign", "WRAPKEY", "ALL"], "secrets": ["get"]}
    )
    assert grant.keys == ["sign", "wrapKey", "all"] and grant.secrets == ["get"]


def test_json_that_is_not_an_object_is_refused() -> None:
    for raw, words in ((b'{"hosts": ', "Invalid JSON"), (b"[1]", "Input should be an object")):
        with pytest.raises(pydantic.ValidationError) as caught:
            wire.VaultSettings.model_validate_json(raw)
        assert words in wire.problems(caught.value)


def test_what_is_set_is_what_is_sent() -> None:
    """Unset optional fields stay off the wire; fields set to None are sent as null."""
    settings = wire.VaultSettings(hosts=["A.example"], retention_days=7)
    assert settings.wire() == {"hosts": ["a.example"], "retentionDays": 7}
    body = wire.KeyCreate(kty="EC", crv="P-256", attributes=wire.NewAttributes(nbf=None))
    assert body.wire() == {"kty": "EC", "crv": "P-256", "attributes": {"nbf": None}}
    served = wire.ServedTls.model_validate({"dnsNames": ["a"], "notAfter": "2030-01-02T03:04:05Z"})
    assert served.wire() == {"dnsNames": ["a"], "notAfter": "2030-01-02T03:04:05Z"}


def test_a_pool_answer_of_the_wrong_shape_is_a_pool_error_not_a_bad_spec() -> None:
    with pytest.raises(PoolApiError) as caught:
        read_answer(wire.SecretState, {"name": "s", "versions": []})
    assert caught.value.status == 502 and caught.value.code == "InvalidAnswer"
    assert "id: Field required" in caught.value.message
    assert "versions: List should have at least 1 item" in caught.value.message


# --- layering -------------------------------------------------------------------------------

PACKAGE = Path(strongroom.__file__).parent


def imported_packages(package: str) -> set[str]:
    """The strongroom packages (and top-level modules) that `package` imports, anywhere in
    its modules: relative imports resolved, functions' lazy imports included."""
    found = set()
    for path in (PACKAGE / package).rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = list(parts[: len(parts) - node.level])
                    target = base + (node.module.split(".") if node.module else [])
                elif node.module and node.module.startswith("strongroom."):
                    target = node.module.split(".")[1:]
                else:
                    continue
                if not target:  # `from .. import x`: the modules x of the package itself
                    target = [alias.name for alias in node.names][:1]
                found.add(target[0])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("strongroom."):
                        found.add(alias.name.split(".")[1])
    return found - {package}


def test_the_shared_vocabulary_is_a_leaf() -> None:
    assert imported_packages("api") == set()


def test_the_vault_and_the_operator_meet_only_in_the_shared_vocabulary() -> None:
    assert imported_packages("models") <= {"api"}
    assert not imported_packages("vault") & {"reconcile", "operator", "models", "builders"}
    assert not imported_packages("reconcile") & {"vault", "operator"}
    assert "api" in imported_packages("vault") and "api" in imported_packages("reconcile")
