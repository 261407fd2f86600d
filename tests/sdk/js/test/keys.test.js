// @azure/keyvault-keys against strongroom dev: every key type, size and curve, every
// signature, encryption and wrap algorithm, and the key lifecycle.
import { test } from "node:test";
import assert from "node:assert/strict";
import { constants, publicEncrypt, randomBytes } from "node:crypto";
import { keys, crypto, fast, unique, rejectsWithStatus } from "./env.js";
import { digest, publicKey, verifiesLocally } from "./local.js";

const RSA_SIGNING = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
const RSA_ENCRYPTION = ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"];
const CURVE_ALG = { "P-256": "ES256", "P-384": "ES384", "P-521": "ES512" };
const NODE_OAEP = { "RSA-OAEP": "sha1", "RSA-OAEP-256": "sha256" };

for (const size of [2048, 3072, 4096]) {
  for (const hsm of [true, false]) {
    const kty = hsm ? "RSA-HSM" : "RSA";
    test(`${kty} ${size}: sign (verified with node:crypto), encrypt/decrypt and wrap/unwrap`, async () => {
      const key = await keys.createRsaKey(unique(`js-rsa-${size}`), { keySize: size, hsm });
      assert.equal(key.keyType, kty);
      assert.equal(key.key.n.length * 8, size);
      assert.deepEqual([...key.key.e], [1, 0, 1]);
      const client = crypto(key.id);
      for (const alg of RSA_SIGNING) {
        const message = Buffer.from(`message for ${alg}`);
        const signed = await client.sign(alg, digest(alg, message));
        assert.equal(signed.keyID, key.id);
        assert.ok(verifiesLocally(key.key, alg, message, signed.result), `${alg} verifies locally`);
        assert.equal((await client.verify(alg, digest(alg, message), signed.result)).result, true);
        // signData hashes in the SDK and signs in the vault.
        const data = await client.signData(alg, message);
        assert.ok(verifiesLocally(key.key, alg, message, data.result));
        // JS differs from Python here: verifyData of an RSA key never reaches the vault, the
        // SDK checks it from the JWK, with PKCS#1 v1.5 padding whatever the algorithm, so it
        // answers false for a good PS* signature (an SDK limitation; verify() asks the vault).
        const local = (await client.verifyData(alg, message, data.result)).result;
        assert.equal(local, alg.startsWith("RS"));
      }
      for (const alg of RSA_ENCRYPTION) {
        const plaintext = Buffer.from(`plaintext ${alg}`);
        // The JS SDK encrypts RSA1_5 and RSA-OAEP itself from the key it fetched, and
        // sends RSA-OAEP-256 to the vault: both paths end in the vault's decrypt.
        const encrypted = await client.encrypt({ algorithm: alg, plaintext });
        assert.deepEqual(Buffer.from((await client.decrypt({ algorithm: alg, ciphertext: encrypted.result })).result), plaintext);
        const padding = alg === "RSA1_5" ? constants.RSA_PKCS1_PADDING : constants.RSA_PKCS1_OAEP_PADDING;
        const byNode = publicEncrypt({ key: publicKey(key.key), padding, oaepHash: NODE_OAEP[alg] }, plaintext);
        assert.deepEqual(Buffer.from((await client.decrypt(alg, byNode)).result), plaintext);
        const secret = randomBytes(32);
        const wrapped = await client.wrapKey(alg, secret);
        assert.deepEqual(Buffer.from((await client.unwrapKey(alg, wrapped.result)).result), secret);
      }
    });
  }
}

for (const curve of ["P-256", "P-384", "P-521"]) {
  for (const hsm of [true, false]) {
    const kty = hsm ? "EC-HSM" : "EC";
    test(`${kty} ${curve}: signatures verify against the JWK with node:crypto`, async () => {
      const key = await keys.createEcKey(unique(`js-ec-${curve}`), { curve, hsm });
      assert.equal(key.keyType, kty);
      assert.equal(key.key.crv, curve);
      const alg = CURVE_ALG[curve];
      const message = Buffer.from("message");
      const client = crypto(key.id);
      const signed = await client.sign(alg, digest(alg, message));
      assert.ok(verifiesLocally(key.key, alg, message, signed.result));
      assert.equal((await client.verify(alg, digest(alg, message), signed.result)).result, true);
      const zeros = new Uint8Array(signed.result.length);
      assert.equal((await client.verify(alg, digest(alg, message), zeros)).result, false);
      const data = await client.signData(alg, message);
      assert.ok(verifiesLocally(key.key, alg, message, data.result));
      assert.equal((await client.verifyData(alg, message, data.result)).result, true);
    });
  }
}

