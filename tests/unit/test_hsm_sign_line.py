"""`sign` travels the HSM socket as a plain line, not JSON (hsm/protocol.py); anything the
plain form cannot carry travels as JSON, and a line out of shape is refused alone."""

import hashlib
from typing import Any

import pytest
from pkcs11 import exceptions as p11

from strongroom.hsm import errors, protocol
from strongroom.hsm.engine import _mapped_errors
from strongroom.hsm.sidecar import Sidecar

DIGEST = hashlib.sha256(b"payload").digest()


def args(**changes: Any) -> dict[str, Any]:
    return {"vault": "v1", "key_id": "0a1b", "alg": "ES256", "digest": DIGEST} | changes


def test_a_sign_request_is_one_plain_line_that_decodes_to_its_arguments() -> None:
    line = protocol.frame(42, "sign", args())
    assert line.startswith(b"S42 v1 0a1b ES256 ") and line.endswith(b"\n")
    assert b"{" not in line
    assert protocol.decode_sign(line) == (42, args())


@pytest.mark.parametrize(
    "changes",
    [{"vault": "a b"}, {"key_id": ""}, {"alg": "ES\n256"}, {"vault": "vé"}, {"digest": "text"}],
)
def test_names_the_plain_line_cannot_carry_go_as_json(changes: dict[str, Any]) -> None:
    line = protocol.frame(7, "sign", args(**changes))
    decoded = protocol.decode(line)
    assert decoded == {"i": 7, "op": "sign", "a": args(**changes)}


def test_other_operations_stay_json() -> None:
    assert protocol.decode(protocol.frame(3, "ping", {})) == {"i": 3, "op": "ping", "a": {}}


@pytest.mark.parametrize(
    "line",
    [
        b"S1 v1 0a1b ES256\n",
        b"S1 v1 0a1b ES256 AAAA extra\n",
        b"Sx v1 0a1b ES256 AAAA\n",
        b"S1 v1 0a1b ES256 not*base64\n",
        b"S1  v1 0a1b ES256\n",
    ],
)
def test_a_sign_line_out_of_shape_is_refused_as_malformed(line: bytes) -> None:
    with pytest.raises(ValueError):
        protocol.decode_sign(line)
    answer = protocol.decode(Sidecar(object()).answer(line))  # type: ignore[arg-type]
    assert answer["e"] == ["InvalidInput", "malformed request"]


class _Signer:
    """An engine stand-in for the sidecar: signs, or fails as told."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.domain = self
        self.calls: list[dict[str, Any]] = []

    def refuse_unless_activated(self, op: str) -> None:
        return None

    def sign(self, **kwargs: Any) -> bytes:
        self.calls.append(kwargs)
        if self.failure is not None:
            raise self.failure
        return b"signature:" + kwargs["digest"]


def test_the_sidecar_answers_a_sign_line_with_a_plain_line_and_errors_as_json() -> None:
    signer = _Signer()
    sidecar = Sidecar(signer)  # type: ignore[arg-type]
    answer = sidecar.answer(protocol.frame(9, "sign", args()))
    assert signer.calls == [args()]
    assert protocol.decode_sign_answer(answer) == (9, b"signature:" + DIGEST)
    failing = Sidecar(_Signer(errors.KeyNotLoaded("key 0a1b of vault 'v1' is not loaded")))  # type: ignore[arg-type]
    refused = protocol.decode(failing.answer(protocol.frame(10, "sign", args())))
    assert refused == {"i": 10, "e": ["KeyNotLoaded", "key 0a1b of vault 'v1' is not loaded"]}
    assert isinstance(protocol.error_from(refused["e"]), errors.KeyNotLoaded)


@pytest.mark.parametrize(
    ("raised", "mapped"),
    [
        (p11.FunctionRejected(), errors.OperationNotAllowed),
        (p11.DataLenRange(), errors.InvalidInput),
        (p11.KeyHandleInvalid(), errors.KeyNotLoaded),
        (p11.ObjectHandleInvalid(), errors.KeyNotLoaded),
        (p11.NoSuchKey(), errors.KeyNotFound),
        (p11.SessionHandleInvalid(), errors.HsmUnavailable),
        (p11.GeneralError(), errors.HsmError),
    ],
)
def test_pkcs11_errors_become_the_hsm_errors_the_sidecar_answers_with(
    raised: Exception, mapped: type[errors.HsmError]
) -> None:
    with pytest.raises(mapped) as caught, _mapped_errors("signing with ES256"):
        raise raised
    assert type(caught.value) is mapped
    assert caught.value.__cause__ is raised
    assert "signing with ES256" in str(caught.value)


def test_other_errors_pass_through_the_mapping_unchanged() -> None:
    for error in (errors.KeyNotLoaded("x"), ValueError("y")):
        with pytest.raises(type(error)) as caught, _mapped_errors("signing"):
            raise error
        assert caught.value is error
