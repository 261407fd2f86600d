"""The security domain of a pool, in the wire and blob format of Azure Managed HSM.

A pool's security domain is a 32-byte root secret made once, when the pool is activated,
with the HSM's random number generator. The root secret is split into shares (Shamir over
GF(257), `shamir`), one for each certificate the activating caller names, each share
encrypted to its certificate (compact JWE, RSA-OAEP-256 with A256CBC-HS512, `jwe`); what the
domain protects is encrypted under keys derived from the root secret (SP 800-108 with
HMAC-SHA512, `kdf`). `document` reads and writes the blobs; `offline` is the holders' side:
combine a quorum of shares with their private keys and encrypt the domain again for the
transfer key of the pool that is to be restored.

This package imports `cryptography` and the standard library only: the HSM sidecar, the
vault server and the offline command all use it.
"""
