"""The pool's security domain, on the HSM's side: activation, the transfer key, restore.

States, kept in `domain.json` beside the token directory, sealed (AES-256-GCM) under a key
derived from the pool secret the sidecar was started with (the "boot secret"):

- `unexported`: a pool started without `--await-activation` (every pool before security
  domains): activated at once, with a domain nobody holds. It can never be downloaded.
- `awaiting`: started with `--await-activation` and never activated (no state file). It
  serves no key or secret; it takes one download (activation) or one upload (restore).
- `activated`: a download made the root secret (32 bytes from the HSM's random number
  generator), split it among the certificates and returned the blob. Never again. The blob
  (encrypted to the holders' certificates only) is also kept here until the pool's
  administrator says it has it safe (`release_download`): an operator that dies while the
  answer is on its way fetches it again (`held_download`) instead of losing the domain.
- `restored`: an upload gave the pool the domain of another (or its own earlier) pool: the
  pool secret of that domain, from which the copied tokens' PINs derive, is kept sealed here.

What the domain protects is the pool secret (data item `strongroom_pool`). Vault tokens are
protected by PINs derived from it; their root keys stay SENSITIVE and NEVER_EXTRACTABLE in
the tokens, so a pool is recovered from a copy of its token directory and record storage
plus its security domain (docs/security.md, "The security domain").

The transfer key is an RSA-3072 key made in the HSM, in the pool's own token
(`strongroom:pool`, PINs derived from the boot secret): SENSITIVE, non-extractable, used to
sign its own certificate and to decrypt the uploaded key; it is destroyed after an upload.
"""

import base64
import datetime
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from ..securitydomain import document, jwe
from .errors import DomainConflict, HsmError, InvalidInput, NotActivated
from .pins import so_pin, user_pin
from .rsapad import oaep_decode
from .tokeninit import init_free_token

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

STATE_FILE = "domain.json"
POOL_TOKEN = "strongroom:pool"  # noqa: S105 - a token's label; no vault's name has a colon
TRANSFER_LABEL = "strongroom:transfer"
TRANSFER_BITS = 3072
POOL_TAG = "strongroom_pool"
PAYLOAD_FORMAT = "strongroom.io/security-domain"
PAYLOAD_VERSION = 1
_STATE_AAD = b"strongroom domain state v1"
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_SHA256_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")

UNEXPORTED, AWAITING, ACTIVATED, RESTORED = "unexported", "awaiting", "activated", "restored"


def _state_key(boot_secret: bytes) -> bytes:
    return hmac.new(boot_secret, b"strongroom/domain-state", hashlib.sha256).digest()


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def self_signed(public: rsa.RSAPublicKey, sign_digest: Callable[[bytes], bytes]) -> bytes:
    """A self-signed certificate (DER) for `public`, signed by `sign_digest` (RSA PKCS#1 v1.5
    over a SHA-256 digest: the HSM, which holds the private key). `cryptography` serializes
    the to-be-signed part; it needs a key to do so, and a throwaway one signs that draft, whose
    signature is then replaced."""
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "strongroom security domain transfer key")]
    )
    now = _now()
    draft = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(rsa.generate_private_key(65537, 1024), hashes.SHA256())  # noqa: S505 - signs a draft only
    )
    tbs = draft.tbs_certificate_bytes
    signature = sign_digest(hashlib.sha256(tbs).digest())
    der = _der(0x30, tbs + _SHA256_RSA + _der(0x03, b"\x00" + signature))
    certificate = x509.load_der_x509_certificate(der)
    public.verify(signature, tbs, rsa_padding.PKCS1v15(), hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.DER)


