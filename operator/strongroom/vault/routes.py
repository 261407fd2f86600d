"""Every operation of the data plane, in one declarative table.

A row names the method, the path (literal segments, `{name}` and `{version}`), the
operation (Key Vault's name for it, used in the audit line), the permission it needs
(`kind` keys or secrets, or "" for any permission in the vault), the handler and
whether it takes a body. `match` picks the row for a request: literal segments before
placeholders, names checked by the object naming rules, a `{version}` never one of the
words that follow a name (so `GET /keys/k/backup` is a 405, not a version "backup").
"""

from dataclasses import dataclass

CRYPTO = {
    "sign": "sign",
    "verify": "verify",
    "encrypt": "encrypt",
    "decrypt": "decrypt",
    "wrapkey": "wrapKey",
    "unwrapkey": "unwrapKey",
}


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    operation: str
    kind: str  # "keys", "secrets" or "" (any permission in the vault)
    permission: str
    handler: str  # "keys.<method>", "secrets.<method>" or "rng"
    has_body: bool = False

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))

    @property
    def specificity(self) -> tuple[bool, ...]:
        """Sorts rows with a literal segment before rows with a placeholder there."""
        return tuple(s.startswith("{") for s in self.segments)


def _objects(kind: str, title: str) -> list[RouteSpec]:
    """The rows every kind of object has: list, get, versions, delete, backup, restore,
    and the deleted-object collection."""
    deleted = f"deleted{kind}"
    return [
        RouteSpec("GET", kind, f"{title}List", kind, "list", f"{kind}.list"),
        RouteSpec(
            "POST", f"{kind}/restore", f"{title}Restore", kind, "restore", f"{kind}.restore", True
        ),  # noqa: E501
        RouteSpec("GET", f"{kind}/{{name}}", f"{title}Get", kind, "get", f"{kind}.get"),
        RouteSpec("DELETE", f"{kind}/{{name}}", f"{title}Delete", kind, "delete", f"{kind}.delete"),  # noqa: E501
        RouteSpec(
            "GET",
            f"{kind}/{{name}}/versions",
            f"{title}ListVersions",
            kind,
            "list",
            f"{kind}.versions",
        ),  # noqa: E501
        RouteSpec(
            "POST", f"{kind}/{{name}}/backup", f"{title}Backup", kind, "backup", f"{kind}.backup"
        ),  # noqa: E501
        RouteSpec("GET", f"{kind}/{{name}}/{{version}}", f"{title}Get", kind, "get", f"{kind}.get"),  # noqa: E501
        RouteSpec("GET", deleted, f"Deleted{title}List", kind, "list", f"{kind}.list_deleted"),
        RouteSpec(
            "GET", f"{deleted}/{{name}}", f"Deleted{title}Get", kind, "list", f"{kind}.get_deleted"
        ),  # noqa: E501
        RouteSpec("DELETE", f"{deleted}/{{name}}", f"{title}Purge", kind, "purge", f"{kind}.purge"),  # noqa: E501
        RouteSpec(
            "POST",
            f"{deleted}/{{name}}/recover",
            f"{title}Recover",
            kind,
            "recover",
            f"{kind}.recover",
        ),  # noqa: E501
    ]


