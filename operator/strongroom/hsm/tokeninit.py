"""C_InitToken, which python-pkcs11 does not expose, through a small ctypes binding.

The module must already be initialized in this process (python-pkcs11 does
that); a PKCS#11 module is one instance per process, so the slot list seen
here is the one python-pkcs11 sees.
"""

import ctypes

from .errors import HsmError, HsmUnavailable

CKR_OK = 0
CKF_TOKEN_PRESENT = 0x1
CKF_TOKEN_INITIALIZED = 0x400
CK_ULONG = ctypes.c_ulong
CK_RV = ctypes.c_ulong

_FUNCTION_NAMES = (
    "C_Initialize",
    "C_Finalize",
    "C_GetInfo",
    "C_GetFunctionList",
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismList",
    "C_GetMechanismInfo",
    "C_InitToken",
)


class _FunctionList(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)] + [
        (name, ctypes.c_void_p) for name in _FUNCTION_NAMES
    ]


class _TokenInfo(ctypes.Structure):
    _fields_ = [
        ("label", ctypes.c_char * 32),
        ("manufacturerID", ctypes.c_char * 32),
        ("model", ctypes.c_char * 16),
        ("serialNumber", ctypes.c_char * 16),
        ("flags", CK_ULONG),
        ("rest", ctypes.c_byte * 256),
    ]


class _Module:
    def __init__(self, path: str) -> None:
        try:
            so = ctypes.CDLL(path)
        except OSError as exc:
            raise HsmUnavailable(f"cannot load PKCS#11 module {path}") from exc
        functions = ctypes.POINTER(_FunctionList)()
        self._check("C_GetFunctionList", so.C_GetFunctionList(ctypes.byref(functions)))
        self._fl = functions.contents

    @staticmethod
    def _check(name: str, rv: int) -> None:
        if rv != CKR_OK:
            raise HsmError(f"{name} failed with CKR 0x{rv:x}")

    def call(self, name: str, argtypes: tuple[object, ...], *args: object) -> None:
        prototype = ctypes.CFUNCTYPE(CK_RV, *argtypes)  # type: ignore[arg-type]
        function = prototype(getattr(self._fl, name))
        self._check(name, function(*args))


def init_free_token(module_path: str, label: str, so_pin: str) -> None:
    """Initialize the first uninitialized slot as a token named `label`."""
    encoded_label = label.encode()
    if len(encoded_label) > 32:
        raise ValueError("token labels are at most 32 bytes")
    module = _Module(module_path)
    count = CK_ULONG(0)
    ulong_p = ctypes.POINTER(CK_ULONG)
    module.call("C_GetSlotList", (ctypes.c_ubyte, ulong_p, ulong_p), 1, None, ctypes.byref(count))
    slots = (CK_ULONG * count.value)()
    module.call("C_GetSlotList", (ctypes.c_ubyte, ulong_p, ulong_p), 1, slots, ctypes.byref(count))
    for slot in slots[: count.value]:
        info = _TokenInfo()
        module.call("C_GetTokenInfo", (CK_ULONG, ctypes.c_void_p), slot, ctypes.byref(info))
        if info.flags & CKF_TOKEN_INITIALIZED:
            continue
        pin = so_pin.encode()
        module.call(
            "C_InitToken",
            (CK_ULONG, ctypes.c_char_p, CK_ULONG, ctypes.c_char_p),
            slot,
            pin,
            len(pin),
            encoded_label.ljust(32, b" "),
        )
        return
    raise HsmError("the HSM has no free slot for a new token")
