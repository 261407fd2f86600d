"""The vocabulary the vault server and the operator share: permissions, key operations,
durations, and the bodies of the pool's management API.

A leaf of the package: it imports the standard library and pydantic only, so that
`vault`, `reconcile` and `models` can all import it and never each other.
"""
