"""volumeAttributes are parsed strictly: hostile names and paths are refused before any I/O."""

import json

import pytest

from strongroom.csi.volume import (
    POD_NAMESPACE_KEY,
    InvalidVolume,
    check_path,
    parse_volume,
    pod_token,
)

HOSTILE_PATHS = [
    "..",
    "../etc/passwd",
    "a/../../b",
    "/etc/shadow",
    "a/./b",
    "./a",
    "a//b",
    "a/",
    "",
    "a\x00b",
    "..data",
    "..2026_01_01",
    "..data/x",
    "x" * 256,
    "a/" + "y" * 256,
    "/".join(["d"] * 600),
]


def volume(objects: object, **extra: str) -> dict[str, str]:
    return {
        "vaultUrl": "https://v-vault.ns.svc",
        "objects": json.dumps(objects),
        POD_NAMESPACE_KEY: "ns",
    } | extra


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidVolume):
        check_path(path)
    if path:  # an empty path means "the object's name"
        with pytest.raises(InvalidVolume):
            parse_volume(volume([{"kind": "secret", "name": "s", "path": path}]))


@pytest.mark.parametrize("name", ["..", "a/b", "a_b", "", "x" * 128, "a\x00", "../x"])
def test_hostile_object_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidVolume, match="name"):
        parse_volume(volume([{"kind": "secret", "name": name}]))


def test_a_good_volume_parses_with_defaults() -> None:
    parsed = parse_volume(
        volume(
            [
                {"kind": "secret", "name": "db-password", "path": "db/password", "mode": "0440"},
                {"kind": "key", "name": "signing", "format": "jwk"},
                {"name": "plain"},
            ]
        )
    )
    assert parsed.vault_url == "https://v-vault.ns.svc"
    first, second, third = parsed.objects
    assert (first.path, first.mode, first.format) == ("db/password", 0o440, "value")
    assert (second.path, second.format) == ("signing", "jwk")
    assert (third.kind, third.mode) == ("secret", 0o444)


def test_yaml_objects_and_a_vault_in_the_pods_namespace() -> None:
    parsed = parse_volume(
        {
            "vault": "payments",
            "csi.storage.k8s.io/pod.namespace": "team-a",
            "objects": "- kind: key\n  name: signing\n",
        }
    )
    assert parsed.vault_url == "https://payments-vault.team-a.svc"


@pytest.mark.parametrize(
    "objects,fragment",
    [
        ([], "non-empty"),
        ("not a list", "non-empty list"),
        ([{"kind": "certs", "name": "c"}], "kind"),
        ([{"name": "s", "format": "pem"}], "format"),
        ([{"name": "s", "mode": "0999"}], "octal"),
        ([{"name": "s", "mode": 0o7777}], "permission"),
        ([{"name": "s", "version": "latest"}], "version"),
        ([{"name": "s", "owner": "root"}], "unknown fields"),
        ([{"name": "a"}, {"name": "b", "path": "a"}], "same path"),
        ([{"name": "a"}, {"name": "b", "path": "a/b"}], "both a file and a directory"),
        ([{"name": f"s{i}"} for i in range(65)], "at most 64"),
    ],
)
def test_bad_object_lists_say_what_is_wrong(objects: object, fragment: str) -> None:
    with pytest.raises(InvalidVolume, match=fragment):
        parse_volume(volume(objects))


def test_a_vault_url_must_be_https() -> None:
    with pytest.raises(InvalidVolume, match="https"):
        parse_volume(volume([{"name": "s"}], vaultUrl="http://v-vault.ns.svc"))
    with pytest.raises(InvalidVolume, match="vaultUrl"):
        parse_volume({"objects": "[]", POD_NAMESPACE_KEY: "ns"})


# The pod's token goes only to a vault of the pod's own namespace: a pod in team-b that
# names team-a's vault, or any other host, hands its token to no one.
FOREIGN_VAULT_URLS = [
    ("https://payments-vault.team-a.svc", "namespace"),
    ("https://payments-vault.team-a.svc.cluster.local", "namespace"),
    ("https://payments-vault.team-b.svc.evil.example", "namespace"),
    ("https://evil.example", "namespace"),
    ("https://127.0.0.1", "namespace"),
    ("https://[::1]", "namespace"),
    ("https://localhost:8443", "port"),
    ("https://payments-vault.team-b.svc:8443", "port"),
    ("https://user:pw@payments-vault.team-b.svc", "user"),
    ("https://payments-vault.team-b.svc@evil.example", "user"),
    ("https://payments-vault.team-b.svc/secrets", "path"),
    ("https://payments-vault.team-b.svc.", "namespace"),
    ("https://payments.team-b.svc", "namespace"),
    ("https://-vault.team-b.svc", "namespace"),
    ("https://a.b-vault.team-b.svc", "namespace"),
    ("https://payments-vault.team-b.svc:0443", "port"),
    ("https://payments-vault.team-b.svc:x", "port"),
]