for (const size of [128, 192, 256]) {
  test(`oct-HSM ${size}: AES GCM, CBC, CBCPAD and KW run in the vault`, async () => {
    const key = await keys.createOctKey(unique(`js-oct-${size}`), { keySize: size, hsm: true });
    assert.equal(key.keyType, "oct-HSM");
    const client = crypto(key.id);
    const plaintext = Buffer.from("sixteen byte msg".repeat(3));
    const aad = Buffer.from("context");
    const gcm = await client.encrypt({ algorithm: `A${size}GCM`, plaintext, additionalAuthenticatedData: aad });
    assert.equal(gcm.iv.length, 12);
    assert.equal(gcm.authenticationTag.length, 16);
    const opened = await client.decrypt({
      algorithm: `A${size}GCM`,
      ciphertext: gcm.result,
      iv: gcm.iv,
      authenticationTag: gcm.authenticationTag,
      additionalAuthenticatedData: aad,
    });
    assert.deepEqual(Buffer.from(opened.result), plaintext);
    // The vault picks every AES-GCM IV: one the caller chose is refused.
    await rejectsWithStatus(client.encrypt({ algorithm: `A${size}GCM`, plaintext, iv: randomBytes(12) }), 400);
    for (const mode of ["CBC", "CBCPAD"]) {
      const data = mode === "CBC" ? plaintext : Buffer.from("not a block multiple");
      // Without an IV the vault picks one and returns it. (The JS SDK means to make a CBC
      // IV itself, but its check `algorithm in [...]` tests array indices, so it never does.)
      const picked = await client.encrypt({ algorithm: `A${size}${mode}`, plaintext: data });
      assert.equal(picked.iv.length, 16);
      const back = await client.decrypt({ algorithm: `A${size}${mode}`, ciphertext: picked.result, iv: picked.iv });
      assert.deepEqual(Buffer.from(back.result), data);
      // A chosen IV is the caller's when it may decrypt with the key (dev:admin may).
      const iv = randomBytes(16);
      const chosen = await client.encrypt({ algorithm: `A${size}${mode}`, plaintext: data, iv });
      assert.deepEqual(Buffer.from(chosen.iv), iv);
      const again = await client.decrypt({ algorithm: `A${size}${mode}`, ciphertext: chosen.result, iv });
      assert.deepEqual(Buffer.from(again.result), data);
    }
    const secret = randomBytes(32);
    const wrapped = await client.wrapKey(`A${size}KW`, secret);
    assert.equal(wrapped.result.length, 40);
    assert.deepEqual(Buffer.from((await client.unwrapKey(`A${size}KW`, wrapped.result)).result), secret);
  });
}

test("versions, get latest and by version, update properties, a disabled version refuses to sign", async () => {
  const name = unique("js-versioned");
  const first = await keys.createEcKey(name, { curve: "P-256" });
  const second = await keys.createEcKey(name, { curve: "P-256" });
  assert.notEqual(first.properties.version, second.properties.version);
  assert.equal((await keys.getKey(name)).id, second.id);
  assert.equal((await keys.getKey(name, { version: first.properties.version })).id, first.id);
  const versions = new Set();
  for await (const properties of keys.listPropertiesOfKeyVersions(name)) versions.add(properties.version);
  assert.deepEqual(versions, new Set([first.properties.version, second.properties.version]));
  const updated = await keys.updateKeyProperties(name, first.properties.version, {
    enabled: false,
    tags: { team: "payments" },
  });
  assert.equal(updated.properties.enabled, false);
  assert.deepEqual(updated.properties.tags, { team: "payments" });
  // From the id alone the SDK fetches the key, sees it disabled... and still asks the
  // vault, which refuses with 403.
  const refused = await rejectsWithStatus(crypto(first.id).sign("ES256", Buffer.alloc(32)), 403);
  assert.equal(refused.code, "Forbidden");
  const names = new Set();
  for await (const properties of keys.listPropertiesOfKeys()) names.add(properties.name);
  assert.ok(names.has(name));
  // The JS SDK sends Dates as unix seconds and keyOps as key_ops; a Date with milliseconds
  // comes back whole seconds.
  const expiresOn = new Date(Date.now() + 86_400_123);
  const narrowed = await keys.updateKeyProperties(name, second.properties.version, {
    expiresOn,
    notBefore: new Date(Date.now() - 60_000),
    keyOps: ["sign", "verify"],
  });
  assert.equal(narrowed.properties.expiresOn.getTime(), Math.floor(expiresOn.getTime() / 1000) * 1000);
  assert.deepEqual(narrowed.keyOperations, ["sign", "verify"]);
  const viaKeyClient = keys.getCryptographyClient(name, { keyVersion: second.properties.version });
  const signed = await viaKeyClient.sign("ES256", digest("ES256", Buffer.from("x")));
  assert.ok(verifiesLocally(second.key, "ES256", Buffer.from("x"), signed.result));
});

