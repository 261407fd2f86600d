"""The five custom resources, and their CustomResourceDefinitions generated from the models.

pydantic's JSON Schema is turned into a structural schema: references inlined,
optional fields written as absent rather than null, titles dropped, and the
CEL rules of the models kept as `x-kubernetes-validations`.
"""

from dataclasses import dataclass, field
from typing import Any

from .base import GROUP, VERSION, Model, rule
from .hsmpool import HsmPoolSpec, HsmPoolStatus
from .key import KeySpec, KeyStatus
from .vault import VaultSpec, VaultStatus
from .vaultcertificate import VaultCertificateSpec, VaultCertificateStatus
from .vaultsecret import VaultSecretSpec, VaultSecretStatus

READY = '.status.conditions[?(@.type=="Ready")].status'
AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@dataclass(frozen=True)
class Resource:
    """One custom resource kind of strongroom."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    spec: type[Model]
    status: type[Model]
    columns: tuple[dict[str, Any], ...]
    root_rules: tuple[dict[str, str], ...] = field(default=())

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _column(name: str, path: str, type_: str = "string", priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


HSM_POOL = Resource(
    kind="HsmPool",
    plural="hsmpools",
    short_names=("hsmp",),
    description="An isolated HSM instance: its own pod, token store and pool secret. "
    "Vaults live in a pool; each vault is its own token.",
    spec=HsmPoolSpec,
    status=HsmPoolStatus,
    columns=(
        _column("Backend", ".spec.backend"),
        _column("Phase", ".status.phase"),
        _column("Ready", READY),
        _column("Domain", ".status.securityDomain"),
        _column("Endpoint", ".status.endpoint", priority=1),
        _column("LastBackup", ".status.backup.last.time", "date", priority=1),
        AGE,
    ),
    root_rules=(
        rule(
            "self.metadata.name.size() <= 40",
            "an HsmPool's name is at most 40 characters: its StatefulSet and Service "
            "are named after it",
        ),
    ),
)

VAULT = Resource(
    kind="Vault",
    plural="vaults",
    short_names=("srv",),
    description="A vault of keys and secrets in an HsmPool, served with the Azure Key Vault API "
    "at status.vaultUri. Deleting it stops the pool serving it (its keys stay in the pool's "
    "token); when the pool is gone or being deleted it goes at once, and while the pool does "
    "not answer it waits with Ready=False: remove its finalizer to delete it without the pool.",
    spec=VaultSpec,
    status=VaultStatus,
    columns=(
        _column("Pool", ".spec.hsmPoolRef.name"),
        _column("Ready", READY),
        _column("URI", ".status.vaultUri"),
        _column("Audience", ".status.audience", priority=1),
        AGE,
    ),
    root_rules=(
        rule(
            "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') "
            "&& self.metadata.name.size() <= 32",
            "a Vault's name is 1-32 lowercase letters, digits and dashes, starting with a "
            "letter: it labels the vault's HSM token (32 characters at most) and names its "
            "Service <name>-vault",
        ),
    ),
)

KEY = Resource(
    kind="Key",
    plural="keys",
    short_names=("srkey",),
    description="A key made and used inside a vault's HSM token; it never leaves it. "
    "status holds its id, versions and public key.",
    spec=KeySpec,
    status=KeyStatus,
    columns=(
        _column("Vault", ".spec.vaultRef.name"),
        _column("Kty", ".spec.kty"),
        _column("Version", ".status.currentVersion"),
        _column("Ready", READY),
        _column("Kid", ".status.kid", priority=1),
        AGE,
    ),
    root_rules=(
        rule(
            "has(self.spec.keyName) || self.metadata.name.matches('^[0-9A-Za-z-]{1,127}$')",
            "a key's name in a vault is 1-127 letters, digits and dashes, and this resource's "
            "name is not one (it has a dot or is too long): set spec.keyName",
        ),
    ),
)

VAULT_SECRET = Resource(
    kind="VaultSecret",
    plural="vaultsecrets",
    short_names=("vsec",),
    description="A secret in a vault, with versions. Its value is never written to the "
    "resource; read it with the Azure Key Vault API or a CSI volume.",
    spec=VaultSecretSpec,
    status=VaultSecretStatus,
    columns=(
        _column("Vault", ".spec.vaultRef.name"),
        _column("Version", ".status.currentVersion"),
        _column("Ready", READY),
        AGE,
    ),
    root_rules=(
        rule(
            "has(self.spec.secretName) || self.metadata.name.matches('^[0-9A-Za-z-]{1,127}$')",
            "a secret's name in a vault is 1-127 letters, digits and dashes, and this resource's "
            "name is not one (it has a dot or is too long): set spec.secretName",
        ),
    ),
)

VAULT_CERTIFICATE = Resource(
    kind="VaultCertificate",
    plural="vaultcertificates",
    short_names=("vcert",),
    description="An X.509 certificate in a vault: its key made in the vault's HSM, signed by "
    "the vault (issuer Self) or by your CA through a signing request (issuer Unknown), and "
    "renewed by the vault's policy. Its secret (PKCS#12 or PEM; the private key only when "
    "exportable) is read with the Azure Key Vault API or csi.strongroom.io. Named "
    "VaultCertificate, not Certificate, which is cert-manager's.",
    spec=VaultCertificateSpec,
    status=VaultCertificateStatus,
    columns=(
        _column("Vault", ".spec.vaultRef.name", priority=1),
        _column("Subject", ".status.subject"),
        _column("Expires", ".status.expires", "date"),
        _column("Ready", READY),
        _column("Reason", '.status.conditions[?(@.type=="Ready")].reason', priority=1),
        _column("Version", ".status.version", priority=1),
        AGE,
    ),
    root_rules=(
        rule(
            "has(self.spec.certificateName) || self.metadata.name.matches('^[0-9A-Za-z-]{1,127}$')",
            "a certificate's name in a vault is 1-127 letters, digits and dashes, and this "
            "resource's name is not one (it has a dot or is too long): set "
            "spec.certificateName",
        ),
    ),
)

RESOURCES = (HSM_POOL, VAULT, KEY, VAULT_SECRET, VAULT_CERTIFICATE)


def structural_schema(model: type[Model]) -> dict[str, Any]:
    """The model's JSON Schema as a Kubernetes structural schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    schema: dict[str, Any] = _structural(raw, definitions)
    return schema


