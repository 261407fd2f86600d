package io.strongroom.sdk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.azure.core.credential.AccessToken;
import com.azure.core.credential.TokenCredential;
import com.azure.core.exception.HttpResponseException;
import com.azure.core.http.HttpClient;
import com.azure.core.http.netty.NettyAsyncHttpClientBuilder;
import com.azure.json.JsonProviders;
import com.azure.json.JsonReader;
import com.azure.security.keyvault.keys.KeyClient;
import com.azure.security.keyvault.keys.KeyClientBuilder;
import com.azure.security.keyvault.keys.cryptography.CryptographyClient;
import com.azure.security.keyvault.keys.cryptography.CryptographyClientBuilder;
import com.azure.security.keyvault.keys.models.JsonWebKey;
import com.azure.security.keyvault.secrets.SecretClient;
import com.azure.security.keyvault.secrets.SecretClientBuilder;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.time.OffsetDateTime;
import java.util.Map;
import javax.net.ssl.TrustManagerFactory;
import org.junit.jupiter.api.function.Executable;
import reactor.core.publisher.Mono;

/**
 * The Azure SDK clients pointed at `strongroom dev`, as an application would build them: a
 * credential reading the dev token file, TLS trusting only the dev CA, and the challenge's
 * resource check off (localhost has no parent domain to match a resource against).
 */
final class DevVault {
    static final DevVault INSTANCE = load();

    final String url;
    final Path caFile;
    final TokenCredential credential;
    final HttpClient http;
    final KeyClient keys;
    final SecretClient secrets;

    private DevVault(String url, Path caFile, Path tokenFile) {
        this.url = url;
        this.caFile = caFile;
        // Read on every request, as a projected ServiceAccount token must be; never printed.
        this.credential = request -> Mono.fromCallable(
                () -> new AccessToken(Files.readString(tokenFile).strip(), OffsetDateTime.now().plusMinutes(5)));
        this.http = new NettyAsyncHttpClientBuilder(
                        reactor.netty.http.client.HttpClient.create().secure(spec -> spec.sslContext(trusting(caFile))))
                .build();
        this.keys = new KeyClientBuilder()
                .vaultUrl(url)
                .credential(credential)
                .httpClient(http)
                .disableChallengeResourceVerification()
                .buildClient();
        this.secrets = new SecretClientBuilder()
                .vaultUrl(url)
                .credential(credential)
                .httpClient(http)
                .disableChallengeResourceVerification()
                .buildClient();
    }

    /** A client that sends every operation it cannot do locally to the vault. */
    CryptographyClient crypto(String keyId) {
        return new CryptographyClientBuilder()
                .keyIdentifier(keyId)
                .credential(credential)
                .httpClient(http)
                .disableChallengeResourceVerification()
                .buildClient();
    }

    /** A client that works from the public JWK alone, without the vault. */
    static CryptographyClient local(JsonWebKey jwk) {
        return new CryptographyClientBuilder().jsonWebKey(jwk).buildClient();
    }

    /** A TLS context that trusts the dev CA and nothing else; hostnames are still checked. */
    private static SslContext trusting(Path caFile) {
        try (InputStream in = Files.newInputStream(caFile)) {
            KeyStore store = KeyStore.getInstance("PKCS12");
            store.load(null, null);
            store.setCertificateEntry(
                    "strongroom-dev-ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
            TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            trust.init(store);
            return SslContextBuilder.forClient().trustManager(trust).build();
        } catch (IOException | GeneralSecurityException e) {
            throw new IllegalStateException("cannot trust the dev CA " + caFile, e);
        }
    }

    private static DevVault load() {
        String devJson = System.getProperty("strongroom.devJson", "");
        if (devJson.isEmpty() || devJson.startsWith("${")) {
            throw new IllegalStateException(
                    "-Dstrongroom.devJson=<state-dir>/dev.json is required (scripts/test-sdk-java sets it)");
        }
        try (JsonReader reader = JsonProviders.createReader(Files.readAllBytes(Path.of(devJson)))) {
            Map<String, Object> info = reader.readMap(JsonReader::readUntyped);
            return new DevVault(
                    (String) info.get("vaultUrl"),
                    Path.of((String) info.get("caFile")),
                    Path.of((String) info.get("tokenFile")));
        } catch (IOException e) {
            throw new IllegalStateException("cannot read " + devJson, e);
        }
    }

    /** `call` is refused by the service with HTTP `status`. */
    static void expectStatus(int status, Executable call) {
        assertEquals(status, assertThrows(HttpResponseException.class, call).getResponse().getStatusCode());
    }
}
