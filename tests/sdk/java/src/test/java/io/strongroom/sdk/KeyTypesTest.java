package io.strongroom.sdk;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.azure.security.keyvault.keys.KeyClient;
import com.azure.security.keyvault.keys.cryptography.CryptographyClient;
import com.azure.security.keyvault.keys.cryptography.models.EncryptResult;
import com.azure.security.keyvault.keys.cryptography.models.EncryptionAlgorithm;
import com.azure.security.keyvault.keys.cryptography.models.KeyWrapAlgorithm;
import com.azure.security.keyvault.keys.cryptography.models.SignatureAlgorithm;
import com.azure.security.keyvault.keys.models.CreateEcKeyOptions;
import com.azure.security.keyvault.keys.models.CreateOctKeyOptions;
import com.azure.security.keyvault.keys.models.CreateRsaKeyOptions;
import com.azure.security.keyvault.keys.models.KeyCurveName;
import com.azure.security.keyvault.keys.models.KeyType;
import com.azure.security.keyvault.keys.models.KeyVaultKey;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** Every key type the vault makes, and every algorithm of each, through azure-security-keyvault-keys. */
class KeyTypesTest {
    private static final KeyClient KEYS = DevVault.INSTANCE.keys;
    private static final Map<String, String> CURVE_ALG = Map.of("P-256", "ES256", "P-384", "ES384", "P-521", "ES512");

    @ParameterizedTest(name = "RSA {0} bits, HSM {1}: sign, verify, encrypt, wrap")
    @CsvSource({"2048,true", "3072,true", "4096,true", "2048,false", "3072,false", "4096,false"})
    void rsaKeysSignEncryptAndWrap(int size, boolean hsm) throws Exception {
        // The Java SDK sends "public_exponent" on every RSA create (Python sends none); Azure
        // takes it when it is absent, 0 or 65537.
        KeyVaultKey key = KEYS.createRsaKey(
                new CreateRsaKeyOptions("rsa-" + size + "-" + hsm).setKeySize(size).setHardwareProtected(hsm));
        assertEquals(hsm ? KeyType.RSA_HSM : KeyType.RSA, key.getKeyType());
        assertEquals(size, new BigInteger(1, key.getKey().getN()).bitLength());
        assertArrayEquals(new byte[] {1, 0, 1}, key.getKey().getE());

        CryptographyClient crypto = DevVault.INSTANCE.crypto(key.getId());
        for (String name : new String[] {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}) {
            SignatureAlgorithm alg = SignatureAlgorithm.fromString(name);
            byte[] message = ("message for " + name).getBytes(StandardCharsets.UTF_8);
            byte[] digest = LocalCrypto.digest(name, message);
            byte[] signature = crypto.sign(alg, digest).getSignature();
            assertTrue(LocalCrypto.verifies(key.getKey(), name, message, signature), name);
            assertTrue(crypto.verify(alg, digest, signature).isValid(), name);
            byte[] overData = crypto.signData(alg, message).getSignature();
            assertTrue(LocalCrypto.verifies(key.getKey(), name, message, overData), name);
            assertTrue(crypto.verifyData(alg, message, overData).isValid(), name);
            overData[overData.length - 1] ^= 1;
            assertFalse(crypto.verifyData(alg, message, overData).isValid(), name);
        }

        // The Java SDK's local (JWK-only) client has no RSA-OAEP-256; a client with a key id
        // sends that one to the vault, which encrypts with the public key as Azure does.
        CryptographyClient local = DevVault.local(key.getKey());
        for (String name : new String[] {"RSA-OAEP", "RSA-OAEP-256", "RSA1_5"}) {
            byte[] plaintext = ("plaintext " + name).getBytes(StandardCharsets.UTF_8);
            EncryptionAlgorithm alg = EncryptionAlgorithm.fromString(name);
            KeyWrapAlgorithm wrap = KeyWrapAlgorithm.fromString(name);
            byte[] secret = new byte[32];
            Arrays.fill(secret, (byte) 'k');
            List<byte[]> ciphertexts = new ArrayList<>();
            List<byte[]> wrapped = new ArrayList<>();
            ciphertexts.add(LocalCrypto.rsaEncrypt(key.getKey(), name, plaintext));
            wrapped.add(LocalCrypto.rsaEncrypt(key.getKey(), name, secret));
            ciphertexts.add(crypto.encrypt(alg, plaintext).getCipherText());
            wrapped.add(crypto.wrapKey(wrap, secret).getEncryptedKey());
            if (!name.equals("RSA-OAEP-256")) {
                ciphertexts.add(local.encrypt(alg, plaintext).getCipherText());
                wrapped.add(local.wrapKey(wrap, secret).getEncryptedKey());
            }
            for (byte[] ciphertext : ciphertexts) {
                assertArrayEquals(plaintext, crypto.decrypt(alg, ciphertext).getPlainText(), name);
            }
            for (byte[] encryptedKey : wrapped) {
                assertArrayEquals(secret, crypto.unwrapKey(wrap, encryptedKey).getKey(), name);
            }
        }
    }