ROUTES: tuple[RouteSpec, ...] = (
    *_objects("keys", "Key"),
    RouteSpec("POST", "keys/{name}/create", "KeyCreate", "keys", "create", "keys.create", True),
    RouteSpec("PUT", "keys/{name}", "KeyImport", "keys", "import", "keys.import_key", True),
    RouteSpec("POST", "keys/{name}/rotate", "KeyRotate", "keys", "rotate", "keys.rotate"),
    RouteSpec(
        "GET",
        "keys/{name}/rotationpolicy",
        "KeyGetRotationPolicy",
        "keys",
        "getrotationpolicy",
        "keys.get_policy",
    ),  # noqa: E501
    RouteSpec(
        "PUT",
        "keys/{name}/rotationpolicy",
        "KeySetRotationPolicy",
        "keys",
        "setrotationpolicy",
        "keys.set_policy",
        True,
    ),  # noqa: E501
    RouteSpec("PATCH", "keys/{name}/{version}", "KeyUpdate", "keys", "update", "keys.update", True),  # noqa: E501
    *(
        RouteSpec(
            "POST",
            f"keys/{{name}}/{{version}}/{word}",
            "Key" + op[0].upper() + op[1:],
            "keys",
            op,
            f"keys.{word}",
            True,
        )  # noqa: E501
        for word, op in CRYPTO.items()
    ),
    *_objects("secrets", "Secret"),
    RouteSpec("PUT", "secrets/{name}", "SecretSet", "secrets", "set", "secrets.set", True),
    RouteSpec(
        "PATCH",
        "secrets/{name}/{version}",
        "SecretUpdate",
        "secrets",
        "set",
        "secrets.update",
        True,
    ),  # noqa: E501
    *_objects("certificates", "Certificate"),
    *(
        RouteSpec(method, path, op, "certificates", permission, f"certificates.{handler}", body)
        for method, path, op, permission, handler, body in (
            ("POST", "certificates/{name}/create", "CertificateCreate", "create", "create", True),
            ("POST", "certificates/{name}/import", "CertificateImport", "import", "import_", True),
            (
                "PATCH",
                "certificates/{name}/{version}",
                "CertificateUpdate",
                "update",
                "update",
                True,
            ),
            (
                "GET",
                "certificates/{name}/policy",
                "CertificatePolicyGet",
                "get",
                "get_policy",
                False,
            ),
            (
                "PATCH",
                "certificates/{name}/policy",
                "CertificatePolicyUpdate",
                "update",
                "set_policy",
                True,
            ),
            (
                "GET",
                "certificates/{name}/pending",
                "CertificatePendingGet",
                "get",
                "get_pending",
                False,
            ),
            (
                "PATCH",
                "certificates/{name}/pending",
                "CertificatePendingUpdate",
                "update",
                "cancel_pending",
                True,
            ),
            (
                "DELETE",
                "certificates/{name}/pending",
                "CertificatePendingDelete",
                "delete",
                "delete_pending",
                False,
            ),
            (
                "POST",
                "certificates/{name}/pending/merge",
                "CertificateMerge",
                "create",
                "merge",
                True,
            ),
            (
                "GET",
                "certificates/contacts",
                "CertificateContactsGet",
                "managecontacts",
                "get_contacts",
                False,
            ),
            (
                "PUT",
                "certificates/contacts",
                "CertificateContactsSet",
                "managecontacts",
                "set_contacts",
                True,
            ),
            (
                "DELETE",
                "certificates/contacts",
                "CertificateContactsDelete",
                "managecontacts",
                "delete_contacts",
                False,
            ),
            (
                "GET",
                "certificates/issuers",
                "CertificateIssuerList",
                "listissuers",
                "list_issuers",
                False,
            ),
            (
                "GET",
                "certificates/issuers/{name}",
                "CertificateIssuerGet",
                "getissuers",
                "get_issuer",
                False,
            ),
            (
                "PUT",
                "certificates/issuers/{name}",
                "CertificateIssuerSet",
                "setissuers",
                "set_issuer",
                True,
            ),
            (
                "PATCH",
                "certificates/issuers/{name}",
                "CertificateIssuerUpdate",
                "setissuers",
                "update_issuer",
                True,
            ),
            (
                "DELETE",
                "certificates/issuers/{name}",
                "CertificateIssuerDelete",
                "deleteissuers",
                "delete_issuer",
                False,
            ),
        )
    ),  # noqa: E501
    RouteSpec("POST", "rng", "Rng", "", "", "rng", True),
)

# The words that follow an object's name: never taken for a version.
ACTIONS = {
    kind: frozenset(
        r.segments[2]
        for r in ROUTES
        if r.segments[0] == kind and len(r.segments) == 3 and not r.segments[2].startswith("{")
    )
    for kind in ("keys", "secrets", "certificates")
}
METHODS = tuple(sorted({r.method for r in ROUTES}))


@dataclass(frozen=True)
class Match:
    spec: RouteSpec
    name: str | None  # the raw `{name}` segment, not yet checked
    version: str | None  # the raw `{version}` segment ("" for the latest)


def _shape_index() -> dict[tuple[int, str], tuple[tuple[RouteSpec, tuple[str, ...]], ...]]:
    """The rows by path length and first segment (every row's first segment is literal),
    each with its segments, in the order `shapes` answers them: literal segments first."""
    index: dict[tuple[int, str], list[RouteSpec]] = {}
    for spec in ROUTES:
        index.setdefault((len(spec.segments), spec.segments[0]), []).append(spec)
    return {
        key: tuple((spec, spec.segments) for spec in sorted(rows, key=lambda r: r.specificity))
        for key, rows in index.items()
    }


_SHAPES = _shape_index()


def shapes(segments: list[str]) -> list[Match]:
    """Every row, of any method, whose path has the shape of these segments."""
    if not segments:
        return []
    found = []
    actions = ACTIONS.get(segments[0], frozenset())
    for spec, pattern in _SHAPES.get((len(segments), segments[0]), ()):
        name = version = None
        for want, got in zip(pattern, segments, strict=True):
            if want == "{name}":
                name = got
            elif want == "{version}":
                if got in actions:
                    break
                version = got
            elif want != got:
                break
        else:
            found.append(Match(spec, name, version))
    return found
