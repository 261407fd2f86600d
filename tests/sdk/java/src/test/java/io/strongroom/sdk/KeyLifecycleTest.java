package io.strongroom.sdk;

import static io.strongroom.sdk.DevVault.expectStatus;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.azure.core.exception.HttpResponseException;
import com.azure.core.exception.ResourceNotFoundException;
import com.azure.core.http.rest.PagedResponse;
import com.azure.core.util.polling.LongRunningOperationStatus;
import com.azure.core.util.polling.PollResponse;
import com.azure.core.util.polling.SyncPoller;
import com.azure.security.keyvault.keys.KeyClient;
import com.azure.security.keyvault.keys.cryptography.models.SignatureAlgorithm;
import com.azure.security.keyvault.keys.models.CreateEcKeyOptions;
import com.azure.security.keyvault.keys.models.CreateKeyOptions;
import com.azure.security.keyvault.keys.models.CreateRsaKeyOptions;
import com.azure.security.keyvault.keys.models.DeletedKey;
import com.azure.security.keyvault.keys.models.KeyCurveName;
import com.azure.security.keyvault.keys.models.KeyOperation;
import com.azure.security.keyvault.keys.models.KeyProperties;
import com.azure.security.keyvault.keys.models.KeyRotationLifetimeAction;
import com.azure.security.keyvault.keys.models.KeyRotationPolicy;
import com.azure.security.keyvault.keys.models.KeyRotationPolicyAction;
import com.azure.security.keyvault.keys.models.KeyType;
import com.azure.security.keyvault.keys.models.KeyVaultKey;
import java.nio.charset.StandardCharsets;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.temporal.ChronoUnit;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/** Versions, listing, soft delete, backup, rotation and random bytes through KeyClient. */
class KeyLifecycleTest {
    private static final KeyClient KEYS = DevVault.INSTANCE.keys;

    private static KeyVaultKey ecKey(String name, KeyCurveName curve) {
        return KEYS.createEcKey(new CreateEcKeyOptions(name).setCurveName(curve));
    }

    @Test
    void versionsUpdateAndLatest() {
        KeyVaultKey first = ecKey("versioned", KeyCurveName.P_256);
        KeyVaultKey second = ecKey("versioned", KeyCurveName.P_256);
        String v1 = first.getProperties().getVersion();
        assertNotEquals(v1, second.getProperties().getVersion());
        assertEquals(second.getId(), KEYS.getKey("versioned").getId());
        assertEquals(first.getId(), KEYS.getKey("versioned", v1).getId());
        Set<String> versions = KEYS.listPropertiesOfKeyVersions("versioned").stream()
                .map(KeyProperties::getVersion)
                .collect(Collectors.toSet());
        assertEquals(Set.of(v1, second.getProperties().getVersion()), versions);

        KeyVaultKey updated = KEYS.updateKeyProperties(
                first.getProperties().setEnabled(false).setTags(Map.of("team", "payments")));
        assertFalse(updated.getProperties().isEnabled());
        assertEquals(Map.of("team", "payments"), updated.getProperties().getTags());
        assertEquals(v1, updated.getProperties().getVersion());
        // A disabled version signs nothing; KeyClient.getCryptographyClient is the Java way
        // to a crypto client for a stored key.
        expectStatus(403, () -> KEYS.getCryptographyClient("versioned", v1)
                .sign(SignatureAlgorithm.ES256, new byte[32]));
        byte[] digest = new byte[32];
        assertEquals(64, KEYS.getCryptographyClient("versioned").sign(SignatureAlgorithm.ES256, digest)
                .getSignature().length);
        assertTrue(KEYS.listPropertiesOfKeys().stream().anyMatch(p -> p.getName().equals("versioned")));
    }

    @Test
    void keyOperationsDatesAndTagsRoundTrip() {
        OffsetDateTime expires = OffsetDateTime.now(ZoneOffset.UTC).plusDays(30).truncatedTo(ChronoUnit.SECONDS);
        KeyVaultKey key = KEYS.createEcKey(new CreateEcKeyOptions("limited")
                .setKeyOperations(KeyOperation.SIGN)
                .setExpiresOn(expires)
                .setTags(Map.of("owner", "java")));
        assertEquals(List.of(KeyOperation.SIGN), key.getKeyOperations());
        assertEquals(expires.toInstant(), key.getProperties().getExpiresOn().toInstant());
        assertEquals(Map.of("owner", "java"), key.getProperties().getTags());
        KeyVaultKey widened = KEYS.updateKeyProperties(key.getProperties(), KeyOperation.SIGN, KeyOperation.VERIFY);
        assertEquals(Set.of(KeyOperation.SIGN, KeyOperation.VERIFY), Set.copyOf(widened.getKeyOperations()));
        assertEquals(Map.of("owner", "java"), widened.getProperties().getTags());

        // The generic createKey, and a version not valid yet: the vault refuses to sign with it.
        KeyVaultKey later = KEYS.createKey(new CreateKeyOptions("not-yet", KeyType.EC_HSM)
                .setNotBefore(OffsetDateTime.now(ZoneOffset.UTC).plusDays(1)));
        assertEquals(KeyType.EC_HSM, later.getKeyType());
        expectStatus(403, () -> DevVault.INSTANCE.crypto(later.getId()).sign(SignatureAlgorithm.ES256, new byte[32]));
    }

