"""A TokenCredential for the Azure SDKs that reads a bearer token from a file.

In a pod the file is a projected ServiceAccount token, refreshed by the
kubelet; in dev mode it is the token `strongroom dev` wrote.
"""

import time
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken


class FileTokenCredential:
    def __init__(self, path: str | Path, lifetime: int = 300) -> None:
        self._path = Path(path)
        self._lifetime = lifetime

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._path.read_text().strip(), int(time.time()) + self._lifetime)

    def close(self) -> None:
        pass

    def __enter__(self) -> "FileTokenCredential":
        return self

    def __exit__(self, *args: object) -> None:
        pass
