"""A certificate's policy, as Key Vault's wire shape has it: checked, with its defaults.

A policy names the key (type, size or curve, exportable, reuse on renewal), the secret's
content type, the X.509 fields (subject, alternative names, key usages, validity), the
issuer (`Self`, `Unknown`, or an issuer stored in the vault) and the lifetime actions.
What a caller leaves out takes Key Vault's defaults: RSA 2048, exportable, PKCS#12,
12 months, AutoRenew at 80% of the lifetime. Every field is checked here and the stored
policy holds only the known ones, so nothing a caller sends is kept unread.
"""

import ipaddress
import re
from typing import Any

from cryptography import x509

from .errors import BadParameter
from .objects import MAX_UNIX_TIME

PKCS12 = "application/x-pkcs12"
PEM = "application/x-pem-file"
CONTENT_TYPES = (PKCS12, PEM)
KEY_TYPES = ("RSA", "RSA-HSM", "EC", "EC-HSM")
RSA_SIZES = (2048, 3072, 4096)
CURVES = ("P-256", "P-384", "P-521")
CURVE_SIZES = {256: "P-256", 384: "P-384", 521: "P-521"}
KEY_USAGES = (
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
)
SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
ACTIONS = ("AutoRenew", "EmailContacts")
SELF = "Self"
UNKNOWN = "Unknown"
MAX_SANS = 100  # alternative names of each kind
MAX_EKUS = 20
SUBJECT_MAX = 1024
SAN_MAX = 255
MAX_MONTHS = 1200
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]{0,9})){1,30}")


def _object(raw: object, what: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadParameter(f"'{what}' must be an object")
    return raw


def _strings(raw: object, what: str, most: int, longest: int = SAN_MAX) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        raise BadParameter(f"'{what}' must be a list of non-empty strings")
    if len(raw) > most:
        raise BadParameter(f"'{what}' holds at most {most} entries")
    if any(len(v) > longest for v in raw):
        raise BadParameter(f"each of '{what}' is at most {longest} characters")
    return list(dict.fromkeys(raw))


def _int(raw: object, what: str) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise BadParameter(f"'{what}' must be an integer")
    return raw


def check_times(attributes: dict[str, Any], what: str) -> None:
    """A caller's nbf and exp, when given, are unix times; a certificate's own are its
    X.509 validity, so they are read no further."""
    for field in ("nbf", "exp"):
        value = attributes.get(field)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_UNIX_TIME
        ):
            raise BadParameter(f"'{what}.{field}' must be a unix time in seconds")


def parse_subject(subject: str) -> x509.Name:
    """An X.500 name from Key Vault's form ("CN=name, O=org"); 400 when it is none."""
    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError:
        raise BadParameter(
            f"'x509_props.subject' is not a distinguished name such as CN=example.com "
            f"(got {subject[:80]!r})"
        ) from None
    if not list(name):
        raise BadParameter("'x509_props.subject' names no attribute")
    return name


def _key_props(raw: object, previous: dict[str, Any]) -> dict[str, Any]:
    given = _object(raw, "key_props")
    props = previous | {k: v for k, v in given.items() if v is not None}
    kty = props.get("kty", "RSA")
    if kty not in KEY_TYPES:
        raise BadParameter(f"'key_props.kty' must be one of {', '.join(KEY_TYPES)} (got {kty!r})")
    exportable = props.get("exportable", True)
    reuse = props.get("reuse_key", False)
    for name, value in (("exportable", exportable), ("reuse_key", reuse)):
        if not isinstance(value, bool):
            raise BadParameter(f"'key_props.{name}' must be true or false")
    if exportable and kty.endswith("-HSM"):
        raise BadParameter(
            f"a {kty} key is made and kept in the HSM: it cannot be exportable; use "
            f"{kty.removesuffix('-HSM')} for an exportable key, or set exportable to false"
        )
    out: dict[str, Any] = {"exportable": exportable, "kty": kty, "reuse_key": reuse}
    size = _int(props.get("key_size"), "key_props.key_size")
    if kty.startswith("RSA"):
        if props.get("crv") is not None and "crv" in given:
            raise BadParameter("an RSA key takes 'key_size', not 'crv'")
        size = 2048 if size is None else size
        if size not in RSA_SIZES:
            raise BadParameter(f"'key_props.key_size' of an RSA key is one of {RSA_SIZES}")
        out["key_size"] = size
    else:
        crv = props.get("crv")
        if crv is None:
            crv = CURVE_SIZES.get(size or 256)
        if crv not in CURVES:
            raise BadParameter(f"'key_props.crv' is one of {', '.join(CURVES)} (got {crv!r})")
        if size is not None and CURVE_SIZES.get(size) != crv:
            raise BadParameter(f"'key_props.key_size' {size} does not match curve {crv}")
        out["crv"] = crv
        out["key_size"] = {v: k for k, v in CURVE_SIZES.items()}[crv]
    return out


