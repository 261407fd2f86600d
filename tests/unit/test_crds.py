"""The CRDs in crds/ are generated from the models, structural, and say what every field is."""

from pathlib import Path
from typing import Any

import pytest

from strongroom.models import HsmPoolSpec, KeySpec, VaultSecretSpec, VaultSpec, crdgen
from strongroom.models.crd import RESOURCES, custom_resource_definition
from strongroom.vault.config import CERTIFICATE_PERMISSIONS, KEY_PERMISSIONS, SECRET_PERMISSIONS
from strongroom.vault.objects import CURVES, KEY_TYPES, OCT_SIZES, RSA_SIZES

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_are_the_generated_ones() -> None:
    for name, text in crdgen.rendered().items():
        path = CRDS / name
        assert path.exists(), f"crds/{name} is missing: run scripts/gen-crds"
        assert path.read_text() == text, f"crds/{name} is stale: run scripts/gen-crds"
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(crdgen.rendered())


def test_no_key_reads_as_a_boolean_in_yaml_1_1() -> None:
    """kubectl's YAML parser reads a bare y, n, on or off as a boolean: a property named `y`
    written bare would become "true", and the API server would prune every EC JWK's y."""
    for path in CRDS.glob("*.yaml"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            key = line.strip().split(":", 1)[0]
            assert key not in crdgen.YAML11_BOOLEANS, f"crds/{path.name}:{number}: {line}"


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def _schema(kind: str) -> dict[str, Any]:
    resource = next(r for r in RESOURCES if r.kind == kind)
    schema: dict[str, Any] = custom_resource_definition(resource)["spec"]["versions"][0]["schema"]
    return schema["openAPIV3Schema"]


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_every_field_is_described_and_structural(resource: Any) -> None:
    root = _schema(resource.kind)
    for part in ("spec", "status"):
        for path, node in _walk(root["properties"][part], part):
            assert "$ref" not in node and "allOf" not in node, path
            if path.endswith("[]") or path.endswith("{}"):
                continue
            assert node.get("description"), f"{resource.kind} {path} has no description"
            if node.get("x-kubernetes-int-or-string"):
                assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
            else:
                assert "anyOf" not in node and node.get("type"), f"{resource.kind} {path}"


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_crds_have_status_columns_and_short_names(resource: Any) -> None:
    crd = custom_resource_definition(resource)
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["group"] == "strongroom.io" and version["name"] == "v1alpha1"
    assert crd["spec"]["scope"] == "Namespaced"
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["shortNames"]
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Ready", "Age"} <= columns


def test_key_columns_show_kty_and_version() -> None:
    key = next(r for r in RESOURCES if r.kind == "Key")
    columns = {c["name"]: c["jsonPath"] for c in key.columns}
    assert columns["Kty"] == ".spec.kty"
    assert columns["Version"] == ".status.currentVersion"


def test_enums_match_what_the_vault_serves() -> None:
    spec = _schema("Key")["properties"]["spec"]["properties"]
    assert tuple(spec["kty"]["enum"]) == KEY_TYPES
    assert tuple(spec["curve"]["enum"]) == CURVES
    assert set(spec["size"]["enum"]) == set(RSA_SIZES) | set(OCT_SIZES)
    access = _schema("Vault")["properties"]["spec"]["properties"]["access"]["items"]
    assert set(access["properties"]["keys"]["items"]["enum"]) == KEY_PERMISSIONS | {"all"}
    assert set(access["properties"]["secrets"]["items"]["enum"]) == SECRET_PERMISSIONS | {"all"}
    assert set(access["properties"]["certificates"]["items"]["enum"]) == (
        CERTIFICATE_PERMISSIONS | {"all"}
    )
    assert {"CertificatesOfficer", "CertificateUser"} <= set(
        access["properties"]["roles"]["items"]["enum"]
    )


def _rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_identity_fields_are_immutable() -> None:
    key = _schema("Key")["properties"]["spec"]
    for field in ("vaultRef", "kty"):
        assert "self == oldSelf" in _rules(key["properties"][field])
    assert any("oldSelf.size" in r for r in _rules(key))
    assert any("oldSelf.curve" in r for r in _rules(key))
    vault = _schema("Vault")["properties"]["spec"]["properties"]
    assert "self == oldSelf" in _rules(vault["hsmPoolRef"])
    assert "self == oldSelf" in _rules(vault["softDelete"]["properties"]["retentionDays"])
    secret = _schema("VaultSecret")["properties"]["spec"]
    assert "self == oldSelf" in _rules(secret["properties"]["vaultRef"])
    assert any("oldSelf.secretName" in r for r in _rules(secret))
    # The source a secret was made from: which kind, and the Secret it was imported from.
    source = secret["properties"]["source"]
    assert any(
        all(f"has(self.{kind}) == has(oldSelf.{kind})" in r for kind in KINDS)
        for r in _rules(source)
    )
    assert "self == oldSelf" in _rules(source["properties"]["fromSecret"])
    assert "self == oldSelf" not in _rules(source["properties"]["generate"])


KINDS = ("generate", "fromSecret", "external")


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("Key", "size"),
        ("Key", "curve"),
        ("Key", "keyName"),
        ("VaultSecret", "secretName"),
        ("VaultSecret", "contentType"),
    ],
)
def test_an_optional_immutable_field_cannot_be_set_or_removed_either(kind: str, field: str) -> None:
    """A rule on the field itself only runs when old and new both have it; the rule on the
    spec compares the field with a stand-in for absent, so adding or removing it is a change."""
    spec = _schema(kind)["properties"]["spec"]
    absent = "0" if spec["properties"][field]["type"] == "integer" else "''"
    expected = (
        f"(has(self.{field}) ? self.{field} : {absent}) == "
        f"(has(oldSelf.{field}) ? oldSelf.{field} : {absent})"
    )
    [entry] = [e for e in spec["x-kubernetes-validations"] if e["rule"] == expected]
    assert entry["message"].startswith(f"spec.{field} cannot be changed")
    assert entry["reason"] == "FieldValueForbidden"
    assert field not in spec.get("required", [])


