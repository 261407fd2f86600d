// @azure/keyvault-secrets against strongroom dev: values, versions, listing, the soft-delete
// lifecycle through the SDK pollers, and backup/restore.
import { test } from "node:test";
import assert from "node:assert/strict";
import { secrets, fast, unique, rejectsWithStatus } from "./env.js";

test("set, get latest and by version, versions, list, update; a disabled version is refused", async () => {
  const name = unique("js-db-password");
  const expiresOn = new Date(Date.now() + 86_400_500);
  const first = await secrets.setSecret(name, "one", { contentType: "text/plain", expiresOn });
  assert.equal(first.properties.expiresOn.getTime(), Math.floor(expiresOn.getTime() / 1000) * 1000);
  const second = await secrets.setSecret(name, "two", { tags: { env: "test" } });
  assert.equal((await secrets.getSecret(name)).value, "two");
  assert.equal((await secrets.getSecret(name, { version: first.properties.version })).value, "one");
  assert.equal(first.properties.contentType, "text/plain");
  const versions = new Set();
  for await (const p of secrets.listPropertiesOfSecretVersions(name)) versions.add(p.version);
  assert.deepEqual(versions, new Set([first.properties.version, second.properties.version]));
  const listed = [];
  for await (const p of secrets.listPropertiesOfSecrets()) if (p.name === name) listed.push(p);
  assert.equal(listed.length, 1);
  assert.deepEqual(listed[0].tags, { env: "test" });
  assert.equal(listed[0].value, undefined);
  const updated = await secrets.updateSecretProperties(name, first.properties.version, { enabled: false });
  assert.equal(updated.enabled, false);
  const refused = await rejectsWithStatus(secrets.getSecret(name, { version: first.properties.version }), 403);
  assert.equal(refused.code, "Forbidden");
});

test("listing pages follow nextLink; byPage sends maxPageSize as maxresults", async () => {
  const prefix = unique("js-paged-secret");
  for (let index = 0; index < 30; index++) await secrets.setSecret(`${prefix}-${index}`, `value ${index}`);
  const all = [];
  for await (const p of secrets.listPropertiesOfSecrets()) all.push(p.name);
  assert.equal(all.filter((n) => n.startsWith(prefix)).length, 30);
  assert.equal(all.length, new Set(all).size);
  const paged = [];
  for await (const page of secrets.listPropertiesOfSecrets().byPage({ maxPageSize: 4 })) {
    assert.ok(page.length <= 4);
    paged.push(...page.map((p) => p.name));
  }
  assert.equal(paged.filter((n) => n.startsWith(prefix)).length, 30);
});

test("soft delete, recover and purge through the SDK pollers", async () => {
  const name = unique("js-temporary");
  await secrets.setSecret(name, "value");
  const deleted = await (await secrets.beginDeleteSecret(name, fast)).pollUntilDone();
  assert.ok(deleted.properties.recoveryId.endsWith(`/deletedsecrets/${name}`));
  assert.ok(deleted.properties.scheduledPurgeDate > deleted.properties.deletedOn);
  assert.equal(deleted.value, undefined);
  await rejectsWithStatus(secrets.getSecret(name), 404);
  const deletedNames = new Set();
  for await (const item of secrets.listDeletedSecrets()) deletedNames.add(item.name);
  assert.ok(deletedNames.has(name));
  assert.equal((await secrets.getDeletedSecret(name)).name, name);
  await rejectsWithStatus(secrets.setSecret(name, "again"), 409);
  await (await secrets.beginRecoverDeletedSecret(name, fast)).pollUntilDone();
  assert.equal((await secrets.getSecret(name)).value, "value");
  await (await secrets.beginDeleteSecret(name, fast)).pollUntilDone();
  await secrets.purgeDeletedSecret(name);
  await rejectsWithStatus(secrets.getDeletedSecret(name), 404);
});

test("backup, purge and restore bring the value back", async () => {
  const name = unique("js-kept");
  await secrets.setSecret(name, "precious");
  const backup = await secrets.backupSecret(name);
  assert.ok(backup instanceof Uint8Array && backup.length > 0);
  await (await secrets.beginDeleteSecret(name, fast)).pollUntilDone();
  await secrets.purgeDeletedSecret(name);
  const restored = await secrets.restoreSecretBackup(backup);
  assert.equal(restored.name, name);
  assert.equal((await secrets.getSecret(name)).value, "precious");
  await rejectsWithStatus(secrets.restoreSecretBackup(backup), 409);
});

test("values up to 25 KiB are kept; a larger one is refused with 400", async () => {
  const name = unique("js-large");
  const value = "x".repeat(25 * 1024);
  await secrets.setSecret(name, value);
  assert.equal((await secrets.getSecret(name)).value, value);
  await rejectsWithStatus(secrets.setSecret(name, value + "x"), 400);
});