def _sans(raw: object) -> dict[str, list[str]]:
    given = _object(raw, "x509_props.sans")
    sans = {
        "dns_names": _strings(given.get("dns_names"), "sans.dns_names", MAX_SANS),
        "emails": _strings(given.get("emails"), "sans.emails", MAX_SANS),
        "upns": _strings(given.get("upns"), "sans.upns", MAX_SANS),
        "ipAddresses": _strings(given.get("ipAddresses"), "sans.ipAddresses", MAX_SANS),
        "uris": _strings(given.get("uris"), "sans.uris", MAX_SANS),
    }
    for name in sans["dns_names"]:
        if not re.fullmatch(r"(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?", name):
            raise BadParameter(f"'sans.dns_names' holds {name[:80]!r}, which is no DNS name")
    for email in sans["emails"] + sans["upns"]:
        if "@" not in email or any(c.isspace() for c in email):
            raise BadParameter(f"{email[:80]!r} is not an e-mail address or UPN")
    for address in sans["ipAddresses"]:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise BadParameter(f"'sans.ipAddresses' holds {address[:80]!r}, no IP") from None
    for uri in sans["uris"]:
        if ":" not in uri or any(c.isspace() for c in uri):
            raise BadParameter(f"'sans.uris' holds {uri[:80]!r}, which is not a URI")
    return {k: v for k, v in sans.items() if v}


def _x509_props(raw: object, previous: dict[str, Any], kty: str) -> dict[str, Any]:
    given = _object(raw, "x509_props")
    props = previous | {k: v for k, v in given.items() if v is not None}
    subject = props.get("subject")
    if subject is not None:
        if not isinstance(subject, str) or len(subject) > SUBJECT_MAX:
            raise BadParameter(f"'x509_props.subject' is a string of at most {SUBJECT_MAX}")
        if subject:
            parse_subject(subject)
    sans = _sans(props.get("sans"))
    if not subject and not sans:
        raise BadParameter(
            "a certificate policy needs 'x509_props.subject' or at least one subject "
            "alternative name (x509_props.sans)"
        )
    ekus = _strings(props.get("ekus"), "x509_props.ekus", MAX_EKUS, 100)
    for oid in ekus:
        if not _OID.fullmatch(oid):
            raise BadParameter(f"'x509_props.ekus' holds {oid[:80]!r}, which is no OID")
    default_usage = (
        ["digitalSignature", "keyEncipherment"] if kty.startswith("RSA") else ["digitalSignature"]
    )
    usage = _strings(props.get("key_usage"), "x509_props.key_usage", len(KEY_USAGES), 32)
    bad = [u for u in usage if u not in KEY_USAGES]
    if bad:
        raise BadParameter(
            f"'x509_props.key_usage' holds {bad[0][:40]!r}; use {', '.join(KEY_USAGES)}"
        )
    months = _int(props.get("validity_months"), "x509_props.validity_months")
    months = 12 if months is None else months
    if not 1 <= months <= MAX_MONTHS:
        raise BadParameter(f"'x509_props.validity_months' is from 1 to {MAX_MONTHS}")
    out: dict[str, Any] = {
        "subject": subject or "",
        "ekus": ekus or ([SERVER_AUTH, CLIENT_AUTH] if "ekus" not in props else []),
        "key_usage": usage or ([] if "key_usage" in props else default_usage),
        "validity_months": months,
    }
    if sans:
        out["sans"] = sans
    return out


