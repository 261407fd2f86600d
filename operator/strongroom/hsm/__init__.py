"""The PKCS#11 layer: token set-up, sessions, key templates and error mapping."""
