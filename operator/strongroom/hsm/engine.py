"""Every PKCS#11 call strongroom makes, against one module loaded once in one process.

The engine is synchronous and not thread-safe on purpose: libsofthsm2 loaded
in-process aborts under concurrent use, so the sidecar drives one engine from
one thread. Callers see the exceptions of `errors`, never a raw PKCS11Error,
and no message carries key material, a PIN or a secret value.
"""

import hashlib
import hmac
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import pkcs11
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.constants import DEFAULT
from pkcs11.mechanisms import MGF, GCMParams
from pkcs11.util.ec import encode_named_curve_parameters

from .. import poolbackup
from . import templates
from .api import GeneratedKey
from .domain import Domain
from .errors import (
    HsmError,
    HsmUnavailable,
    InvalidInput,
    KeyNotFound,
    KeyNotLoaded,
    OperationNotAllowed,
    TokenNotFound,
)
from .pins import so_pin, user_pin
from .rsapad import oaep_decode, pkcs1_v15_decode
from .tokeninit import init_free_token

log = logging.getLogger(__name__)

# One page of `list_token_records` carries about this many bytes, so no answer on the
# socket grows with a vault; a token record larger than the second is skipped.
RECORD_PAGE_BYTES = 1024 * 1024
MAX_READ_RECORD_BYTES = 2 * 1024 * 1024
# Working keys held loaded at once (session objects); the least recently used goes first.
MAX_LOADED_KEYS = 4096
# The most bytes one seal_records or unseal_records call takes.
MAX_SEAL_BATCH_BYTES = 2 * 1024 * 1024

CURVES = {"P-256": "secp256r1", "P-384": "secp384r1", "P-521": "secp521r1"}
CURVE_BYTES = {"P-256": 32, "P-384": 48, "P-521": 66}

# DER DigestInfo prefixes of PKCS#1 v1.5 signatures (RFC 8017, section 9.2).
_DIGEST_INFO = {
    "SHA256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "SHA384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "SHA512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_HASH_MECHANISM = {
    "SHA256": Mechanism.SHA256,
    "SHA384": Mechanism.SHA384,
    "SHA512": Mechanism.SHA512,
}
_HASH_MGF = {"SHA256": MGF.SHA256, "SHA384": MGF.SHA384, "SHA512": MGF.SHA512}
_DIGEST_SIZE = {"SHA256": 32, "SHA384": 48, "SHA512": 64}

# Key attributes read back by `key_attributes`, for the invariant tests.
INVARIANT_ATTRIBUTES = (
    Attribute.TOKEN,
    Attribute.PRIVATE,
    Attribute.SENSITIVE,
    Attribute.EXTRACTABLE,
    Attribute.ALWAYS_SENSITIVE,
    Attribute.NEVER_EXTRACTABLE,
    Attribute.MODIFIABLE,
)

_PUBLIC_CAPABILITIES = (Attribute.ENCRYPT, Attribute.VERIFY, Attribute.WRAP)

# The parts of an imported RSA key (JWK names, RFC 7518 6.3) and the attribute of each.
_RSA_PARTS = {
    "n": Attribute.MODULUS,
    "e": Attribute.PUBLIC_EXPONENT,
    "d": Attribute.PRIVATE_EXPONENT,
    "p": Attribute.PRIME_1,
    "q": Attribute.PRIME_2,
    "dp": Attribute.EXPONENT_1,
    "dq": Attribute.EXPONENT_2,
    "qi": Attribute.COEFFICIENT,
}
RSA_IMPORT_BITS = (2048, 3072, 4096)
AES_IMPORT_BYTES = (16, 24, 32)
# What C_CreateObject answers for a template it will not make into a key.
_REFUSED_TEMPLATE = (
    p11.AttributeValueInvalid,
    p11.AttributeTypeInvalid,
    p11.TemplateIncomplete,
    p11.TemplateInconsistent,
    p11.DomainParamsInvalid,
)

_REFUSALS = (
    p11.FunctionRejected,
    p11.KeyTypeInconsistent,
    p11.KeyUnextractable,
    p11.AttributeSensitive,
    p11.MechanismInvalid,
    p11.AttributeReadOnly,
    p11.KeyNotWrappable,
)
_BAD_INPUT = (
    p11.DataInvalid,
    p11.DataLenRange,
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.SignatureInvalid,
    p11.SignatureLenRange,
    p11.WrappedKeyInvalid,
    p11.WrappedKeyLenRange,
    p11.MechanismParamInvalid,
    p11.ArgumentsBad,
)


def _hex(data: bytes) -> str:
    return data.hex()