@pytest.mark.parametrize("url,why", FOREIGN_VAULT_URLS)
def test_a_vault_outside_the_pods_namespace_is_refused_and_says_why(url: str, why: str) -> None:
    attributes = volume([{"name": "s"}], vaultUrl=url) | {POD_NAMESPACE_KEY: "team-b"}
    with pytest.raises(InvalidVolume, match=why) as refused:
        parse_volume(attributes)
    assert "team-b" in str(refused.value) or why in ("port", "user", "path")


@pytest.mark.parametrize(
    "url,expected",
    [
        ("https://payments-vault.team-b.svc", "https://payments-vault.team-b.svc"),
        ("https://payments-vault.team-b.svc/", "https://payments-vault.team-b.svc"),
        ("https://payments-vault.team-b.svc:443", "https://payments-vault.team-b.svc"),
        ("https://Payments-Vault.team-b.svc", "https://payments-vault.team-b.svc"),
        (
            "https://payments-vault.team-b.svc.cluster.local",
            "https://payments-vault.team-b.svc.cluster.local",
        ),
    ],
)
def test_a_vault_of_the_pods_namespace_is_accepted(url: str, expected: str) -> None:
    attributes = volume([{"name": "s"}], vaultUrl=url) | {POD_NAMESPACE_KEY: "team-b"}
    assert parse_volume(attributes).vault_url == expected


def test_without_the_pods_namespace_no_vault_is_trusted() -> None:
    attributes = volume([{"name": "s"}])
    del attributes[POD_NAMESPACE_KEY]
    with pytest.raises(InvalidVolume, match="podInfoOnMount"):
        parse_volume(attributes)
    with pytest.raises(InvalidVolume, match="podInfoOnMount"):
        parse_volume({"vault": "payments", "objects": json.dumps([{"name": "s"}])})


@pytest.mark.parametrize("name", ["payments.team-a", "payments-vault.team-a.svc#", "a/b", "A"])
def test_a_vault_name_cannot_reach_another_namespace(name: str) -> None:
    with pytest.raises(InvalidVolume, match="vault"):
        parse_volume(
            {"vault": name, POD_NAMESPACE_KEY: "team-b", "objects": json.dumps([{"name": "s"}])}
        )


def test_the_pod_token_is_read_for_strongrooms_audience_only() -> None:
    tokens = {
        "strongroom.io/vault": {"token": "t1", "expirationTimestamp": "x"},
        "other": {"token": "t2"},
    }
    assert pod_token({"csi.storage.k8s.io/serviceAccount.tokens": json.dumps(tokens)}) == "t1"
    assert pod_token({"csi.storage.k8s.io/serviceAccount.tokens": json.dumps({"o": {}})}) is None
    assert pod_token({"csi.storage.k8s.io/serviceAccount.tokens": "{"}) is None
    assert pod_token({}) is None


def test_a_certificate_mounts_as_pem_at_tls_crt_and_tls_key_by_default() -> None:
    [pem] = parse_volume(volume([{"kind": "certificate", "name": "web"}])).objects
    assert (pem.format, pem.path, pem.key_path, pem.key_required) == (
        "pem",
        "tls.crt",
        "tls.key",
        False,
    )
    [named] = parse_volume(
        volume([{"kind": "certificate", "name": "web", "path": "a/c.pem", "keyPath": "a/k.pem"}])
    ).objects
    assert named.paths == ("a/c.pem", "a/k.pem") and named.key_required
    [pfx] = parse_volume(
        volume([{"kind": "certificate", "name": "web", "format": "pfx", "path": "web.pfx"}])
    ).objects
    assert pfx.paths == ("web.pfx",) and pfx.format == "pfx"


@pytest.mark.parametrize(
    ("objects", "fragment"),
    [
        ([{"kind": "certificate", "name": "w", "format": "der"}], "one of ('pem', 'pfx')"),
        ([{"kind": "certificate", "name": "w", "format": "pfx", "keyPath": "k"}], "format pem"),
        ([{"kind": "secret", "name": "w", "keyPath": "k"}], "kind certificate"),
        ([{"kind": "certificate", "name": "w", "keyPath": "../k"}], "'..'"),
        ([{"kind": "certificate", "name": "w", "keyPath": "tls.crt"}], "same path"),
        (
            [{"kind": "certificate", "name": "w"}, {"name": "s", "path": "tls.key"}],
            "same path",
        ),
        ([{"kind": "certificate", "name": "w", "keyPath": "tls.crt/k"}], "file and a directory"),
        ([{"kind": "cert", "name": "w"}], "'certificate'"),
    ],
)
def test_bad_certificate_objects_are_refused(objects: list[dict[str, str]], fragment: str) -> None:
    with pytest.raises(InvalidVolume) as refused:
        parse_volume(volume(objects))
    assert fragment in str(refused.value)
