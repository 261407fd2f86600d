"""One typed HSM interface: the socket client and the engine implement every operation of
`api.Hsm` with the same parameters, and the sidecar serves those and nothing else."""

import inspect

import pytest

from strongroom.hsm.api import OPERATIONS, Hsm
from strongroom.hsm.client import HsmClient
from strongroom.hsm.engine import Engine
from strongroom.hsm.sidecar import Sidecar


def _parameters(function: object) -> list[tuple[str, object]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [(p.name, p.annotation) for p in signature.parameters.values() if p.name != "self"]


def test_the_interface_names_every_operation() -> None:
    assert "sign" in OPERATIONS and "seal_records" in OPERATIONS and "load_key" in OPERATIONS
    assert not any(name.startswith("_") for name in OPERATIONS)
    assert len(OPERATIONS) >= 25


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_the_client_implements_each_operation_alike(op: str) -> None:
    declared = getattr(Hsm, op)
    implemented = getattr(HsmClient, op)
    assert inspect.iscoroutinefunction(implemented)
    assert _parameters(implemented) == _parameters(declared)
    assert inspect.signature(implemented).return_annotation == (
        inspect.signature(declared).return_annotation
    )


@pytest.mark.parametrize("op", sorted(OPERATIONS - {"ping"}))
def test_the_engine_has_each_operation_with_the_same_parameters(op: str) -> None:
    declared = [name for name, _ in _parameters(getattr(Hsm, op))]
    implemented = [name for name, _ in _parameters(getattr(Engine, op))]
    assert implemented == declared


def test_the_sidecar_refuses_what_is_not_an_operation() -> None:
    sidecar = Sidecar(object())  # type: ignore[arg-type]
    for op in ("close", "_session", "__init__", "put_record", "restore_key"):
        with pytest.raises(Exception, match="unknown HSM operation"):
            sidecar.call(op, {})