_UNAVAILABLE = (
    p11.DeviceError,
    p11.DeviceRemoved,
    p11.DeviceMemory,
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.TokenNotPresent,
)


class _mapped_errors:  # noqa: N801 - used as `with _mapped_errors(...)`, like a function
    """PKCS#11 errors raised inside, as the HSM errors the sidecar answers with. (A class
    rather than a generator: it is on every operation's path and costs less.)"""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        if exc is None or isinstance(exc, HsmError) or not isinstance(exc, p11.PKCS11Error):
            return False
        what = self.what
        if isinstance(exc, _REFUSALS):
            raise OperationNotAllowed(f"the HSM refused {what}") from exc
        if isinstance(exc, _BAD_INPUT):
            raise InvalidInput(f"the HSM rejected the input of {what}") from exc
        if isinstance(exc, p11.ObjectHandleInvalid | p11.KeyHandleInvalid):
            raise KeyNotLoaded(f"the key for {what} is no longer loaded") from exc
        if isinstance(exc, p11.NoSuchKey):
            raise KeyNotFound(f"no such key for {what}") from exc
        if isinstance(exc, _UNAVAILABLE):
            raise HsmUnavailable(f"the HSM failed during {what}") from exc
        raise HsmError(f"{what} failed in the HSM ({type(exc).__name__})") from exc