    @ParameterizedTest(name = "EC {0}, HSM {1}: sign and verify against the JWK")
    @CsvSource({"P-256,true", "P-384,true", "P-521,true", "P-256,false", "P-384,false", "P-521,false"})
    void ecKeysSignAndVerifyAgainstTheJwk(String curve, boolean hsm) throws Exception {
        KeyVaultKey key = KEYS.createEcKey(new CreateEcKeyOptions("ec-" + curve + "-" + hsm)
                .setCurveName(KeyCurveName.fromString(curve))
                .setHardwareProtected(hsm));
        assertEquals(hsm ? KeyType.EC_HSM : KeyType.EC, key.getKeyType());
        assertEquals(curve, key.getKey().getCurveName().toString());
        String name = CURVE_ALG.get(curve);
        SignatureAlgorithm alg = SignatureAlgorithm.fromString(name);
        byte[] message = "message".getBytes(StandardCharsets.UTF_8);
        byte[] digest = LocalCrypto.digest(name, message);
        CryptographyClient crypto = DevVault.INSTANCE.crypto(key.getId());
        byte[] signature = crypto.sign(alg, digest).getSignature();
        assertTrue(LocalCrypto.verifies(key.getKey(), name, message, signature));
        assertTrue(crypto.verify(alg, digest, signature).isValid());
        assertFalse(crypto.verify(alg, digest, new byte[signature.length]).isValid());
        byte[] overData = crypto.signData(alg, message).getSignature();
        assertTrue(LocalCrypto.verifies(key.getKey(), name, message, overData));
        assertTrue(DevVault.local(key.getKey()).verifyData(alg, message, overData).isValid());
    }

    @ParameterizedTest(name = "oct-HSM {0} bits: AES-GCM, CBC, CBCPAD and KW in the vault")
    @ValueSource(ints = {128, 192, 256})
    void octHsmKeysEncryptAndWrapInTheVault(int size) {
        KeyVaultKey key = KEYS.createOctKey(
                new CreateOctKeyOptions("oct-" + size).setKeySize(size).setHardwareProtected(true));
        assertEquals(KeyType.OCT_HSM, key.getKeyType());
        CryptographyClient crypto = DevVault.INSTANCE.crypto(key.getId());
        byte[] plaintext = "sixteen byte msg".repeat(3).getBytes(StandardCharsets.UTF_8);
        byte[] aad = "context".getBytes(StandardCharsets.UTF_8);

        EncryptResult sealed = crypto.encrypt(Aes.gcm(size, plaintext, aad), null);
        assertEquals(12, sealed.getIv().length);
        assertEquals(16, sealed.getAuthenticationTag().length);
        assertArrayEquals(plaintext, crypto.decrypt(
                Aes.gcmDecrypt(size, sealed.getCipherText(), sealed.getIv(), sealed.getAuthenticationTag(), aad), null)
                .getPlainText());

        byte[] odd = "not a block multiple".getBytes(StandardCharsets.UTF_8);
        for (boolean pad : new boolean[] {false, true}) {
            byte[] data = pad ? odd : plaintext;
            // No iv given: the vault picks one and returns it.
            EncryptResult picked = crypto.encrypt(Aes.cbc(size, pad, data, null), null);
            assertEquals(16, picked.getIv().length);
            assertArrayEquals(data, crypto.decrypt(
                    Aes.cbcDecrypt(size, pad, picked.getCipherText(), picked.getIv()), null).getPlainText());
            // A chosen iv: allowed to this caller, who may decrypt with the key anyway.
            byte[] iv = new byte[16];
            new SecureRandom().nextBytes(iv);
            EncryptResult chosen = crypto.encrypt(Aes.cbc(size, pad, data, iv), null);
            assertArrayEquals(iv, chosen.getIv());
            assertArrayEquals(data, crypto.decrypt(
                    Aes.cbcDecrypt(size, pad, chosen.getCipherText(), iv), null).getPlainText());
        }

        KeyWrapAlgorithm kw = KeyWrapAlgorithm.fromString("A" + size + "KW");
        byte[] secret = new byte[32];
        Arrays.fill(secret, (byte) 'w');
        byte[] wrapped = crypto.wrapKey(kw, secret).getEncryptedKey();
        assertEquals(40, wrapped.length);
        assertArrayEquals(secret, crypto.unwrapKey(kw, wrapped).getKey());
    }
}
