// Checks made with node:crypto alone, from the public JWK the vault returned: a signature
// the service made must verify without the service.
import { constants, createHash, createPublicKey, verify } from "node:crypto";

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");

export function publicKey(jwk) {
  if (jwk.kty.startsWith("RSA")) {
    return createPublicKey({ key: { kty: "RSA", n: b64url(jwk.n), e: b64url(jwk.e) }, format: "jwk" });
  }
  return createPublicKey({
    key: { kty: "EC", crv: jwk.crv, x: b64url(jwk.x), y: b64url(jwk.y) },
    format: "jwk",
  });
}

export const hashOf = (alg) => `sha${alg.slice(2)}`;
export const digest = (alg, message) => createHash(hashOf(alg)).update(message).digest();

/** Whether `signature` (as Key Vault returns it) signs `message` under `alg` for this JWK. */
export function verifiesLocally(jwk, alg, message, signature) {
  const key = publicKey(jwk);
  const hash = hashOf(alg);
  if (alg.startsWith("ES")) {
    // Key Vault's EC signatures are r || s, which node calls ieee-p1363.
    return verify(hash, message, { key, dsaEncoding: "ieee-p1363" }, signature);
  }
  if (alg.startsWith("PS")) {
    // Azure's PSS uses a salt as long as the hash.
    const saltLength = createHash(hash).digest().length;
    return verify(hash, message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }, signature);
  }
  return verify(hash, message, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
}
