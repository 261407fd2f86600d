"""What a pod asks to mount: the vault and its objects, parsed and checked from volumeAttributes.

Every user-supplied name and path is checked here, before anything touches the
disk or the network: paths stay relative, inside the volume, and out of the
names the atomic writer keeps for itself (those starting with "..").

The vault is a Vault of the pod's own namespace, because the pod's token is
sent to it: `vault: <name>` means `https://<name>-vault.<pod namespace>.svc`;
`vaultUrl` may spell that URL out (`.svc` or `.svc.cluster.local`, port 443)
and nothing else. Any other host, port, namespace or user information is
refused before a connection is made.
"""

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

AUDIENCE = "strongroom.io/vault"
TOKENS_KEY = "csi.storage.k8s.io/serviceAccount.tokens"
POD_NAMESPACE_KEY = "csi.storage.k8s.io/pod.namespace"
POD_NAME_KEY = "csi.storage.k8s.io/pod.name"
EPHEMERAL_KEY = "csi.storage.k8s.io/ephemeral"

MAX_OBJECTS = 64
MAX_PATH = 1024
MAX_COMPONENT = 255
_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
MAX_VAULT_NAME = 63 - len("-vault")
_VERSION = re.compile(r"[0-9a-f]{32}")
FORMATS = {"secret": ("value", "base64"), "key": ("pem", "jwk"), "certificate": ("pem", "pfx")}
# Where a certificate mounted as PEM goes when the object names no path: its chain, and
# (only when the certificate is exportable) its private key.
CERT_PATH = "tls.crt"
KEY_PATH = "tls.key"


class InvalidVolume(ValueError):
    """The volume's attributes cannot be honoured; the message says why."""


@dataclass(frozen=True)
class VaultObject:
    kind: str
    name: str
    version: str
    path: str
    format: str
    mode: int
    # A certificate as PEM: where its private key goes when the certificate is exportable,
    # and whether the pod asked for it by name (then a certificate without one is refused).
    key_path: str = ""
    key_required: bool = False

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, self.key_path) if self.key_path else (self.path,)


@dataclass(frozen=True)
class VolumeRequest:
    vault_url: str
    objects: tuple[VaultObject, ...]


def check_path(path: object) -> str:
    """A relative path inside the volume: no '..', no absolute path, no NUL, bounded length."""
    if not isinstance(path, str) or not path:
        raise InvalidVolume("an object's path must be a non-empty string")
    if "\x00" in path:
        raise InvalidVolume("an object's path must not contain NUL")
    if len(path.encode()) > MAX_PATH:
        raise InvalidVolume(f"an object's path is longer than {MAX_PATH} bytes")
    if path.startswith("/"):
        raise InvalidVolume(f"path {path!r} must be relative to the volume")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidVolume(f"path {path!r} must not have empty, '.' or '..' parts")
        if len(part.encode()) > MAX_COMPONENT:
            raise InvalidVolume(f"a part of path {path[:64]!r}... is longer than 255 bytes")
    if parts[0].startswith(".."):
        raise InvalidVolume(f"path {path!r} must not start with '..': the volume keeps those")
    return path


def _mode(raw: object) -> int:
    if raw is None:
        return 0o444
    if isinstance(raw, str):
        try:
            raw = int(raw, 8)
        except ValueError:
            raise InvalidVolume(f"mode {raw!r} is not an octal number such as '0440'") from None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= 0o777:
        raise InvalidVolume("mode must be a permission between 0000 and 0777")
    return raw


def _object(raw: object, index: int) -> VaultObject:
    if not isinstance(raw, dict):
        raise InvalidVolume(f"objects[{index}] must be a mapping with kind and name")
    unknown = set(raw) - {"kind", "name", "version", "path", "format", "mode", "keyPath"}
    if unknown:
        raise InvalidVolume(f"objects[{index}] has unknown fields: {', '.join(sorted(unknown))}")
    kind = raw.get("kind", "secret")
    if kind not in FORMATS:
        raise InvalidVolume(f"objects[{index}].kind must be 'secret', 'key' or 'certificate'")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidVolume(f"objects[{index}].name must be 1-127 letters, digits and dashes")
    version = raw.get("version") or ""
    if not isinstance(version, str) or (version and not _VERSION.fullmatch(version)):
        raise InvalidVolume(f"objects[{index}].version must be 32 lowercase hex characters")
    fmt = raw.get("format") or FORMATS[kind][0]
    if fmt not in FORMATS[kind]:
        raise InvalidVolume(f"objects[{index}].format of a {kind} is one of {FORMATS[kind]}")
    mode = _mode(raw.get("mode"))
    if kind != "certificate":
        if "keyPath" in raw:
            raise InvalidVolume(f"objects[{index}].keyPath is for kind certificate, format pem")
        return VaultObject(kind, name, version, check_path(raw.get("path") or name), fmt, mode)
    if fmt == "pfx":
        if "keyPath" in raw:
            raise InvalidVolume(
                f"objects[{index}].keyPath is for format pem: a PKCS#12 (pfx) file holds the "
                "certificate and, when exportable, its key"
            )
        return VaultObject(kind, name, version, check_path(raw.get("path") or name), fmt, mode)
    path = check_path(raw.get("path") or CERT_PATH)
    given = raw.get("keyPath")
    key_path = check_path(given) if given is not None else KEY_PATH
    return VaultObject(kind, name, version, path, fmt, mode, key_path, given is not None)


