"""The official azure-keyvault-secrets client against `strongroom dev`."""

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from .conftest import Clients


def test_set_get_versions_and_update(clients: Clients) -> None:
    first = clients.secrets.set_secret("db-password", "one", content_type="text/plain")
    second = clients.secrets.set_secret("db-password", "two", tags={"env": "test"})
    assert clients.secrets.get_secret("db-password").value == "two"
    assert clients.secrets.get_secret("db-password", first.properties.version).value == "one"
    assert first.properties.content_type == "text/plain"
    listed_versions = clients.secrets.list_properties_of_secret_versions("db-password")
    versions = {p.version for p in listed_versions}
    assert versions == {first.properties.version, second.properties.version}
    listed = [p for p in clients.secrets.list_properties_of_secrets() if p.name == "db-password"]
    assert len(listed) == 1 and listed[0].tags == {"env": "test"}
    updated = clients.secrets.update_secret_properties(
        "db-password", first.properties.version, enabled=False
    )
    assert updated.enabled is False
    with pytest.raises(HttpResponseError) as disabled:
        clients.secrets.get_secret("db-password", first.properties.version)
    assert disabled.value.status_code == 403


def test_soft_delete_recover_and_purge(clients: Clients) -> None:
    clients.secrets.set_secret("temporary", "value")
    deleted = clients.secrets.begin_delete_secret("temporary").result()
    assert deleted.recovery_id.endswith("/deletedsecrets/temporary")
    with pytest.raises(ResourceNotFoundError):
        clients.secrets.get_secret("temporary")
    assert "temporary" in {s.name for s in clients.secrets.list_deleted_secrets()}
    assert clients.secrets.get_deleted_secret("temporary").name == "temporary"
    clients.secrets.begin_recover_deleted_secret("temporary").wait()
    assert clients.secrets.get_secret("temporary").value == "value"
    clients.secrets.begin_delete_secret("temporary").wait()
    clients.secrets.purge_deleted_secret("temporary")
    with pytest.raises(ResourceNotFoundError):
        clients.secrets.get_deleted_secret("temporary")


def test_backup_and_restore(clients: Clients) -> None:
    clients.secrets.set_secret("kept", "precious")
    backup = clients.secrets.backup_secret("kept")
    clients.secrets.begin_delete_secret("kept").wait()
    clients.secrets.purge_deleted_secret("kept")
    restored = clients.secrets.restore_secret_backup(backup)
    assert restored.name == "kept"
    assert clients.secrets.get_secret("kept").value == "precious"


def test_large_values_up_to_the_limit(clients: Clients) -> None:
    value = "x" * 25 * 1024
    clients.secrets.set_secret("large", value)
    assert clients.secrets.get_secret("large").value == value
    with pytest.raises(HttpResponseError) as too_large:
        clients.secrets.set_secret("large", value + "x")
    assert too_large.value.status_code == 400
