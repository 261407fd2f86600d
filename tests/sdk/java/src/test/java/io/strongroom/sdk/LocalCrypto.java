package io.strongroom.sdk;

import com.azure.security.keyvault.keys.models.JsonWebKey;
import java.math.BigInteger;
import java.security.AlgorithmParameters;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPublicKeySpec;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PSSParameterSpec;
import java.security.spec.RSAPublicKeySpec;
import java.util.Map;
import javax.crypto.Cipher;
import javax.crypto.spec.OAEPParameterSpec;
import javax.crypto.spec.PSource;

/** The JDK's own cryptography on a key's public JWK: what a relying party does without the vault. */
final class LocalCrypto {
    private static final Map<String, String> CURVES = Map.of("P-256", "secp256r1", "P-384", "secp384r1", "P-521", "secp521r1");

    private LocalCrypto() {}

    static byte[] digest(String alg, byte[] message) throws GeneralSecurityException {
        return MessageDigest.getInstance("SHA-" + alg.substring(2)).digest(message);
    }

    static PublicKey rsaPublic(JsonWebKey jwk) throws GeneralSecurityException {
        return KeyFactory.getInstance("RSA")
                .generatePublic(new RSAPublicKeySpec(new BigInteger(1, jwk.getN()), new BigInteger(1, jwk.getE())));
    }

    static PublicKey ecPublic(JsonWebKey jwk) throws GeneralSecurityException {
        AlgorithmParameters parameters = AlgorithmParameters.getInstance("EC");
        parameters.init(new ECGenParameterSpec(CURVES.get(jwk.getCurveName().toString())));
        ECPoint point = new ECPoint(new BigInteger(1, jwk.getX()), new BigInteger(1, jwk.getY()));
        return KeyFactory.getInstance("EC")
                .generatePublic(new ECPublicKeySpec(point, parameters.getParameterSpec(ECParameterSpec.class)));
    }

    /**
     * Whether `signature` (as Key Vault returns it: PKCS#1, PSS with a salt as long as the
     * digest, or ECDSA as r||s) signs `message` under `alg` (RS*, PS*, ES*).
     */
    static boolean verifies(JsonWebKey jwk, String alg, byte[] message, byte[] signature)
            throws GeneralSecurityException {
        String bits = alg.substring(2);
        Signature verifier;
        if (alg.startsWith("RS")) {
            verifier = Signature.getInstance("SHA" + bits + "withRSA");
            verifier.initVerify(rsaPublic(jwk));
        } else if (alg.startsWith("PS")) {
            verifier = Signature.getInstance("RSASSA-PSS");
            verifier.setParameter(new PSSParameterSpec(
                    "SHA-" + bits, "MGF1", new MGF1ParameterSpec("SHA-" + bits), Integer.parseInt(bits) / 8, 1));
            verifier.initVerify(rsaPublic(jwk));
        } else {
            verifier = Signature.getInstance("SHA" + bits + "withECDSAinP1363Format");
            verifier.initVerify(ecPublic(jwk));
        }
        verifier.update(message);
        return verifier.verify(signature);
    }

    /** RSA encryption as Key Vault defines RSA-OAEP (SHA-1), RSA-OAEP-256 (SHA-256, MGF1 SHA-256) and RSA1_5. */
    static byte[] rsaEncrypt(JsonWebKey jwk, String alg, byte[] plaintext) throws GeneralSecurityException {
        Cipher cipher;
        if (alg.equals("RSA1_5")) {
            cipher = Cipher.getInstance("RSA/ECB/PKCS1Padding");
            cipher.init(Cipher.ENCRYPT_MODE, rsaPublic(jwk));
        } else {
            String hash = alg.equals("RSA-OAEP") ? "SHA-1" : "SHA-256";
            cipher = Cipher.getInstance("RSA/ECB/OAEPPadding");
            cipher.init(Cipher.ENCRYPT_MODE, rsaPublic(jwk),
                    new OAEPParameterSpec(hash, "MGF1", new MGF1ParameterSpec(hash), PSource.PSpecified.DEFAULT));
        }
        return cipher.doFinal(plaintext);
    }
}
