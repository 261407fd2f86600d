"""The quick start in examples/ fits the CRDs, the CSI driver's attributes and the vault's names."""

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from strongroom.builders.pool import vault_uri
from strongroom.csi.server import DRIVER_NAME
from strongroom.csi.volume import AUDIENCE, POD_NAMESPACE_KEY, parse_volume
from strongroom.models import (
    HsmPoolSpec,
    KeySpec,
    VaultCertificateSpec,
    VaultSecretSpec,
    VaultSpec,
)
from strongroom.models.crd import RESOURCES, custom_resource_definition

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MODELS = {
    "HsmPool": HsmPoolSpec,
    "Vault": VaultSpec,
    "Key": KeySpec,
    "VaultSecret": VaultSecretSpec,
    "VaultCertificate": VaultCertificateSpec,
}


def _objects() -> list[dict[str, Any]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


OBJECTS = _objects()


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}"
    return found[0]


def _check(value: Any, schema: dict[str, Any], path: str) -> None:
    """What the API server's structural schema would refuse: unknown fields, bad enums."""
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        known = schema.get("properties", {})
        for key, child in value.items():
            assert key in known, f"{path}.{key} is not a field of the CRD"
            _check(child, known[key], f"{path}.{key}")
        for key in schema.get("required", []):
            assert key in value, f"{path}.{key} is required"
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{index}]")


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_each_custom_resource_has_an_example_that_fits_its_crd(resource: Any) -> None:
    examples = [o for o in OBJECTS if o["kind"] == resource.kind]
    assert examples, f"no example of {resource.kind}"
    crd = custom_resource_definition(resource)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for example in examples:
        assert example["apiVersion"] == f"{crd['spec']['group']}/v1alpha1"
        _check(example["spec"], schema, f"{resource.kind}.spec")
        MODELS[resource.kind].model_validate(example["spec"])


def test_the_vault_grants_the_example_service_accounts() -> None:
    accounts = {o["metadata"]["name"] for o in OBJECTS if o["kind"] == "ServiceAccount"}
    vault = _one("Vault", "demo")
    granted = {entry["serviceAccount"]["name"] for entry in vault["spec"]["access"]}
    assert granted == accounts == {"reader", "signer"}
    assert _one("Pod", "read-secret")["spec"]["serviceAccountName"] == "reader"
    assert _one("Pod", "sign-with-hsm-key")["spec"]["serviceAccountName"] == "signer"


def test_the_reading_pod_asks_the_csi_driver_for_objects_that_exist() -> None:
    pod = _one("Pod", "read-secret")
    volume = next(v for v in pod["spec"]["volumes"] if "csi" in v)["csi"]
    assert volume["driver"] == DRIVER_NAME
    attributes = {**volume["volumeAttributes"], POD_NAMESPACE_KEY: pod["metadata"]["namespace"]}
    request = parse_volume(attributes)
    assert request.vault_url == vault_uri("demo", "demo")
    names = {(o.kind, o.name) for o in request.objects}
    assert names == {("secret", "db-password"), ("key", "signing")}
    assert _one("VaultSecret", "db-password") and _one("Key", "signing")


def test_the_tls_pod_mounts_the_example_certificate_with_its_key() -> None:
    pod = _one("Pod", "serve-tls")
    volume = next(v for v in pod["spec"]["volumes"] if "csi" in v)["csi"]
    attributes = {**volume["volumeAttributes"], POD_NAMESPACE_KEY: pod["metadata"]["namespace"]}
    [certificate] = parse_volume(attributes).objects
    assert (certificate.kind, certificate.name) == ("certificate", "demo-tls")
    assert certificate.paths == ("tls.crt", "tls.key")
    assert _one("VaultCertificate", "demo-tls")["spec"]["exportable"] is True
    # The pod's ServiceAccount reads the certificate's secret.
    reader = next(
        entry
        for entry in _one("Vault", "demo")["spec"]["access"]
        if entry["serviceAccount"]["name"] == pod["spec"]["serviceAccountName"]
    )
    assert "SecretsUser" in reader["roles"]


def test_the_signing_app_projects_the_vaults_own_uri_as_audience() -> None:
    """Under the bound-token rules the app's token is good for its vault only: its
    audience is the vault's URI, which the Vault reports as status.audience."""
    pod = _one("Pod", "sign-with-hsm-key")
    sources = next(v for v in pod["spec"]["volumes"] if v["name"] == "vault-token")
    token = sources["projected"]["sources"][0]["serviceAccountToken"]
    uri = vault_uri("demo", "demo")
    assert token["audience"] == uri != AUDIENCE
    [app] = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in app["env"]}
    assert env["VAULT_URL"] == uri
    assert env["KEY_NAME"] == "signing" and _one("Key", "signing")["spec"]["kty"] == "EC-HSM"
    assert "initContainers" not in pod["spec"], "the SDK comes with the image, not from PyPI"
    assert app["image"] == "strongroom.io/strongroom-example-app:dev"


def test_the_example_app_reads_the_settings_06_gives_it() -> None:
    script = (EXAMPLES / "app" / "sign.py").read_text()
    ast.parse(script)
    pod = _one("Pod", "sign-with-hsm-key")
    [app] = pod["spec"]["containers"]
    for name in (e["name"] for e in app["env"]):
        assert f'os.environ.get("{name}"' in script, name
    mounts = {m["name"]: m["mountPath"] for m in app["volumeMounts"]}
    assert f'"{mounts["vault-token"]}/token"' in script
    assert f'"{mounts["ca"]}/ca.crt"' in script
    assert f'"{vault_uri("demo", "demo")}"' in script


def test_the_example_app_image_installs_only_its_hashed_lock() -> None:
    dockerfile = (EXAMPLES / "app" / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "requirements.lock" in dockerfile
    assert re.search(r"^FROM [^\s]+@sha256:[0-9a-f]{64}$", dockerfile, re.M)
    build = (ROOT / "e2e" / "build-example-image").read_text()
    assert "--require-hashes" in build and "examples/app/requirements.lock" in build


def test_a_secret_imported_into_a_vault_opts_in() -> None:
    """An example that imports a Kubernetes Secret shows the opt-in annotation on it."""
    for secret in (o for o in OBJECTS if o["kind"] == "VaultSecret"):
        source = secret["spec"]["source"].get("fromSecret")
        if source:
            offered = _one("Secret", source["name"])
            annotations = offered["metadata"].get("annotations") or {}
            assert annotations.get("strongroom.io/allow-import") == secret["metadata"]["name"]
