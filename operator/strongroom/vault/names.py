"""Object names as Key Vault accepts them: 1 to 127 letters, digits and dashes."""

import re

from .errors import BadParameter

_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_VERSION = re.compile(r"[0-9a-f]{32}")


def check_name(name: str, what: str = "object") -> str:
    if not _NAME.fullmatch(name):
        raise BadParameter(
            f"The {what} name is invalid: use 1-127 letters, digits and dashes "
            "(got {} characters)".format(len(name)),
            code="BadParameter",
        )
    return name


def check_version(version: str) -> str:
    if not _VERSION.fullmatch(version):
        raise BadParameter("The version is invalid: it is 32 lowercase hexadecimal characters")
    return version
