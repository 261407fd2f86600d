"""The data plane's route table: one row per method and path, every handler there, and
the matching rules (literals before placeholders, action words never a version)."""

from strongroom.vault.app import CertificateRoutes, KeyRoutes, SecretRoutes
from strongroom.vault.routes import ACTIONS, ROUTES, shapes


def test_each_method_and_path_has_one_row() -> None:
    pairs = [(r.method, r.path) for r in ROUTES]
    assert len(pairs) == len(set(pairs))
    assert len(ROUTES) >= 34


def test_every_handler_exists() -> None:
    for route in ROUTES:
        group, _, method = route.handler.partition(".")
        if group == "rng":
            continue
        owner = {"keys": KeyRoutes, "secrets": SecretRoutes, "certificates": CertificateRoutes}[
            group
        ]
        assert callable(getattr(owner, method, None)), route


def test_every_row_names_its_permission() -> None:
    for route in ROUTES:
        assert route.kind in ("keys", "secrets", "certificates", "")
        assert route.permission or route.kind == ""
        assert route.operation[0].isupper()


def test_literals_win_over_placeholders() -> None:
    best = shapes(["keys", "k", "versions"])
    assert best[0].spec.path == "keys/{name}/versions"
    assert all(m.spec.path != "keys/{name}/{version}" for m in best)  # an action word
    assert shapes(["keys", "k", "0123456789abcdef0123456789abcdef"])[0].version is not None


def test_a_version_is_never_an_action_word() -> None:
    for kind, words in ACTIONS.items():
        for word in words:
            assert all(m.version != word for m in shapes([kind, "n", word]))
    assert "backup" in ACTIONS["secrets"] and "rotationpolicy" in ACTIONS["keys"]


def test_crypto_rows_take_a_version_or_the_latest() -> None:
    [signing] = [m for m in shapes(["keys", "k", "", "sign"]) if m.spec.method == "POST"]
    assert signing.spec.operation == "KeySign" and signing.version == ""
    assert shapes(["keys", "k", "v", "export"]) == []