test("listing follows nextLink pages; byPage sends maxPageSize as maxresults", async () => {
  const prefix = unique("js-paged");
  for (let index = 0; index < 30; index++) await keys.createEcKey(`${prefix}-${index}`, { curve: "P-256" });
  const all = [];
  for await (const properties of keys.listPropertiesOfKeys()) all.push(properties.name);
  assert.equal(all.filter((n) => n.startsWith(prefix)).length, 30);
  assert.equal(all.length, new Set(all).size);
  // Unlike Python's by_page(), JS's byPage({ maxPageSize }) sends maxresults on the first
  // request; the vault keeps that size in its nextLink, which the SDK follows as it is.
  // (This SDK version maps each page to a new array, so pages carry no continuationToken.)
  const paged = [];
  for await (const page of keys.listPropertiesOfKeys().byPage({ maxPageSize: 7 })) {
    assert.ok(page.length <= 7);
    paged.push(...page.map((p) => p.name));
  }
  assert.ok(paged.length >= 30);
  assert.equal(paged.length, new Set(paged).size);
  // As in Azure, a page is at most 25 items: a larger maxresults is refused.
  await rejectsWithStatus(keys.listPropertiesOfKeys().byPage({ maxPageSize: 26 }).next(), 400);
});

test("soft delete, recover and purge through the SDK pollers", async () => {
  const name = unique("js-deletable");
  const key = await keys.createRsaKey(name, { keySize: 2048 });
  const deleting = await keys.beginDeleteKey(name, fast);
  const deleted = await deleting.pollUntilDone();
  assert.ok(deleted.properties.recoveryId.endsWith(`/deletedkeys/${name}`));
  assert.ok(deleted.properties.scheduledPurgeDate > deleted.properties.deletedOn);
  await rejectsWithStatus(keys.getKey(name), 404);
  const deletedNames = new Set();
  for await (const item of keys.listDeletedKeys()) deletedNames.add(item.name);
  assert.ok(deletedNames.has(name));
  assert.equal((await keys.getDeletedKey(name)).name, name);
  await rejectsWithStatus(keys.createRsaKey(name, { keySize: 2048 }), 409);
  const recovering = await keys.beginRecoverDeletedKey(name, fast);
  const recovered = await recovering.pollUntilDone();
  assert.equal(recovered.id, key.id);
  await (await keys.beginDeleteKey(name, fast)).pollUntilDone();
  await keys.purgeDeletedKey(name);
  await rejectsWithStatus(keys.getDeletedKey(name), 404);
});

test("backup, purge, restore: the restored key signs as the same key", async () => {
  const name = unique("js-backed-up");
  const key = await keys.createEcKey(name, { curve: "P-384" });
  const backup = await keys.backupKey(name);
  assert.ok(backup instanceof Uint8Array && backup.length > 0);
  await (await keys.beginDeleteKey(name, fast)).pollUntilDone();
  await keys.purgeDeletedKey(name);
  const restored = await keys.restoreKeyBackup(backup);
  assert.equal(restored.id, key.id);
  assert.deepEqual(Buffer.from(restored.key.x), Buffer.from(key.key.x));
  const message = Buffer.from("after restore");
  const signed = await crypto(restored.id).sign("ES384", digest("ES384", message));
  assert.ok(verifiesLocally(key.key, "ES384", message, signed.result));
  await rejectsWithStatus(keys.restoreKeyBackup(backup), 409);
});

test("an RSA key with the public exponent given as 65537, and key_ops chosen at creation", async () => {
  const key = await keys.createRsaKey(unique("js-rsa-e"), { publicExponent: 65537, keyOps: ["sign", "verify"] });
  assert.deepEqual([...key.key.e], [1, 0, 1]);
  assert.deepEqual(key.keyOperations, ["sign", "verify"]);
  // JS differs from Python: its CryptographyClient checks key_ops (and nbf/exp, not enabled)
  // from the key it fetched and refuses before any request; Python's asks the vault (403).
  await assert.rejects(crypto(key.id).decrypt("RSA-OAEP", Buffer.alloc(256)), /Operation decrypt is not supported/);
});

test("rotate and the rotation policy", async () => {
  const name = unique("js-rotating");
  const key = await keys.createRsaKey(name, { keySize: 2048 });
  const policy = await keys.updateKeyRotationPolicy(name, {
    lifetimeActions: [{ action: "Rotate", timeAfterCreate: "P30D" }],
    expiresIn: "P90D",
  });
  assert.equal(policy.expiresIn, "P90D");
  const fetched = await keys.getKeyRotationPolicy(name);
  assert.equal(fetched.lifetimeActions[0].timeAfterCreate, "P30D");
  assert.equal(fetched.lifetimeActions[0].action, "Rotate");
  const rotated = await keys.rotateKey(name);
  assert.notEqual(rotated.properties.version, key.properties.version);
  assert.ok(rotated.properties.expiresOn instanceof Date);
  assert.notDeepEqual(Buffer.from(rotated.key.n), Buffer.from(key.key.n));
});

test("random bytes come from the vault's HSM", async () => {
  const first = await keys.getRandomBytes(32);
  assert.equal(first.length, 32);
  assert.notDeepEqual(Buffer.from(first), Buffer.from(await keys.getRandomBytes(32)));
});