def _structural(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        # A field's own description and rules win over those of the model it refers to.
        target = dict(definitions[ref.rsplit("/", 1)[1]])
        node = target | node
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        branches = [b for b in any_of if b != {"type": "null"}]
        if node.get("x-kubernetes-int-or-string"):
            node["anyOf"] = branches
        elif len(branches) == 1:
            node = (
                dict(branches[0]) | node
                if "$ref" not in branches[0]
                else (_structural(branches[0], definitions) | node)
            )
        else:
            raise ValueError(f"a structural schema cannot express the union {any_of}")
    node.pop("title", None)
    if node.get("default", ...) is None:
        node.pop("default")
    if (
        node.get("type") == "object"
        and "properties" not in node
        and ("additionalProperties" not in node)
    ):
        node["properties"] = {}
    out = {
        key: _structural(value, definitions)
        for key, value in node.items()
        if key not in ("properties",)
    }
    if "properties" in node:
        out["properties"] = {
            name: _structural(prop, definitions) for name, prop in node["properties"].items()
        }
    if "required" in out:
        out["required"] = sorted(out["required"])
    return _ordered(out)


_ORDER = ("description", "type", "format", "enum", "default")


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    first = {key: node[key] for key in _ORDER if key in node}
    return first | {key: node[key] for key in sorted(node) if key not in first}


def custom_resource_definition(resource: Resource) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind, as `kubectl apply` takes it."""
    root: dict[str, Any] = {
        "description": resource.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "The version of this representation of the resource.",
                "type": "string",
            },
            "kind": {"description": "The kind of the resource.", "type": "string"},
            "metadata": {"type": "object"},
            "spec": structural_schema(resource.spec),
            "status": structural_schema(resource.status),
        },
    }
    if resource.root_rules:
        root["x-kubernetes-validations"] = list(resource.root_rules)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": resource.crd_name,
            "labels": {"app.kubernetes.io/part-of": "strongroom"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                "shortNames": list(resource.short_names),
                "categories": ["strongroom"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(resource.columns),
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }
