"""The data plane: an Azure-Key-Vault-compatible HTTPS API over the HSM sidecar."""
