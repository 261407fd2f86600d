"""What a pod asks to mount: the vault and its objects, parsed and checked from volumeAttributes.

Every user-supplied name and path is checked here, before anything touches the
disk or the network: paths stay relative, inside the volume, and out of the
names the atomic writer keeps for itself (those starting with "..").
"""

import json
import re
from dataclasses import dataclass
from typing import Any

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
_VERSION = re.compile(r"[0-9a-f]{32}")
FORMATS = {"secret": ("value", "base64"), "key": ("pem", "jwk")}


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
    unknown = set(raw) - {"kind", "name", "version", "path", "format", "mode"}
    if unknown:
        raise InvalidVolume(f"objects[{index}] has unknown fields: {', '.join(sorted(unknown))}")
    kind = raw.get("kind", "secret")
    if kind not in FORMATS:
        raise InvalidVolume(f"objects[{index}].kind must be 'secret' or 'key'")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidVolume(f"objects[{index}].name must be 1-127 letters, digits and dashes")
    version = raw.get("version") or ""
    if not isinstance(version, str) or (version and not _VERSION.fullmatch(version)):
        raise InvalidVolume(f"objects[{index}].version must be 32 lowercase hex characters")
    fmt = raw.get("format") or FORMATS[kind][0]
    if fmt not in FORMATS[kind]:
        raise InvalidVolume(f"objects[{index}].format of a {kind} is one of {FORMATS[kind]}")
    return VaultObject(
        kind, name, version, check_path(raw.get("path") or name), fmt, _mode(raw.get("mode"))
    )


def parse_volume(attributes: dict[str, str], default_vault_url: str | None = None) -> VolumeRequest:
    vault_url = attributes.get("vaultUrl") or default_vault_url
    if not vault_url:
        vault_name = attributes.get("vault")
        namespace = attributes.get(POD_NAMESPACE_KEY)
        if not vault_name or not namespace:
            raise InvalidVolume(
                "volumeAttributes need 'vaultUrl', or 'vault' (a Vault in the pod's namespace)"
            )
        if not _NAME.fullmatch(vault_name):
            raise InvalidVolume("'vault' must be a Vault's name")
        vault_url = f"https://{vault_name}-vault.{namespace}.svc"
    if not vault_url.startswith("https://") or any(c in vault_url for c in " \x00?#"):
        raise InvalidVolume("'vaultUrl' must be an https:// URL")
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
    paths = [o.path for o in parsed]
    for path in paths:
        if paths.count(path) > 1:
            raise InvalidVolume(f"two objects are written to the same path {path!r}")
        if any(other.startswith(path + "/") for other in paths):
            raise InvalidVolume(f"path {path!r} is both a file and a directory")
    return VolumeRequest(vault_url.rstrip("/"), parsed)


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
