package io.strongroom.sdk;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.azure.core.credential.AccessToken;
import com.azure.core.credential.TokenCredential;
import com.azure.core.http.HttpClient;
import com.azure.core.http.netty.NettyAsyncHttpClientBuilder;
import com.azure.security.keyvault.keys.KeyClient;
import com.azure.security.keyvault.keys.KeyClientBuilder;
import com.azure.security.keyvault.keys.cryptography.CryptographyClient;
import com.azure.security.keyvault.keys.cryptography.models.SignatureAlgorithm;
import com.azure.security.keyvault.keys.models.CreateEcKeyOptions;
import com.azure.security.keyvault.keys.models.KeyCurveName;
import com.azure.security.keyvault.keys.models.KeyVaultKey;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.OffsetDateTime;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Mono;

/** The README's Java quick start, line for line, with the state directory of this run. */
class QuickStartTest {
    @Test
    void theReadmesJavaQuickStartSigns() throws Exception {
        String vaultUrl = DevVault.INSTANCE.url;
        Path state = DevVault.INSTANCE.caFile.getParent();

        TokenCredential credential = request -> Mono.fromCallable(() -> new AccessToken(
                Files.readString(state.resolve("token")).strip(), OffsetDateTime.now().plusMinutes(5)));
        SslContext tls = SslContextBuilder.forClient().trustManager(state.resolve("ca.crt").toFile()).build();
        HttpClient http = new NettyAsyncHttpClientBuilder(
                reactor.netty.http.client.HttpClient.create().secure(spec -> spec.sslContext(tls))).build();
        KeyClient keys = new KeyClientBuilder().vaultUrl(vaultUrl).credential(credential).httpClient(http)
                .disableChallengeResourceVerification().buildClient();
        KeyVaultKey key = keys.createEcKey(new CreateEcKeyOptions("signing")
                .setCurveName(KeyCurveName.P_256).setHardwareProtected(true));
        CryptographyClient crypto = keys.getCryptographyClient("signing");
        byte[] signature = crypto.sign(SignatureAlgorithm.ES256, new byte[32]).getSignature();

        assertTrue(crypto.verify(SignatureAlgorithm.ES256, new byte[32], signature).isValid());
        assertTrue(key.getId().startsWith(vaultUrl + "/keys/signing/"));
    }
}
