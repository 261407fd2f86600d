// What every test needs of `strongroom dev`: its URL, a credential that reads its token
// file, and client options. scripts/test-sdk-js passes these in the environment and trusts
// the dev CA through NODE_EXTRA_CA_CERTS; TLS verification stays on.
import { readFileSync } from "node:fs";
import { KeyClient, CryptographyClient } from "@azure/keyvault-keys";
import { SecretClient } from "@azure/keyvault-secrets";

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through scripts/test-sdk-js`);
  }
  return value;
}

export const vaultUrl = required("STRONGROOM_VAULT_URL");
export const tokenFile = required("STRONGROOM_TOKEN_FILE");
required("NODE_EXTRA_CA_CERTS");

/** A TokenCredential (@azure/core-auth) whose token is the dev token file's, read per call. */
export class FileTokenCredential {
  constructor(path) {
    this.path = path;
  }

  async getToken() {
    const token = readFileSync(this.path, "utf8").trim();
    const claims = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
    return { token, expiresOnTimestamp: claims.exp * 1000 };
  }
}

export const credential = new FileTokenCredential(tokenFile);

// localhost has no parent domain for the challenge's resource to be; in a cluster the
// default check passes and this option is not needed.
export const options = { disableChallengeResourceVerification: true };

export const keys = new KeyClient(vaultUrl, credential, options);
export const secrets = new SecretClient(vaultUrl, credential, options);
export const crypto = (key) => new CryptographyClient(key, credential, options);

// The SDK pollers wait 2 s between polls by default; strongroom deletes and recovers at once.
export const fast = { intervalInMs: 50 };

/** A name no other test file uses: files run in parallel against one vault. */
export const unique = (prefix) => `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/** Await a promise that must fail with this HTTP status (an Azure RestError). */
export async function rejectsWithStatus(promise, status) {
  try {
    await promise;
  } catch (error) {
    if (error.statusCode === status) return error;
    throw error;
  }
  throw new Error(`expected HTTP ${status}, the call succeeded`);
}
