package io.strongroom.sdk;

import com.azure.security.keyvault.keys.cryptography.models.DecryptParameters;
import com.azure.security.keyvault.keys.cryptography.models.EncryptParameters;

/** The SDK's AES parameter factories, one per key size, chosen by size. */
final class Aes {
    private Aes() {}

    static EncryptParameters gcm(int size, byte[] plaintext, byte[] aad) {
        return switch (size) {
            case 128 -> EncryptParameters.createA128GcmParameters(plaintext, aad);
            case 192 -> EncryptParameters.createA192GcmParameters(plaintext, aad);
            default -> EncryptParameters.createA256GcmParameters(plaintext, aad);
        };
    }

    static DecryptParameters gcmDecrypt(int size, byte[] ciphertext, byte[] iv, byte[] tag, byte[] aad) {
        return switch (size) {
            case 128 -> DecryptParameters.createA128GcmParameters(ciphertext, iv, tag, aad);
            case 192 -> DecryptParameters.createA192GcmParameters(ciphertext, iv, tag, aad);
            default -> DecryptParameters.createA256GcmParameters(ciphertext, iv, tag, aad);
        };
    }

    /** CBC (pad false) or CBCPAD; `iv` null lets the vault choose it. */
    static EncryptParameters cbc(int size, boolean pad, byte[] plaintext, byte[] iv) {
        if (iv == null) {
            return switch (size) {
                case 128 -> pad ? EncryptParameters.createA128CbcPadParameters(plaintext)
                        : EncryptParameters.createA128CbcParameters(plaintext);
                case 192 -> pad ? EncryptParameters.createA192CbcPadParameters(plaintext)
                        : EncryptParameters.createA192CbcParameters(plaintext);
                default -> pad ? EncryptParameters.createA256CbcPadParameters(plaintext)
                        : EncryptParameters.createA256CbcParameters(plaintext);
            };
        }
        return switch (size) {
            case 128 -> pad ? EncryptParameters.createA128CbcPadParameters(plaintext, iv)
                    : EncryptParameters.createA128CbcParameters(plaintext, iv);
            case 192 -> pad ? EncryptParameters.createA192CbcPadParameters(plaintext, iv)
                    : EncryptParameters.createA192CbcParameters(plaintext, iv);
            default -> pad ? EncryptParameters.createA256CbcPadParameters(plaintext, iv)
                    : EncryptParameters.createA256CbcParameters(plaintext, iv);
        };
    }

    static DecryptParameters cbcDecrypt(int size, boolean pad, byte[] ciphertext, byte[] iv) {
        return switch (size) {
            case 128 -> pad ? DecryptParameters.createA128CbcPadParameters(ciphertext, iv)
                    : DecryptParameters.createA128CbcParameters(ciphertext, iv);
            case 192 -> pad ? DecryptParameters.createA192CbcPadParameters(ciphertext, iv)
                    : DecryptParameters.createA192CbcParameters(ciphertext, iv);
            default -> pad ? DecryptParameters.createA256CbcPadParameters(ciphertext, iv)
                    : DecryptParameters.createA256CbcParameters(ciphertext, iv);
        };
    }
}