def _vault_host(name: str, namespace: str, cluster_local: bool = False) -> str:
    return f"{name}-vault.{namespace}.svc" + (".cluster.local" if cluster_local else "")


def vault_url_in_namespace(url: str, namespace: str) -> str:
    """`url` as `https://<vault>-vault.<namespace>.svc[.cluster.local]`, or InvalidVolume.

    The pod's token is sent to this URL: only a vault of the pod's own namespace may
    receive it, so nothing but that exact form is accepted (no other port, no user
    information, no path, no IP literal, no other namespace or domain).
    """
    if any(c in url for c in " \x00?#\\") or not url.lower().startswith("https://"):
        raise InvalidVolume("'vaultUrl' must be an https:// URL with no query or fragment")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise InvalidVolume("'vaultUrl' must not carry user information (user@host)")
    if parts.path not in ("", "/"):
        raise InvalidVolume("'vaultUrl' must have no path: it names the vault, not an object")
    host, colon, port = parts.netloc.rpartition(":") if "]" not in parts.netloc else ("", "", "")
    if not colon:
        host, port = parts.netloc, ""
    if colon and port != "443":
        raise InvalidVolume(
            f"'vaultUrl' must use the default https port 443, not {port!r}: vaults serve there"
        )
    host = host.lower()
    label = host.split(".", 1)[0]
    name = label.removesuffix("-vault")
    allowed = {_vault_host(name, namespace), _vault_host(name, namespace, cluster_local=True)}
    if not label.endswith("-vault") or not _DNS_LABEL.fullmatch(name) or host not in allowed:
        raise InvalidVolume(
            f"'vaultUrl' host {host!r} is not a vault of the pod's namespace {namespace!r}: "
            f"the pod's token is sent only to https://<vault>-vault.{namespace}.svc "
            "(or .svc.cluster.local)"
        )
    return f"https://{host}"


def parse_volume(attributes: dict[str, str]) -> VolumeRequest:
    namespace = attributes.get(POD_NAMESPACE_KEY)
    if not namespace or not _DNS_LABEL.fullmatch(namespace):
        raise InvalidVolume(
            "the pod's namespace did not reach the driver: the CSIDriver object must set "
            "podInfoOnMount: true"
        )
    if attributes.get("vaultUrl"):
        vault_url = vault_url_in_namespace(attributes["vaultUrl"], namespace)
    else:
        vault_name = attributes.get("vault")
        if not vault_name:
            raise InvalidVolume(
                "volumeAttributes need 'vault' (a Vault in the pod's namespace) or 'vaultUrl'"
            )
        if not _DNS_LABEL.fullmatch(vault_name) or len(vault_name) > MAX_VAULT_NAME:
            raise InvalidVolume(f"'vault' must be the name of a Vault in namespace {namespace!r}")
        vault_url = f"https://{_vault_host(vault_name, namespace)}"
    raw = attributes.get("objects")
    if not raw:
        raise InvalidVolume("volumeAttributes need 'objects': a list of {kind, name, path}")
    try:
        objects: Any = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise InvalidVolume("'objects' is not valid YAML or JSON") from None
    if not isinstance(objects, list) or not objects:
        raise InvalidVolume("'objects' must be a non-empty list")
    if len(objects) > MAX_OBJECTS:
        raise InvalidVolume(f"at most {MAX_OBJECTS} objects fit in one volume")
    parsed = tuple(_object(o, i) for i, o in enumerate(objects))
    paths = [path for o in parsed for path in o.paths]
    for path in paths:
        if paths.count(path) > 1:
            raise InvalidVolume(f"two objects are written to the same path {path!r}")
        if any(other.startswith(path + "/") for other in paths):
            raise InvalidVolume(f"path {path!r} is both a file and a directory")
    return VolumeRequest(vault_url, parsed)


def pod_token(attributes: dict[str, str]) -> str | None:
    """The pod's ServiceAccount token for strongroom's audience, as the kubelet passed it."""
    raw = attributes.get(TOKENS_KEY)
    if not raw:
        return None
    try:
        tokens = json.loads(raw)
    except ValueError:
        return None
    entry = tokens.get(AUDIENCE) if isinstance(tokens, dict) else None
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None
