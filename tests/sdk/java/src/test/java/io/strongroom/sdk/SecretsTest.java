package io.strongroom.sdk;

import static io.strongroom.sdk.DevVault.expectStatus;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.azure.core.exception.ResourceNotFoundException;
import com.azure.core.http.rest.PagedResponse;
import com.azure.core.util.polling.LongRunningOperationStatus;
import com.azure.core.util.polling.PollResponse;
import com.azure.security.keyvault.secrets.SecretClient;
import com.azure.security.keyvault.secrets.models.DeletedSecret;
import com.azure.security.keyvault.secrets.models.KeyVaultSecret;
import com.azure.security.keyvault.secrets.models.SecretProperties;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/** The official azure-security-keyvault-secrets client against `strongroom dev`. */
class SecretsTest {
    private static final SecretClient SECRETS = DevVault.INSTANCE.secrets;

    @Test
    void setGetVersionsAndUpdate() {
        KeyVaultSecret first = SECRETS.setSecret(new KeyVaultSecret("db-password", "one")
                .setProperties(new SecretProperties().setContentType("text/plain")));
        KeyVaultSecret second = SECRETS.setSecret(new KeyVaultSecret("db-password", "two")
                .setProperties(new SecretProperties().setTags(Map.of("env", "test"))));
        String v1 = first.getProperties().getVersion();
        assertEquals("two", SECRETS.getSecret("db-password").getValue());
        assertEquals("one", SECRETS.getSecret("db-password", v1).getValue());
        assertEquals("text/plain", first.getProperties().getContentType());
        Set<String> versions = SECRETS.listPropertiesOfSecretVersions("db-password").stream()
                .map(SecretProperties::getVersion)
                .collect(Collectors.toSet());
        assertEquals(Set.of(v1, second.getProperties().getVersion()), versions);
        List<SecretProperties> listed = SECRETS.listPropertiesOfSecrets().stream()
                .filter(p -> p.getName().equals("db-password"))
                .toList();
        assertEquals(1, listed.size());
        assertEquals(Map.of("env", "test"), listed.get(0).getTags());

        SecretProperties updated = SECRETS.updateSecretProperties(first.getProperties().setEnabled(false));
        assertFalse(updated.isEnabled());
        expectStatus(403, () -> SECRETS.getSecret("db-password", v1));
        assertEquals("two", SECRETS.getSecret("db-password").getValue());
    }

    @Test
    void listingPagesFollowNextLinks() {
        for (int index = 0; index < 30; index++) {
            SECRETS.setSecret("paged-" + index, "value " + index);
        }
        List<String> names = SECRETS.listPropertiesOfSecrets().stream().map(SecretProperties::getName).toList();
        assertEquals(30, names.stream().filter(n -> n.startsWith("paged-")).count());
        assertEquals(names.size(), Set.copyOf(names).size());
        List<PagedResponse<SecretProperties>> pages = SECRETS.listPropertiesOfSecrets().streamByPage().toList();
        assertTrue(pages.size() >= 2, "30 secrets come in more than one page");
    }

    @Test
    void softDeleteRecoverAndPurgeThroughThePollers() {
        SECRETS.setSecret("temporary", "value");
        PollResponse<DeletedSecret> deleted = SECRETS.beginDeleteSecret("temporary").waitForCompletion();
        assertEquals(LongRunningOperationStatus.SUCCESSFULLY_COMPLETED, deleted.getStatus());
        assertTrue(deleted.getValue().getRecoveryId().endsWith("/deletedsecrets/temporary"));
        assertTrue(deleted.getValue().getScheduledPurgeDate().isAfter(deleted.getValue().getDeletedOn()));
        assertThrows(ResourceNotFoundException.class, () -> SECRETS.getSecret("temporary"));
        assertTrue(SECRETS.listDeletedSecrets().stream().anyMatch(s -> s.getName().equals("temporary")));
        assertEquals("temporary", SECRETS.getDeletedSecret("temporary").getName());
        expectStatus(409, () -> SECRETS.setSecret("temporary", "again"));

        PollResponse<KeyVaultSecret> recovered = SECRETS.beginRecoverDeletedSecret("temporary").waitForCompletion();
        assertEquals(LongRunningOperationStatus.SUCCESSFULLY_COMPLETED, recovered.getStatus());
        assertEquals("value", SECRETS.getSecret("temporary").getValue());

        SECRETS.beginDeleteSecret("temporary").waitForCompletion();
        SECRETS.purgeDeletedSecret("temporary");
        assertThrows(ResourceNotFoundException.class, () -> SECRETS.getDeletedSecret("temporary"));
    }

    @Test
    void backupThenPurgeThenRestore() {
        SECRETS.setSecret("kept", "precious");
        byte[] backup = SECRETS.backupSecret("kept");
        SECRETS.beginDeleteSecret("kept").waitForCompletion();
        SECRETS.purgeDeletedSecret("kept");
        KeyVaultSecret restored = SECRETS.restoreSecretBackup(backup);
        assertEquals("kept", restored.getName());
        assertEquals("precious", SECRETS.getSecret("kept").getValue());
        expectStatus(409, () -> SECRETS.restoreSecretBackup(backup));
    }

    @Test
    void largeValuesUpToTheLimit() {
        String value = "x".repeat(25 * 1024);
        SECRETS.setSecret("large", value);
        assertEquals(value, SECRETS.getSecret("large").getValue());
        expectStatus(400, () -> SECRETS.setSecret("large", value + "x"));
    }
}