def _lifetime_actions(raw: object, months: int) -> list[dict[str, Any]]:
    if raw is None:
        return [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}]
    if not isinstance(raw, list) or len(raw) > 1:
        raise BadParameter("'lifetime_actions' is a list of at most one action")
    actions = []
    for action in raw:
        if not isinstance(action, dict):
            raise BadParameter("each lifetime action is an object")
        kind = _object(action.get("action"), "lifetime_actions.action").get("action_type")
        if kind not in ACTIONS:
            raise BadParameter(f"a lifetime action's action_type is one of {', '.join(ACTIONS)}")
        trigger = _object(action.get("trigger"), "lifetime_actions.trigger")
        percentage = _int(trigger.get("lifetime_percentage"), "trigger.lifetime_percentage")
        days = _int(trigger.get("days_before_expiry"), "trigger.days_before_expiry")
        if (percentage is None) == (days is None):
            raise BadParameter(
                "a lifetime action's trigger has exactly one of lifetime_percentage and "
                "days_before_expiry"
            )
        if percentage is not None and not 1 <= percentage <= 99:
            raise BadParameter("'trigger.lifetime_percentage' is from 1 to 99")
        if days is not None and not 1 <= days <= months * 27:
            raise BadParameter(
                f"'trigger.days_before_expiry' is from 1 to {months * 27} (27 days a month "
                "of the validity)"
            )
        out_trigger = (
            {"lifetime_percentage": percentage}
            if percentage is not None
            else {"days_before_expiry": days}
        )
        actions.append({"trigger": out_trigger, "action": {"action_type": kind}})
    return actions


def _issuer(raw: object, previous: dict[str, Any]) -> dict[str, Any]:
    given = _object(raw, "issuer")
    props = previous | {k: v for k, v in given.items() if v is not None}
    name = props.get("name")
    if not isinstance(name, str) or not name:
        raise BadParameter("a certificate policy needs 'issuer.name': Self or Unknown")
    for known in (SELF, UNKNOWN):
        if name.lower() == known.lower():
            name = known
    out: dict[str, Any] = {"name": name}
    cty = props.get("cty")
    if cty is not None:
        if not isinstance(cty, str) or len(cty) > 64:
            raise BadParameter("'issuer.cty' is a string of at most 64 characters")
        out["cty"] = cty
    transparency = props.get("cert_transparency")
    if transparency is not None:
        if not isinstance(transparency, bool):
            raise BadParameter("'issuer.cert_transparency' must be true or false")
        out["cert_transparency"] = transparency
    return out


def check_policy(raw: object, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The policy to store: `raw` checked (over `previous` for an update: a section or
    field left out keeps its value), Key Vault's defaults where nothing is said."""
    if raw is None and previous is None:
        raise BadParameter("'policy' is required: the certificate's policy")
    given = _object(raw, "policy")
    before = previous or {}
    key_props = _key_props(given.get("key_props"), before.get("key_props", {}))
    secret_props = _object(given.get("secret_props"), "secret_props")
    given_type = secret_props.get("contentType")
    if given_type is not None and not isinstance(given_type, str):
        raise BadParameter("'secret_props.contentType' must be a string")
    content_type = given_type or before.get("secret_props", {}).get("contentType", PKCS12)
    if content_type not in CONTENT_TYPES:
        raise BadParameter(
            f"'secret_props.contentType' is one of {', '.join(CONTENT_TYPES)} "
            f"(got {str(content_type)[:64]!r})"
        )
    x509_props = _x509_props(
        given.get("x509_props"), before.get("x509_props", {}), key_props["kty"]
    )
    months = x509_props["validity_months"]
    if given.get("lifetime_actions") is None and previous is not None:
        actions = _lifetime_actions(before.get("lifetime_actions", []), months)
    else:
        actions = _lifetime_actions(given.get("lifetime_actions"), months)
    issuer = _issuer(given.get("issuer"), before.get("issuer", {}))
    attributes = _object(given.get("attributes"), "policy.attributes")
    check_times(attributes, "policy.attributes")
    enabled = attributes.get("enabled", before.get("attributes", {}).get("enabled", True))
    if not isinstance(enabled, bool):
        raise BadParameter("'policy.attributes.enabled' must be true or false")
    return {
        "key_props": key_props,
        "secret_props": {"contentType": content_type},
        "x509_props": x509_props,
        "lifetime_actions": actions,
        "issuer": issuer,
        "attributes": {"enabled": enabled},
    }


def policy_wire(
    base: str, name: str, policy: dict[str, Any], created: int, updated: int
) -> dict[str, Any]:
    """The policy as Key Vault answers with it."""
    out = {"id": f"{base}/certificates/{name}/policy"} | policy
    out["attributes"] = policy.get("attributes", {}) | {"created": created, "updated": updated}
    return out


def renewal_due(policy: dict[str, Any], nbf: int, exp: int, moment: int) -> str | None:
    """The lifetime action due at `moment` for a version valid from nbf to exp, or None."""
    for action in policy.get("lifetime_actions", []):
        trigger = action["trigger"]
        if "lifetime_percentage" in trigger:
            at = nbf + (exp - nbf) * trigger["lifetime_percentage"] // 100
        else:
            at = exp - trigger["days_before_expiry"] * 86400
        if moment >= at:
            return str(action["action"]["action_type"])
    return None