    @Test
    void listingPagesFollowNextLinks() {
        for (int index = 0; index < 30; index++) {
            ecKey("paged-" + index, KeyCurveName.P_256);
        }
        List<String> names = KEYS.listPropertiesOfKeys().stream().map(KeyProperties::getName).toList();
        assertEquals(30, names.stream().filter(n -> n.startsWith("paged-")).count());
        assertEquals(names.size(), Set.copyOf(names).size());
        List<PagedResponse<KeyProperties>> pages = KEYS.listPropertiesOfKeys().streamByPage().toList();
        assertTrue(pages.size() >= 2, "30 keys come in more than one page");
        assertTrue(pages.stream().allMatch(page -> page.getValue().size() <= 25));
    }

    @Test
    void softDeleteRecoverAndPurgeThroughThePollers() {
        KeyVaultKey key = KEYS.createRsaKey(new CreateRsaKeyOptions("deletable").setKeySize(2048));
        SyncPoller<DeletedKey, Void> deleting = KEYS.beginDeleteKey("deletable");
        PollResponse<DeletedKey> done = deleting.waitForCompletion();
        assertEquals(LongRunningOperationStatus.SUCCESSFULLY_COMPLETED, done.getStatus());
        DeletedKey deleted = done.getValue();
        assertTrue(deleted.getRecoveryId().endsWith("/deletedkeys/deletable"), deleted.getRecoveryId());
        assertTrue(deleted.getScheduledPurgeDate().isAfter(deleted.getDeletedOn()));
        assertThrows(ResourceNotFoundException.class, () -> KEYS.getKey("deletable"));
        assertEquals("deletable", KEYS.getDeletedKey("deletable").getName());
        assertTrue(KEYS.listDeletedKeys().stream().anyMatch(k -> k.getName().equals("deletable")));
        expectStatus(409, () -> KEYS.createRsaKey(new CreateRsaKeyOptions("deletable")));

        PollResponse<KeyVaultKey> recovered = KEYS.beginRecoverDeletedKey("deletable").waitForCompletion();
        assertEquals(LongRunningOperationStatus.SUCCESSFULLY_COMPLETED, recovered.getStatus());
        assertEquals(key.getId(), recovered.getValue().getId());
        assertEquals(key.getId(), KEYS.getKey("deletable").getId());

        KEYS.beginDeleteKey("deletable").waitForCompletion();
        KEYS.purgeDeletedKey("deletable");
        assertThrows(ResourceNotFoundException.class, () -> KEYS.getDeletedKey("deletable"));
    }

    @Test
    void backupThenPurgeThenRestoreSignsWithTheSameKey() throws Exception {
        KeyVaultKey key = ecKey("backed-up", KeyCurveName.P_384);
        byte[] backup = KEYS.backupKey("backed-up");
        KEYS.beginDeleteKey("backed-up").waitForCompletion();
        KEYS.purgeDeletedKey("backed-up");
        KeyVaultKey restored = KEYS.restoreKeyBackup(backup);
        assertEquals(key.getId(), restored.getId());
        assertArrayEquals(key.getKey().getX(), restored.getKey().getX());
        byte[] message = "after restore".getBytes(StandardCharsets.UTF_8);
        byte[] signature = DevVault.INSTANCE.crypto(restored.getId())
                .sign(SignatureAlgorithm.ES384, LocalCrypto.digest("ES384", message))
                .getSignature();
        assertTrue(LocalCrypto.verifies(key.getKey(), "ES384", message, signature));
        expectStatus(409, () -> KEYS.restoreKeyBackup(backup));
    }

    @Test
    void rotateAndRotationPolicy() {
        KeyVaultKey key = KEYS.createRsaKey(new CreateRsaKeyOptions("rotating").setKeySize(2048));
        KeyRotationPolicy policy = KEYS.updateKeyRotationPolicy("rotating", new KeyRotationPolicy()
                .setLifetimeActions(List.of(
                        new KeyRotationLifetimeAction(KeyRotationPolicyAction.ROTATE).setTimeAfterCreate("P30D")))
                .setExpiresIn("P90D"));
        assertEquals("P90D", policy.getExpiresIn());
        KeyRotationPolicy fetched = KEYS.getKeyRotationPolicy("rotating");
        assertEquals("P30D", fetched.getLifetimeActions().get(0).getTimeAfterCreate());
        assertEquals(KeyRotationPolicyAction.ROTATE, fetched.getLifetimeActions().get(0).getAction());
        assertNotNull(fetched.getCreatedOn());
        KeyVaultKey rotated = KEYS.rotateKey("rotating");
        assertNotEquals(key.getProperties().getVersion(), rotated.getProperties().getVersion());
        assertNotNull(rotated.getProperties().getExpiresOn());
        assertFalse(java.util.Arrays.equals(key.getKey().getN(), rotated.getKey().getN()));
        assertEquals(rotated.getId(), KEYS.getKey("rotating").getId());
    }

    @Test
    void randomBytesComeFromTheHsm() {
        byte[] first = KEYS.getRandomBytes(32);
        assertEquals(32, first.length);
        assertFalse(java.util.Arrays.equals(first, KEYS.getRandomBytes(32)));
    }

    @Test
    void rsaPublicExponentIsTheServicesChoiceOr65537AndNothingElse() {
        // The Java SDK sends "public_exponent": 0 when the caller sets none (above), and the
        // number it is given otherwise.
        KeyVaultKey chosen = KEYS.createRsaKey(new CreateRsaKeyOptions("exponent-65537").setPublicExponent(65537));
        assertArrayEquals(new byte[] {1, 0, 1}, chosen.getKey().getE());
        HttpResponseException refused = assertThrows(HttpResponseException.class,
                () -> KEYS.createRsaKey(new CreateRsaKeyOptions("exponent-3").setPublicExponent(3)));
        assertEquals(400, refused.getResponse().getStatusCode());
        assertTrue(refused.getMessage().contains("public_exponent"), refused.getMessage());
    }
}