class Domain:
    """The security domain of the pool whose tokens `engine` serves."""

    def __init__(
        self,
        engine: "Engine",
        boot_secret: bytes,
        state_file: Path | None,
        await_activation: bool,
    ) -> None:
        self._engine = engine
        self._boot = boot_secret
        self._file = state_file
        self._session: pkcs11.Session | None = None
        self.pending_vaults: list[str] = []
        self._record: dict[str, Any] = {"state": UNEXPORTED}
        if state_file is not None and state_file.exists():
            self._record = self._read()
        elif state_file is not None and await_activation:
            self._record = {"state": AWAITING}
        elif state_file is not None:
            self._write({"state": UNEXPORTED, "at": _now().isoformat()})
        restored = self._record.get("poolSecret")
        if isinstance(restored, str):
            engine._pool_secret = bytes.fromhex(restored)

    # --- the state file --------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        assert self._file is not None
        try:
            raw = json.loads(self._file.read_text())
            sealed = base64.b64decode(raw["sealed"])
            plain = AESGCM(_state_key(self._boot)).decrypt(sealed[:12], sealed[12:], _STATE_AAD)
            record = json.loads(plain)
        except Exception:  # noqa: BLE001 - any failure is the same refusal
            raise HsmError(
                f"the security domain state {self._file} does not open with this pool's "
                "secret: the pool secret was changed or the file damaged"
            ) from None
        if not isinstance(record, dict) or record.get("state") not in (
            UNEXPORTED,
            ACTIVATED,
            RESTORED,
        ):
            raise HsmError(f"the security domain state {self._file} is not understood")
        return record

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self._record = record
            return
        iv = os.urandom(12)
        sealed = iv + AESGCM(_state_key(self._boot)).encrypt(
            iv, json.dumps(record).encode(), _STATE_AAD
        )
        partial = self._file.with_name(self._file.name + ".partial")
        with open(partial, "w") as handle:
            handle.write(json.dumps({"v": 1, "sealed": base64.b64encode(sealed).decode()}))
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(self._file)
        directory = os.open(self._file.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._record = record

    # --- what the sidecar asks ---------------------------------------------------------

    @property
    def activated(self) -> bool:
        return bool(self._record["state"] != AWAITING)

    def state(self) -> dict[str, Any]:
        """The state, for the vault server: no secret in it."""
        record = self._record
        out: dict[str, Any] = {"state": record["state"], "activated": self.activated}
        for field in ("domain", "at", "required", "shares"):
            if field in record:
                out[field] = record[field]
        out["held"] = "blob" in record
        return out

    def held_download(self) -> str:
        """The blob of the download that activated the pool, while it is held (it is
        encrypted to the holders' certificates; no secret of the pool's is in clear)."""
        blob = self._record.get("blob")
        if self._record["state"] != ACTIVATED or not isinstance(blob, str):
            raise DomainConflict(
                "This pool holds no downloaded security domain: it was not activated by a "
                "download, or its administrator released the blob already."
            )
        return blob

    def release_download(self) -> None:
        """Forget the held blob: its administrator keeps it now. Releasing twice is fine."""
        if "blob" in self._record:
            self._write({k: v for k, v in self._record.items() if k != "blob"})
            log.info("released the downloaded security domain: the pool keeps no copy")

    def refuse_unless_activated(self, op: str) -> None:
        if not self.activated:
            raise NotActivated(
                f"the pool is not activated, so it serves no {op}: download its security "
                "domain (a new pool) or upload one (a pool being restored) first"
            )

    def _awaiting(self, what: str) -> None:
        state = self._record["state"]
        if state == AWAITING:
            return
        why = {
            UNEXPORTED: "it was activated at start without a security domain to export",
            ACTIVATED: "its security domain was downloaded already",
            RESTORED: "its security domain was restored by an upload already",
        }[state]
        raise DomainConflict(f"{what} is refused: the pool is activated ({why}).")

    def download(self, request: dict[str, Any]) -> str:
        """Activate the pool: make the root secret, return the blob of its shares."""
        self._awaiting("A security domain download")
        if self._engine.vault_names():
            raise DomainConflict(
                "A security domain download is refused: the pool's token store holds vault "
                "tokens already (a copy of another pool's). Upload that pool's security "
                "domain instead."
            )
        try:
            certificates, required = document.read_certificate_request(request)
        except document.DomainError as exc:
            raise InvalidInput(str(exc)) from None
        session = self._pool_session()
        root = bytes(session.generate_random(8 * document.ROOT_BYTES))
        domain_id = bytes(session.generate_random(8 * 16)).hex()
        pool = self._payload(self._boot, domain_id)
        blob = document.build_download(
            root, certificates, required, {POOL_TAG: pool}, self._coefficients(session)
        )
        self._write(
            {
                "state": ACTIVATED,
                "domain": domain_id,
                "at": _now().isoformat(),
                "required": required,
                "shares": len(certificates),
                "blob": blob,
            }
        )
        log.info(
            "security domain %s downloaded: %d shares, %d required; the pool is activated",
            domain_id,
            len(certificates),
            required,
        )
        self._make_pending_vaults()
        return blob

    def transfer_key(self) -> str:
        """The transfer key's public JWK with its certificate, as JSON text; made once."""
        self._awaiting("A security domain upload")
        certificate = x509.load_der_x509_certificate(self._transfer_certificate())
        jwk = document.certificate_jwk(
            certificate,
            key_ops=["wrapKey", "encrypt"],
            kid=f"strongroom-transfer-{document.thumbprint(certificate)[:16]}",
        )
        return json.dumps(jwk, separators=(",", ":"))

    def upload(self, value: str) -> dict[str, Any]:
        """Restore a security domain: all checks first, then one durable state change."""
        self._awaiting("A security domain upload")
        try:
            upload = document.read_upload(value)
        except document.DomainError as exc:
            raise InvalidInput(str(exc)) from None
        session = self._pool_session()
        private = self._transfer_private(session)
        certificate = self._stored_certificate(session)
        if private is None or certificate is None:
            raise InvalidInput(
                "this pool has no transfer key: GET /securitydomain/upload first and encrypt "
                "the security domain for the key it returns"
            )
        if upload.x5t_256 != document.thumbprint(x509.load_der_x509_certificate(certificate)):
            raise InvalidInput(
                "the uploaded security domain was made for a different transfer key (its "
                "WrappedKey.x5t_256 is not this pool's transfer certificate)"
            )
        try:
            key = jwe.decrypt_with(upload.enc_key, lambda data: self._unwrap(private, data))
        except jwe.JweError as exc:
            raise InvalidInput(f"the uploaded WrappedKey does not open: {exc}") from None
        if len(key) != document.ROOT_BYTES:
            raise InvalidInput(
                f"the uploaded WrappedKey holds {len(key)} bytes, not a {document.ROOT_BYTES}-"
                "byte key"
            )
        tags = sorted(item.tag for item in upload.data)
        if tags != [POOL_TAG]:
            raise InvalidInput(
                f"the uploaded security domain holds the items {tags}, not exactly "
                f"[{POOL_TAG!r}]: it is not a strongroom pool's domain"
            )
        try:
            opened = document.open_data(key, upload.data, "uploaded security domain")
        except document.DomainError as exc:
            raise InvalidInput(str(exc)) from None
        pool_secret, domain_id = self._read_payload(opened[POOL_TAG])
        for vault in self._engine.vault_names():
            if not self._opens(vault, pool_secret):
                raise InvalidInput(
                    f"the uploaded security domain does not open the token of vault {vault!r} "
                    "in this pool's token store: it is another pool's domain"
                )
        self._write(
            {
                "state": RESTORED,
                "domain": domain_id,
                "at": _now().isoformat(),
                "poolSecret": pool_secret.hex(),
            }
        )
        self._engine._pool_secret = pool_secret
        self._destroy_transfer_key(session)
        log.info("security domain %s uploaded: the pool is restored and activated", domain_id)
        self._make_pending_vaults()
        return {"status": "Success", "status_details": "The security domain is restored."}

    # --- the pool's token ---------------------------------------------------------------

    def _pool_session(self) -> pkcs11.Session:
        """A session on the pool's own token, made on first use; a token of that label whose
        PIN is not ours (copied from another pool) is passed over."""
        if self._session is not None:
            return self._session
        lib = self._engine._lib
        pin = user_pin(self._boot, POOL_TOKEN)
        fresh = None
        for slot in lib.get_slots(token_present=True):
            token = slot.get_token()
            if token.label != POOL_TOKEN:
                continue
            if not token.flags & pkcs11.TokenFlag.USER_PIN_INITIALIZED:
                fresh = token
                continue
            try:
                self._session = token.open(rw=True, user_pin=pin)
                return self._session
            except p11.UserAlreadyLoggedIn:
                self._session = token.open(rw=True)
                return self._session
            except p11.PinIncorrect:
                continue
        if fresh is None:
            init_free_token(self._engine._module_path, POOL_TOKEN, so_pin(self._boot, POOL_TOKEN))
            fresh = next(
                s.get_token()
                for s in lib.get_slots(token_present=True)
                if s.get_token().label == POOL_TOKEN
                and s.get_token().flags & pkcs11.TokenFlag.TOKEN_INITIALIZED
                and not s.get_token().flags & pkcs11.TokenFlag.USER_PIN_INITIALIZED
            )
        with fresh.open(rw=True, so_pin=so_pin(self._boot, POOL_TOKEN)) as so_session:
            so_session.init_pin(pin)
        self._session = fresh.open(rw=True, user_pin=pin)
        return self._session

    @staticmethod
    def _coefficients(session: pkcs11.Session) -> Callable[[], int]:
        """Uniform values in 0..256 from the HSM's random number generator (16-bit draws,
        65,535 of whose 65,536 values map evenly onto 257)."""
        buffer = bytearray()

        def draw() -> int:
            while True:
                if len(buffer) < 2:
                    buffer.extend(bytes(session.generate_random(8 * 512)))
                value = int.from_bytes(buffer[:2], "big")
                del buffer[:2]
                if value < 65535:
                    return value % 257

        return draw

    @staticmethod
    def _transfer_private(session: pkcs11.Session) -> Any:
        found = list(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: TRANSFER_LABEL}
            )
        )
        return found[0] if found else None

    @staticmethod
    def _stored_certificate(session: pkcs11.Session) -> bytes | None:
        found = list(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: TRANSFER_LABEL}
            )
        )
        return bytes(found[0][Attribute.VALUE]) if found else None

    def _transfer_certificate(self) -> bytes:
        session = self._pool_session()
        stored = self._stored_certificate(session)
        if stored is not None and self._transfer_private(session) is not None:
            return stored
        self._destroy_transfer_key(session)
        public, private = session.generate_keypair(
            KeyType.RSA,
            TRANSFER_BITS,
            store=True,
            public_template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.ENCRYPT: True,
                Attribute.VERIFY: True,
                Attribute.WRAP: False,
                Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01",
                Attribute.LABEL: TRANSFER_LABEL,
            },
            private_template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
                Attribute.DECRYPT: True,
                Attribute.UNWRAP: False,
                Attribute.DERIVE: False,
                Attribute.LABEL: TRANSFER_LABEL,
            },
        )
        signer: Any = private
        numbers = rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(public[Attribute.MODULUS], "big"),
        )
        der = self_signed(
            numbers.public_key(),
            lambda digest: bytes(
                signer.sign(_SHA256_DIGEST_INFO + digest, mechanism=Mechanism.RSA_PKCS)
            ),
        )
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.LABEL: TRANSFER_LABEL,
                Attribute.VALUE: der,
            }
        )
        log.info("made the security domain transfer key (RSA-%d, in the HSM)", TRANSFER_BITS)
        return der

    @staticmethod
    def _destroy_transfer_key(session: pkcs11.Session) -> None:
        for obj in list(session.get_objects({Attribute.LABEL: TRANSFER_LABEL})):
            obj.destroy()

    @staticmethod
    def _unwrap(private: Any, data: bytes) -> bytes:
        """RSA-OAEP-256 decryption of the uploaded content key: the HSM applies the private
        key, the padding is removed here (one error whatever fails)."""
        modulus = bytes(private[Attribute.MODULUS])
        size = len(modulus)
        if len(data) != size or data >= modulus.rjust(size, b"\0"):
            raise ValueError("wrong size")
        try:
            encoded = bytes(private.decrypt(data, mechanism=Mechanism.RSA_X_509)).rjust(size, b"\0")
            return oaep_decode(encoded, "sha256")
        except (p11.PKCS11Error, HsmError):
            raise ValueError("does not decrypt") from None

    def _opens(self, vault: str, pool_secret: bytes) -> bool:
        """Whether the vault's token opens with the PIN `pool_secret` gives it."""
        token = self._engine._token(vault)
        try:
            session = token.open(user_pin=user_pin(pool_secret, vault))
        except p11.PinIncorrect:
            return False
        except p11.UserAlreadyLoggedIn:
            return True
        session.close()
        return True

    def _make_pending_vaults(self) -> None:
        for vault in self.pending_vaults:
            self._engine.ensure_vault(vault)

    # --- the protected data -------------------------------------------------------------

    def _payload(self, pool_secret: bytes, domain_id: str) -> bytes:
        return json.dumps(
            {
                "format": PAYLOAD_FORMAT,
                "version": PAYLOAD_VERSION,
                "domain": domain_id,
                "poolSecret": pool_secret.hex(),
                "created": _now().isoformat(),
            },
            separators=(",", ":"),
        ).encode()

    @staticmethod
    def _read_payload(raw: bytes) -> tuple[bytes, str]:
        try:
            payload = json.loads(raw)
            ok = (
                isinstance(payload, dict)
                and payload.get("format") == PAYLOAD_FORMAT
                and payload.get("version") == PAYLOAD_VERSION
                and isinstance(payload.get("domain"), str)
            )
            secret = bytes.fromhex(payload["poolSecret"]) if ok else b""
        except (ValueError, KeyError, TypeError):
            ok, secret = False, b""
        if not ok or len(secret) < 16:
            raise InvalidInput(
                f"the uploaded security domain's {POOL_TAG!r} item is not a strongroom pool's "
                f"(format {PAYLOAD_FORMAT} version {PAYLOAD_VERSION})"
            )
        return secret, str(payload["domain"])