class Engine:
    """One loaded PKCS#11 module, one logged-in session per vault token."""

    def __init__(
        self,
        module_path: str,
        pool_secret: bytes,
        domain_file: Path | None = None,
        await_activation: bool = False,
    ) -> None:
        self._module_path = module_path
        self._pool_secret = pool_secret
        self._state_dir = domain_file.parent if domain_file is not None else None
        try:
            self._lib = pkcs11.lib(module_path)
        except p11.PKCS11Error as exc:
            raise HsmUnavailable(f"cannot load PKCS#11 module {module_path}") from exc
        self._sessions: dict[str, pkcs11.Session] = {}
        self._objects: dict[tuple[str, str, str], Any] = {}
        self._records: dict[tuple[str, str], Any] = {}
        self._loaded: OrderedDict[tuple[str, str], Any] = OrderedDict()
        # The security domain (hsm/domain.py); a restored one sets `_pool_secret`.
        self.domain = Domain(self, pool_secret, domain_file, await_activation)

    # --- tokens -------------------------------------------------------------

    def _token(self, vault: str) -> pkcs11.Token:
        for slot in self._lib.get_slots(token_present=True):
            token = slot.get_token()
            if token.label == vault and token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED:
                return token
        raise TokenNotFound(f"no token for vault {vault!r}")

    def vault_names(self) -> list[str]:
        """Labels of the initialized tokens: the vaults this pool holds (the pool's own
        token, `strongroom:pool`, has a colon, which no vault's name has)."""
        with _mapped_errors("listing tokens"):
            return sorted(
                token.label
                for token in (s.get_token() for s in self._lib.get_slots(token_present=True))
                if token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED and ":" not in token.label
            )

    def platform(self) -> str:
        """The module's maker, description and version, for the pool's status."""
        lib = self._lib
        major, minor = lib.library_version
        return f"{lib.manufacturer_id.strip()} {lib.library_description.strip()} {major}.{minor}"

    def has_vault(self, vault: str) -> bool:
        try:
            self._token(vault)
        except TokenNotFound:
            return False
        return True

    def ensure_vault(self, vault: str) -> None:
        """Create the vault's token, its PINs and its key-encryption keys; idempotent."""
        with _mapped_errors(f"creating the token of vault {vault!r}"):
            if not self.has_vault(vault):
                init_free_token(self._module_path, vault, so_pin(self._pool_secret, vault))
                token = self._token(vault)
                with token.open(rw=True, so_pin=so_pin(self._pool_secret, vault)) as so_session:
                    so_session.init_pin(user_pin(self._pool_secret, vault))
            session = self._session(vault)
            for label, template in (
                (templates.KEK_LABEL, templates.vault_kek()),
                (templates.SEAL_LABEL, templates.vault_seal_key()),
            ):
                found = list(
                    session.get_objects(
                        {Attribute.LABEL: label, Attribute.CLASS: ObjectClass.SECRET_KEY}
                    )
                )
                if not found:
                    session.generate_key(KeyType.AES, 256, store=True, template=template)

    def _session(self, vault: str) -> pkcs11.Session:
        session = self._sessions.get(vault)
        if session is None:
            token = self._token(vault)
            try:
                session = token.open(rw=True, user_pin=user_pin(self._pool_secret, vault))
            except p11.UserAlreadyLoggedIn:
                session = token.open(rw=True)
            self._sessions[vault] = session
        return session

    def _secret_key(self, vault: str, label: str) -> Any:
        """A vault's root key (key-encryption or sealing) by label, as a session-object copy
        of the token object: SoftHSM2 checks a token object's file on every use, which
        doubles the cost of opening a record. The copy keeps the key's SENSITIVE and
        non-EXTRACTABLE attributes (a copy can never loosen them), has a label of its own (a
        look-up by the root key's label finds the token object alone), lives in this
        process's session only, and goes with it; a module that refuses the copy uses the
        token object itself."""
        cached = self._objects.get((vault, label, "label"))
        if cached is None:
            stored = self._session(vault).get_key(ObjectClass.SECRET_KEY, label=label)
            try:
                cached = stored.copy({Attribute.TOKEN: False, Attribute.LABEL: f"{label}:in-use"})
            except p11.PKCS11Error:
                cached = stored
            self._objects[(vault, label, "label")] = cached
        return cached

    def _key(self, vault: str, key_id: str, object_class: ObjectClass) -> Any:
        """A loaded working key of this class; KeyNotLoaded when it is not loaded."""
        key = self._loaded.get((vault, key_id))
        if key is None:
            raise KeyNotLoaded(f"key {key_id} of vault {vault!r} is not loaded")
        if key.object_class != object_class:
            raise KeyNotFound(f"key {key_id} is not a {object_class.name.lower()}")
        self._loaded.move_to_end((vault, key_id))
        return key

    def _private(self, vault: str, key_id: str) -> Any:
        key = self._loaded.get((vault, key_id))
        if key is None:
            raise KeyNotLoaded(f"key {key_id} of vault {vault!r} is not loaded")
        return key

    def _remember(self, vault: str, key_id: str, key: Any) -> None:
        """Hold a working key loaded; beyond the bound the least recently used goes."""
        old = self._loaded.pop((vault, key_id), None)
        if old is not None and old is not key:
            _destroy_quietly(old)
        self._loaded[(vault, key_id)] = key
        while len(self._loaded) > MAX_LOADED_KEYS:
            _, evicted = self._loaded.popitem(last=False)
            _destroy_quietly(evicted)

    # --- the security domain (hsm/domain.py) ------------------------------------------

    @property
    def activated(self) -> bool:
        return self.domain.activated

    def domain_state(self) -> dict[str, Any]:
        return self.domain.state()

    def domain_download(self, request: dict[str, Any]) -> str:
        with _mapped_errors("activating the pool"):
            return self.domain.download(request)

    def domain_transfer_key(self) -> str:
        with _mapped_errors("making the transfer key"):
            return self.domain.transfer_key()

    def domain_upload(self, value: str) -> dict[str, Any]:
        with _mapped_errors("restoring the security domain"):
            return self.domain.upload(value)

    def domain_held_download(self) -> str:
        return self.domain.held_download()

    def domain_release_download(self) -> None:
        self.domain.release_download()

    def snapshot_tokens(self) -> dict[str, Any]:
        """The token directory as a tar beside it (poolbackup.py). The sidecar runs one
        operation at a time, so no token file is half written in the copy."""
        if self._state_dir is None or "softhsm" not in self._module_path:
            raise InvalidInput(
                "a backup copies SoftHSM2's token directory; a pool on another PKCS#11 "
                "module is backed up by its HSM's own means"
            )
        try:
            return poolbackup.snapshot_tokens(self._state_dir / "tokens", self._state_dir)
        except (poolbackup.BackupError, OSError) as exc:
            raise HsmError(
                f"the token directory could not be copied ({type(exc).__name__})"
            ) from None

    # --- keys ---------------------------------------------------------------

    def generate_rsa(self, vault: str, key_id: str, label: str, bits: int) -> GeneratedKey:
        return self._generate_rsa(vault, key_id, label, bits, export=False)

    def _generate_rsa(
        self, vault: str, key_id: str, label: str, bits: int, *, export: bool
    ) -> GeneratedKey:
        with _mapped_errors("generating an RSA key"):
            session = self._session(vault)
            kid = bytes.fromhex(key_id)
            public, private = session.generate_keypair(
                KeyType.RSA,
                bits,
                store=False,
                public_template=templates.rsa_public(kid, label, bits),
                private_template=templates.rsa_private(kid, label),
            )
            parts: dict[str, str | int] = {
                "n": _hex(public[Attribute.MODULUS]),
                "e": _hex(public[Attribute.PUBLIC_EXPONENT]),
            }
            wrapped, exported = self._seal_fresh(vault, key_id, private, export=export)
            return GeneratedKey(parts, wrapped, exported)

    def generate_ec(self, vault: str, key_id: str, label: str, curve: str) -> GeneratedKey:
        return self._generate_ec(vault, key_id, label, curve, export=False)

    def _generate_ec(
        self, vault: str, key_id: str, label: str, curve: str, *, export: bool
    ) -> GeneratedKey:
        if curve not in CURVES:
            raise InvalidInput(f"unsupported curve {curve!r}")
        with _mapped_errors("generating an EC key"):
            session = self._session(vault)
            kid = bytes.fromhex(key_id)
            params = encode_named_curve_parameters(CURVES[curve])
            public, private = session.generate_keypair(
                KeyType.EC,
                store=False,
                public_template=templates.ec_public(kid, label, params),
                private_template=templates.ec_private(kid, label),
            )
            point = _ec_point(public[Attribute.EC_POINT], CURVE_BYTES[curve])
            size = CURVE_BYTES[curve]
            parts: dict[str, str | int] = {"x": _hex(point[:size]), "y": _hex(point[size:])}
            wrapped, exported = self._seal_fresh(vault, key_id, private, export=export)
            return GeneratedKey(parts, wrapped, exported)

    def generate_aes(self, vault: str, key_id: str, label: str, bits: int) -> GeneratedKey:
        if bits not in (128, 192, 256):
            raise InvalidInput(f"unsupported AES key size {bits}")
        with _mapped_errors("generating an AES key"):
            key = self._session(vault).generate_key(
                KeyType.AES,
                bits,
                store=False,
                template=templates.aes_secret(bytes.fromhex(key_id), label, bits),
            )
            return GeneratedKey({}, self._seal_new_key(vault, key_id, key))

    def generate_exportable(
        self, vault: str, key_id: str, label: str, kty: str, bits: int, curve: str
    ) -> GeneratedKey:
        """An RSA or EC key made by the HSM whose private key leaves it once, now, as
        PKCS#8 DER: what a certificate with an exportable key policy needs for its PFX or
        PEM. Exportable is decided here, at birth: the key is then wrapped under the KEK
        and made non-extractable like every other working key, and no later operation
        returns it. Only the non-HSM key types (RSA, EC) are ever exportable."""
        if kty == "RSA":
            if bits not in (2048, 3072, 4096):
                raise InvalidInput(f"unsupported RSA key size {bits}")
            return self._generate_rsa(vault, key_id, label, bits, export=True)
        if kty == "EC":
            return self._generate_ec(vault, key_id, label, curve, export=True)
        raise InvalidInput(f"only RSA and EC keys are exportable, not {kty!r}")

    def _export_private(self, vault: str, key: Any) -> bytes:
        """The private key as PKCS#8 DER, while it is still extractable: wrapped under a
        one-time AES key (a session object destroyed straight after) and unwrapped here."""
        carrier: Any = self._session(vault).generate_key(
            KeyType.AES,
            256,
            store=False,
            template={
                Attribute.TOKEN: False,
                Attribute.SENSITIVE: False,
                Attribute.EXTRACTABLE: True,
                Attribute.WRAP: True,
                Attribute.UNWRAP: False,
                Attribute.ENCRYPT: False,
                Attribute.DECRYPT: False,
            },
        )
        try:
            wrapped = bytes(carrier.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD))
            one_time = bytes(carrier[Attribute.VALUE])
        finally:
            carrier.destroy()
        return _der_prefix(aes_key_unwrap_with_padding(one_time, wrapped))

    def _seal_new_key(self, vault: str, key_id: str, key: Any) -> bytes:
        """Wrap a fresh key under the vault's KEK, make it non-extractable for good, and
        hold it loaded. The wrapped blob is the only form of the key that leaves the HSM."""
        return self._seal_fresh(vault, key_id, key, export=False)[0]

    def _seal_fresh(
        self, vault: str, key_id: str, key: Any, *, export: bool
    ) -> tuple[bytes, bytes | None]:
        """`_seal_new_key`, and with `export` the private key as PKCS#8 DER, read while
        the key is still extractable (generate_exportable only)."""
        try:
            wrapped: bytes = self._secret_key(vault, templates.KEK_LABEL).wrap_key(
                key, mechanism=Mechanism.AES_KEY_WRAP_PAD
            )
            exported = self._export_private(vault, key) if export else None
            key[Attribute.EXTRACTABLE] = False
        except BaseException:
            key.destroy()
            raise
        self._remember(vault, key_id, key)
        return bytes(wrapped), exported

    def import_key(
        self, vault: str, key_id: str, label: str, kty: str, crv: str, parts: dict[str, bytes]
    ) -> GeneratedKey:
        """Bring a caller's private key (BYOK) in as a working key, kept as a generated one
        is: a SENSITIVE session object, wrapped once under the vault's KEK, then
        non-extractable for good. Returns its public parts and the wrapped blob.

        The vault server has already checked that the parts are one consistent key (the
        RSA parameters agree, the EC point is on its curve and is d's); here every part
        must be there, be bytes and have its size. No message names a part's value.
        """
        base = kty.removesuffix("-HSM")
        kid = bytes.fromhex(key_id)
        if base == "RSA":
            _expect_parts(parts, tuple(_RSA_PARTS), "an RSA key")
            modulus = parts["n"].lstrip(b"\0")
            if len(modulus) * 8 not in RSA_IMPORT_BITS:
                raise InvalidInput("an imported RSA key has a modulus of 2048, 3072 or 4096 bits")
            template = templates.imported(
                templates.rsa_private(kid, label), ObjectClass.PRIVATE_KEY, KeyType.RSA
            ) | {attribute: parts[name] for name, attribute in _RSA_PARTS.items()}
            public: dict[str, str | int] = {
                "n": _hex(modulus),
                "e": _hex(parts["e"].lstrip(b"\0")),
            }
        elif base == "EC":
            if crv not in CURVES:
                raise InvalidInput(f"unsupported curve {crv!r}")
            _expect_parts(parts, ("x", "y", "d"), "an EC key")
            size = CURVE_BYTES[crv]
            if any(len(parts[name]) != size for name in ("x", "y", "d")):
                raise InvalidInput(f"an imported {crv} key's x, y and d are {size} bytes each")
            template = templates.imported(
                templates.ec_private(kid, label), ObjectClass.PRIVATE_KEY, KeyType.EC
            ) | {
                Attribute.EC_PARAMS: encode_named_curve_parameters(CURVES[crv]),
                Attribute.VALUE: parts["d"],
            }
            public = {"x": _hex(parts["x"]), "y": _hex(parts["y"])}
        elif base == "oct":
            _expect_parts(parts, ("k",), "an AES key")
            if len(parts["k"]) not in AES_IMPORT_BYTES:
                raise InvalidInput("an imported AES key is 16, 24 or 32 bytes")
            template = templates.imported(
                templates.aes_secret(kid, label, len(parts["k"]) * 8),
                ObjectClass.SECRET_KEY,
                KeyType.AES,
            ) | {Attribute.VALUE: parts["k"]}
            public = {}
        else:
            raise InvalidInput(f"unknown key type {kty!r}")
        with _mapped_errors("importing a key"):
            try:
                key = self._session(vault).create_object(template)
            except _REFUSED_TEMPLATE as exc:
                raise InvalidInput(
                    f"the HSM refused the imported key ({type(exc).__name__})"
                ) from None
            return GeneratedKey(public, self._seal_new_key(vault, key_id, key))

    def load_key(self, vault: str, key_id: str, label: str, kty: str, wrapped: bytes) -> None:
        """Unwrap a working key under the vault's KEK into a session object, sensitive and
        non-extractable from its first moment; a key already loaded stays as it is."""
        if (vault, key_id) in self._loaded:
            self._loaded.move_to_end((vault, key_id))
            return
        base = kty.removesuffix("-HSM")
        with _mapped_errors("loading a key"):
            kid = bytes.fromhex(key_id)
            kek = self._secret_key(vault, templates.KEK_LABEL)
            if base == "RSA":
                object_class, key_type = ObjectClass.PRIVATE_KEY, KeyType.RSA
                template = templates.rsa_private(kid, label)
            elif base == "EC":
                object_class, key_type = ObjectClass.PRIVATE_KEY, KeyType.EC
                template = templates.ec_private(kid, label)
            elif base == "oct":
                object_class, key_type = ObjectClass.SECRET_KEY, KeyType.AES
                template = templates.aes_secret(kid, label, 256)
                del template[Attribute.VALUE_LEN]
            else:
                raise InvalidInput(f"unknown key type {kty!r}")
            if object_class is ObjectClass.PRIVATE_KEY:
                # python-pkcs11 adds every capability; public-key ones are invalid here.
                template |= {attr: DEFAULT for attr in _PUBLIC_CAPABILITIES}
            key = kek.unwrap_key(
                object_class,
                key_type,
                wrapped,
                store=False,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                template=templates.restored(template),
            )
            self._remember(vault, key_id, key)

    def destroy_key(self, vault: str, key_id: str) -> None:
        """Destroy every object of a key version, loaded or in the token (the first
        design kept keys there); absent objects are not an error."""
        with _mapped_errors("destroying a key"):
            loaded = self._loaded.pop((vault, key_id), None)
            if loaded is not None:
                _destroy_quietly(loaded)
            session = self._session(vault)
            for obj in list(session.get_objects({Attribute.ID: bytes.fromhex(key_id)})):
                obj.destroy()

    def token_key_ids(self, vault: str) -> list[str]:
        """Ids of key objects stored in the vault's token: none but what the first design
        left there (working keys are session objects), for migration and orphans."""
        with _mapped_errors("listing keys"):
            ids = set()
            for cls in ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY, ObjectClass.PUBLIC_KEY:
                for obj in self._session(vault).get_objects(
                    {Attribute.CLASS: cls, Attribute.TOKEN: True}
                ):
                    raw = obj[Attribute.ID]
                    if raw:
                        ids.add(raw.hex())
            return sorted(ids)

    def key_attributes(self, vault: str, key_id: str) -> dict[str, bool]:
        with _mapped_errors("reading key attributes"):
            key = self._private(vault, key_id)
            return {attr.name: bool(key[attr]) for attr in INVARIANT_ATTRIBUTES}

    # --- operations -----------------------------------------------------------

    def sign(self, vault: str, key_id: str, alg: str, digest: bytes) -> bytes:
        hash_name = "SHA" + alg[2:]
        if hash_name not in _DIGEST_SIZE:
            raise InvalidInput(f"unsupported signature algorithm {alg!r}")
        if len(digest) != _DIGEST_SIZE[hash_name]:
            raise InvalidInput(
                f"{alg} needs a {_DIGEST_SIZE[hash_name]}-byte digest, got {len(digest)} bytes"
            )
        with _mapped_errors(f"signing with {alg}"):
            key = self._key(vault, key_id, ObjectClass.PRIVATE_KEY)
            if alg.startswith("RS"):
                data = _DIGEST_INFO[hash_name] + digest
                return bytes(key.sign(data, mechanism=Mechanism.RSA_PKCS))
            if alg.startswith("PS"):
                param = (_HASH_MECHANISM[hash_name], _HASH_MGF[hash_name], len(digest))
                return bytes(
                    key.sign(digest, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=param)
                )
            if alg.startswith("ES"):
                return bytes(key.sign(digest, mechanism=Mechanism.ECDSA))
        raise InvalidInput(f"unsupported signature algorithm {alg!r}")

    def rsa_decrypt(self, vault: str, key_id: str, alg: str, data: bytes) -> bytes:
        """RSA decryption that is no padding oracle.

        The HSM applies the private key (raw RSA) and the padding is removed here
        with every check folded into one flag. A malformed RSA1_5 padding yields a
        pseudo-random message derived from the ciphertext and a secret of the key
        (implicit rejection, as in the IETF drafts on RSA PKCS#1 v1.5 guidance), so a
        caller cannot tell it from a real one; a failed OAEP decoding is one fixed error.
        """
        if alg not in ("RSA1_5", "RSA-OAEP", "RSA-OAEP-256"):
            raise InvalidInput(f"unsupported RSA decryption algorithm {alg!r}")
        with _mapped_errors(f"decrypting with {alg}"):
            key = self._key(vault, key_id, ObjectClass.PRIVATE_KEY)
            modulus = bytes(key[Attribute.MODULUS])
            size = len(modulus)
            # Both checks use public values only: they reveal nothing of the plaintext.
            if len(data) != size or data >= modulus.rjust(size, b"\0"):
                raise InvalidInput(
                    f"an RSA ciphertext for this key is {size} bytes, below the modulus"
                )
            encoded = bytes(key.decrypt(data, mechanism=Mechanism.RSA_X_509)).rjust(size, b"\0")
        if alg == "RSA1_5":
            secret = hmac.new(
                self._pool_secret,
                f"strongroom rsa1_5 implicit rejection:{vault}:{key_id}".encode(),
                hashlib.sha256,
            ).digest()
            return pkcs1_v15_decode(encoded, data, secret)
        return oaep_decode(encoded, "sha1" if alg == "RSA-OAEP" else "sha256")

    def aes_gcm_encrypt(
        self, vault: str, key_id: str, data: bytes, iv: bytes, aad: bytes | None
    ) -> tuple[bytes, bytes]:
        """Return (ciphertext, tag)."""
        with _mapped_errors("encrypting with AES-GCM"):
            key = self._key(vault, key_id, ObjectClass.SECRET_KEY)
            out = bytes(
                key.encrypt(
                    data,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(iv, aad or None, 128),
                )
            )
            return out[:-16], out[-16:]

    def aes_gcm_decrypt(
        self, vault: str, key_id: str, data: bytes, iv: bytes, aad: bytes | None, tag: bytes
    ) -> bytes:
        with _mapped_errors("decrypting with AES-GCM"):
            key = self._key(vault, key_id, ObjectClass.SECRET_KEY)
            return bytes(
                key.decrypt(
                    data + tag,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(iv, aad or None, 128),
                )
            )

    def aes_cbc(
        self, vault: str, key_id: str, data: bytes, iv: bytes, pad: bool, encrypt: bool
    ) -> bytes:
        mechanism = Mechanism.AES_CBC_PAD if pad else Mechanism.AES_CBC
        with _mapped_errors("AES-CBC"):
            key = self._key(vault, key_id, ObjectClass.SECRET_KEY)
            if encrypt:
                return bytes(key.encrypt(data, mechanism=mechanism, mechanism_param=iv))
            return bytes(key.decrypt(data, mechanism=mechanism, mechanism_param=iv))

    def aes_wrap(self, vault: str, key_id: str, data: bytes) -> bytes:
        """AES key wrap (RFC 3394) of caller-supplied key bytes."""
        if len(data) < 16 or len(data) % 8:
            raise InvalidInput("AES key wrap needs a key of at least 16 bytes, a multiple of 8")
        with _mapped_errors("wrapping with AES-KW"):
            key = self._key(vault, key_id, ObjectClass.SECRET_KEY)
            session = self._session(vault)
            carrier = session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                    Attribute.TOKEN: False,
                    Attribute.SENSITIVE: False,
                    Attribute.EXTRACTABLE: True,
                    Attribute.VALUE: data,
                }
            )
            try:
                return bytes(key.wrap_key(carrier, mechanism=Mechanism.AES_KEY_WRAP))
            finally:
                carrier.destroy()

    def aes_unwrap(self, vault: str, key_id: str, data: bytes) -> bytes:
        with _mapped_errors("unwrapping with AES-KW"):
            key = self._key(vault, key_id, ObjectClass.SECRET_KEY)
            carrier = key.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.GENERIC_SECRET,
                data,
                mechanism=Mechanism.AES_KEY_WRAP,
                store=False,
                template={
                    Attribute.SENSITIVE: False,
                    Attribute.EXTRACTABLE: True,
                    Attribute.TOKEN: False,
                },
            )
            try:
                return bytes(carrier[Attribute.VALUE])
            finally:
                carrier.destroy()

    def random(self, vault: str, count: int) -> bytes:
        with _mapped_errors("generating random bytes"):
            return bytes(self._session(vault).generate_random(count * 8))

    def seal(self, vault: str, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt a backup blob under the vault's sealing key: iv || ciphertext || tag."""
        with _mapped_errors("sealing a backup"):
            iv = os.urandom(12)
            key = self._secret_key(vault, templates.SEAL_LABEL)
            return iv + bytes(
                key.encrypt(
                    plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, aad, 128)
                )
            )

    def unseal(self, vault: str, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 28:
            raise InvalidInput("the backup blob is truncated")
        with _mapped_errors("opening a backup"):
            key = self._secret_key(vault, templates.SEAL_LABEL)
            return bytes(
                key.decrypt(
                    blob[12:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(blob[:12], aad, 128),
                )
            )

    def seal_records(self, vault: str, aads: list[bytes], plaintexts: list[bytes]) -> list[bytes]:
        """Seal stored records under the vault's sealing key, each bound to its own
        associated data (vault, kind, name, version): iv || ciphertext || tag."""
        self._check_batch(aads, plaintexts)
        with _mapped_errors("sealing records"):
            key = self._secret_key(vault, templates.SEAL_LABEL)
            out = []
            for aad, plaintext in zip(aads, plaintexts, strict=True):
                iv = os.urandom(12)
                out.append(
                    iv
                    + bytes(
                        key.encrypt(
                            plaintext,
                            mechanism=Mechanism.AES_GCM,
                            mechanism_param=GCMParams(iv, aad, 128),
                        )
                    )
                )
            return out

    def unseal_records(self, vault: str, aads: list[bytes], blobs: list[bytes]) -> list[bytes]:
        """Open sealed records; one that is not what its associated data says fails all."""
        self._check_batch(aads, blobs)
        if any(len(blob) < 28 for blob in blobs):
            raise InvalidInput("a sealed record is truncated")
        with _mapped_errors("opening records"):
            key = self._secret_key(vault, templates.SEAL_LABEL)
            return [
                bytes(
                    key.decrypt(
                        blob[12:],
                        mechanism=Mechanism.AES_GCM,
                        mechanism_param=GCMParams(blob[:12], aad, 128),
                    )
                )
                for aad, blob in zip(aads, blobs, strict=True)
            ]

    @staticmethod
    def _check_batch(aads: list[bytes], items: list[bytes]) -> None:
        if len(aads) != len(items):
            raise InvalidInput("each record needs its associated data")
        if sum(len(i) for i in items) > MAX_SEAL_BATCH_BYTES:
            raise InvalidInput(f"one call seals at most {MAX_SEAL_BATCH_BYTES} bytes")

    # --- token records: how the first design stored metadata and secret values ----------
    #
    # Each record was a private data object with an 8-byte write stamp before its value;
    # of two with one name (a crash between create and destroy) the later stamp wins.
    # They are read once, by the migration into the record storage, and then deleted.

    def _find_records(self, vault: str, name: str | None) -> list[Any]:
        attrs: dict[Attribute, Any] = {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.APPLICATION: templates.APPLICATION,
        }
        if name is not None:
            attrs[Attribute.LABEL] = name
        return list(self._session(vault).get_objects(attrs))

    def delete_token_record(self, vault: str, name: str) -> None:
        with _mapped_errors("deleting a record"):
            old = self._records.pop((vault, name), None)
            for obj in [old] if old is not None else self._find_records(vault, name):
                obj.destroy()

    def list_token_records(self, vault: str, after: str) -> dict[str, Any]:
        """One page of the token's records, by name: {"records": {name: value}, "next": name}.

        Ask again with `after` = `next` until `next` is None. The first page (no
        `after`) indexes the vault's records and removes the older of two that
        share a name. A record too large to read is skipped, with its name logged.
        """
        with _mapped_errors("reading records"):
            if not after:
                self._index_records(vault)
            names = sorted(n for (v, n) in self._records if v == vault and n > after)
            page: dict[str, bytes] = {}
            size, last = 0, after
            for name in names:
                raw = bytes(self._records[(vault, name)][Attribute.VALUE])
                if len(raw) - 8 > MAX_READ_RECORD_BYTES:
                    log.warning(
                        "vault %s: record %s is skipped: %d bytes is over the limit",
                        vault,
                        name,
                        len(raw) - 8,
                    )
                    continue
                if page and size + len(raw) > RECORD_PAGE_BYTES:
                    return {"records": page, "next": last}
                page[name] = raw[8:]
                size, last = size + len(raw), name
            return {"records": page, "next": None}

    def _index_records(self, vault: str) -> None:
        for key in [k for k in self._records if k[0] == vault]:
            del self._records[key]
        found: dict[str, list[Any]] = {}
        for obj in self._find_records(vault, None):
            found.setdefault(obj[Attribute.LABEL], []).append(obj)
        for name, objects in found.items():
            if len(objects) > 1:
                objects.sort(key=lambda o: bytes(o[Attribute.VALUE])[:8])
                for stale in objects[:-1]:
                    stale.destroy()
            self._records[(vault, name)] = objects[-1]

    def close(self) -> None:
        for session in self._sessions.values():
            try:
                session.close()
            except p11.PKCS11Error:
                pass
        self._sessions.clear()
        self._objects.clear()
        self._records.clear()
        self._loaded.clear()


def _destroy_quietly(key: Any) -> None:
    try:
        key.destroy()
    except p11.PKCS11Error:
        pass  # a session object goes with its session anyway


def _der_prefix(data: bytes) -> bytes:
    """The first DER element of `data`: SoftHSM2 pads a key to whole AES blocks before it
    wraps it with padding, so the unwrapped PKCS#8 may carry trailing zero bytes."""
    if len(data) < 2 or data[0] != 0x30:
        raise HsmError("the HSM exported a private key in an unexpected encoding")
    if data[1] < 0x80:
        end = 2 + data[1]
    else:
        count = data[1] & 0x7F
        end = 2 + count + int.from_bytes(data[2 : 2 + count], "big")
    if end > len(data):
        raise HsmError("the HSM exported a truncated private key")
    return data[:end]


def _expect_parts(parts: dict[str, bytes], names: tuple[str, ...], what: str) -> None:
    if not isinstance(parts, dict) or set(parts) != set(names):
        raise InvalidInput(f"{what} is imported with exactly the parts {', '.join(names)}")
    if not all(isinstance(parts[name], bytes) and parts[name] for name in names):
        raise InvalidInput(f"each part of {what} is bytes, and not empty")


def _ec_point(raw: bytes, size: int) -> bytes:
    """The X||Y coordinates of a CKA_EC_POINT (a DER OCTET STRING of an uncompressed point)."""
    point = raw
    if len(point) != 2 * size + 1:
        # Strip the DER OCTET STRING header: tag, then a short or long length.
        header = 2 if point[1] < 0x80 else 2 + (point[1] & 0x7F)
        point = point[header:]
    if len(point) != 2 * size + 1 or point[0] != 0x04:
        raise HsmError("the HSM returned an EC point in an unexpected encoding")
    return point[1:]
