package io.strongroom.sdk;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.azure.core.http.policy.FixedDelayOptions;
import com.azure.core.http.policy.RetryOptions;
import com.azure.security.keyvault.secrets.SecretClient;
import com.azure.security.keyvault.secrets.SecretClientBuilder;
import java.time.Duration;
import javax.net.ssl.SSLException;
import org.junit.jupiter.api.Test;

/** The tier's clients verify TLS: without the dev CA the same client gets nowhere. */
class TlsTest {
    @Test
    void aClientThatDoesNotTrustTheDevCaIsRefused() {
        SecretClient untrusting = new SecretClientBuilder()
                .vaultUrl(DevVault.INSTANCE.url)
                .credential(DevVault.INSTANCE.credential)
                .disableChallengeResourceVerification()
                .retryOptions(new RetryOptions(new FixedDelayOptions(0, Duration.ZERO)))
                .buildClient();
        RuntimeException refused = assertThrows(RuntimeException.class, () -> untrusting.getSecret("anything"));
        boolean tls = false;
        for (Throwable cause = refused; cause != null; cause = cause.getCause()) {
            tls |= cause instanceof SSLException;
        }
        assertTrue(tls, "expected a TLS failure, got " + refused);
    }
}