def test_every_rule_has_a_message_a_person_can_act_on() -> None:
    for resource in RESOURCES:
        for path, node in _walk(_schema(resource.kind), resource.kind):
            for entry in node.get("x-kubernetes-validations", []):
                assert len(entry["message"]) > 20, f"{path}: {entry}"


def test_strings_under_cel_rules_are_bounded() -> None:
    """The API server refuses CEL rules whose cost it cannot bound."""
    for resource in RESOURCES:
        for path, node in _walk(_schema(resource.kind), resource.kind):
            if node.get("type") == "string" and node.get("x-kubernetes-validations"):
                assert "maxLength" in node or "enum" in node, path
            if node.get("type") == "array" and "items" in node:
                if node["items"].get("x-kubernetes-validations"):
                    assert "maxItems" in node, path


def test_models_read_the_camel_case_wire_shape() -> None:
    key = KeySpec.model_validate(
        {"vaultRef": {"name": "payments"}, "kty": "EC-HSM", "curve": "P-256", "keyOps": ["sign"]}
    )
    assert key.vault_ref.name == "payments" and key.key_ops == ["sign"] and key.enabled
    assert key.wire() == {
        "vaultRef": {"name": "payments"},
        "kty": "EC-HSM",
        "curve": "P-256",
        "keyOps": ["sign"],
        "enabled": True,
        "adopt": False,
    }
    vault = VaultSpec.model_validate({"hsmPoolRef": {"name": "p"}})
    assert vault.soft_delete.retention_days == 90 and vault.access == []
    pool = HsmPoolSpec.model_validate({})
    assert pool.backend == "softhsm2" and pool.storage.size == "1Gi"
    assert pool.deletion_policy == "Retain"
    secret = VaultSecretSpec.model_validate(
        {"vaultRef": {"name": "v"}, "source": {"fromSecret": {"name": "s", "key": "k"}}}
    )
    assert secret.source.from_secret is not None and secret.source.from_secret.key == "k"
