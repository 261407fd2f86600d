"""The one entry point: `strongroom <role>`."""

import argparse
import os
import socket
import sys
from pathlib import Path

from . import __version__, logs, metrics

DEV_STATE = Path.home() / ".cache" / "strongroom" / "dev"


def _hsm(args: argparse.Namespace) -> None:
    from .hsm.pins import read_pool_secret
    from .hsm.sidecar import run

    run(
        args.module,
        args.state_dir,
        args.socket,
        read_pool_secret(args.pool_secret_file),
        args.vault,
        args.await_activation,
    )


def _vault_server(args: argparse.Namespace) -> None:
    from .aio import run
    from .vault.auth import Authenticator, DevIssuer, TokenReviewAuthenticator
    from .vault.config import ServerConfig
    from .vault.server import Listen, serve

    config = ServerConfig.load(args.config)
    authenticator: Authenticator
    if args.auth == "dev":
        if args.dev_issuer_key is None:
            sys.exit("--auth dev needs --dev-issuer-key")
        authenticator = DevIssuer.load_or_create(args.dev_issuer_key).authenticator(
            config.audiences, config.namespace
        )
    else:
        if args.client_ca is None:
            sys.exit("--client-ca is required: the operator's client CA (PEM)")
        authenticator = TokenReviewAuthenticator(
            args.kube_api, args.kube_ca, args.kube_token, config.audiences, config.namespace
        )
    host, _, port = args.listen.rpartition(":")
    listen = Listen(
        host or "0.0.0.0",  # noqa: S104
        int(port),
        args.tls_cert,
        args.tls_key,
        args.client_ca,
        args.metrics_port,
        args.metrics_address,
    )
    run(
        serve(
            config,
            listen,
            args.hsm_socket,
            args.data_dir,
            authenticator,
            admin_client_name=args.admin_client_name,
            backup_dir=args.backup_dir,
        )
    )


def _operator(args: argparse.Namespace) -> None:
    from .operator.main import run

    run(args)


def _dev(args: argparse.Namespace) -> None:
    from .dev import StateDirRefused, run

    try:
        run(
            args.state_dir,
            args.port,
            args.keep_state,
            args.namespace,
            args.await_activation,
            args.backup_dir,
            args.metrics_port,
        )
    except StateDirRefused as exc:
        sys.exit(f"strongroom dev: {exc}")


def _csi_node(args: argparse.Namespace) -> None:
    import asyncio

    from .csi.server import JwksOptions, serve

    asyncio.run(
        serve(
            args.endpoint,
            args.node_id,
            args.vault_ca,
            args.jwks_file,
            not args.no_tmpfs,
            args.share_seconds,
            (args.registration_socket, args.kubelet_endpoint) if args.registration_socket else None,
            staging_dir=args.staging_dir,
            vault_addresses=dict(args.vault_address),
            jwks=JwksOptions(
                args.jwks_refresh_request,
                args.jwks_refresh_seconds,
                args.jwks_min_refresh_seconds,
            ),
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_address,
        )
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 1 <= value <= 86400:
        raise argparse.ArgumentTypeError("expected 1-86400 seconds")
    return value


def _vault_address(text: str) -> tuple[str, str]:
    host, sep, url = text.partition("=")
    if not sep or not host or not url.startswith("https://"):
        raise argparse.ArgumentTypeError("expected HOST=https://ADDRESS[:PORT]")
    return host.lower(), url


def _restore_backup(args: argparse.Namespace) -> None:
    import json

    from .poolbackup import BackupError, check_backup, lay_down

    try:
        if args.check_only:
            checked = check_backup(args.backup)
            print(json.dumps(checked.manifest | {"sha256": checked.sha256}, indent=2))
            return
        print(lay_down(args.backup, args.state_dir, args.records_dir), flush=True)
    except BackupError as exc:
        sys.exit(f"strongroom restore-backup: {exc}")
    except OSError as exc:
        sys.exit(
            f"strongroom restore-backup: {type(exc).__name__}: {exc.strerror} ({exc.filename})"
        )


def _dev_token(args: argparse.Namespace) -> None:
    from .vault.auth import DevIssuer

    issuer = DevIssuer.load_or_create(args.state_dir / "issuer.key")
    print(issuer.issue(args.subject, args.audience, args.ttl))


def _security_domain(args: argparse.Namespace) -> None:
    from .securitydomain.command import run

    run(args)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="strongroom", description=__doc__)
    top.add_argument("--version", action="version", version=f"strongroom {__version__}")
    top.add_argument("--log-level", default="INFO")
    roles = top.add_subparsers(dest="role", required=True)

    hsm = roles.add_parser(
        "hsm", help="the HSM sidecar: owns the token store, serves key operations on a unix socket"
    )
    hsm.add_argument(
        "--module",
        default="/usr/lib/softhsm/libsofthsm2.so",
        help="PKCS#11 module to load (default: SoftHSM2)",
    )
    hsm.add_argument("--state-dir", type=Path, required=True, help="token store directory")
    hsm.add_argument("--socket", type=Path, required=True, help="unix socket to serve on")
    hsm.add_argument(
        "--pool-secret-file",
        type=Path,
        required=True,
        help="file holding the pool secret the token PINs derive from",
    )
    hsm.add_argument(
        "--vault",
        action="append",
        default=[],
        help="create this vault's token at start (repeatable)",
    )
    hsm.add_argument(
        "--await-activation",
        action="store_true",
        help="a new pool starts not activated and serves no key until its security domain is "
        "downloaded (or, to restore a pool, uploaded); without it a new pool is activated at "
        "once, with a security domain that is never exported",
    )
    hsm.set_defaults(run=_hsm)

    server = roles.add_parser(
        "vault-server", help="the data plane: Azure-Key-Vault-compatible HTTPS API"
    )
    server.add_argument("--config", type=Path, required=True, help="vaults to serve (JSON)")
    server.add_argument(
        "--listen",
        default="0.0.0.0:8443",  # noqa: S104 - the pod's address
        help="address:port (default %(default)s)",
    )
    server.add_argument("--tls-cert", type=Path, required=True)
    server.add_argument("--tls-key", type=Path, required=True)
    server.add_argument("--hsm-socket", type=Path, required=True, help="the HSM sidecar's socket")
    server.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="directory of the record storage (records.db), on the pool's volume",
    )
    server.add_argument(
        "--auth",
        choices=("tokenreview", "dev"),
        default="tokenreview",
        help="how bearer tokens are checked (default %(default)s)",
    )
    server.add_argument("--dev-issuer-key", type=Path, help="with --auth dev: the issuer key")
    sa = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    server.add_argument("--kube-api", default="https://kubernetes.default.svc")
    server.add_argument("--kube-ca", type=Path, default=sa / "ca.crt")
    server.add_argument("--kube-token", type=Path, default=sa / "token")
    server.add_argument(
        "--client-ca",
        type=Path,
        help="PEM of the operator's client CA: TLS client certificates are verified against "
        "it only (required unless --auth dev)",
    )
    from .tls import OPERATOR_CLIENT_NAME

    server.add_argument(
        "--admin-client-name",
        default=OPERATOR_CLIENT_NAME,
        help="subject CN of the client certificate that administers the pool: the management "
        "API under /_strongroom/v1/ and every permission in every vault (default %(default)s)",
    )
    server.add_argument(
        "--backup-dir",
        type=Path,
        help="the pool's backup volume: the management API's POST /backups writes backups "
        "of the token directory and record storage there (none without it)",
    )
    metrics.add_arguments(server, "the vault server (and its HSM sidecar)")
    server.set_defaults(run=_vault_server)

    operator = roles.add_parser(
        "operator", help="the control plane: reconciles HsmPools, Vaults, Keys and VaultSecrets"
    )
    from .operator.options import add_arguments

    add_arguments(operator)
    operator.set_defaults(run=_operator)

    dev = roles.add_parser(
        "dev",
        help="hsm + vault-server on localhost with a throwaway token store, a dev CA and one vault",
    )
    dev.add_argument("--state-dir", type=Path, default=DEV_STATE)
    dev.add_argument("--port", type=int, default=8443)
    dev.add_argument(
        "--keep-state",
        action="store_true",
        help="reuse the token store and keys of the last run instead of starting afresh",
    )
    dev.add_argument(
        "--namespace",
        help="serve as a pool of this namespace: tokens for the shared audience are "
        "accepted only from its ServiceAccounts (default: from anyone)",
    )
    dev.add_argument(
        "--await-activation",
        action="store_true",
        help="start the pool not activated: it serves no key until its security domain is "
        "downloaded with the official client (or uploaded, to restore a pool); dev.json's "
        "hsmUrl is its endpoint",
    )
    dev.add_argument(
        "--backup-dir",
        type=Path,
        help="where the management API's POST /_strongroom/v1/backups writes the pool's "
        "backups (none without it); `strongroom restore-backup` lays one down into a new "
        "state directory",
    )
    dev.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve the vault server's and the sidecar's metrics at "
        "http://127.0.0.1:PORT/metrics (default 0: none)",
    )
    dev.set_defaults(run=_dev)

    restore = roles.add_parser(
        "restore-backup",
        help="check a pool backup against its manifest and lay its token directory and "
        "records down into a new pool, before its processes start (its HsmPool's "
        "spec.recoverFrom runs this in the pool's pod)",
    )
    restore.add_argument("--backup", type=Path, required=True, help="the backup file (.tar)")
    restore.add_argument(
        "--state-dir", type=Path, required=True, help="the new pool's HSM state directory"
    )
    restore.add_argument(
        "--records-dir",
        type=Path,
        required=True,
        help="the new pool's record storage directory (the vault server's --data-dir)",
    )
    restore.add_argument(
        "--check-only",
        action="store_true",
        help="check the backup against its manifest and change nothing",
    )
    restore.set_defaults(run=_restore_backup)

    csi = roles.add_parser(
        "csi-node",
        help="the CSI node plugin of csi.strongroom.io: mounts "
        "vault objects into pods with the pod's own token",
    )
    csi.add_argument("--endpoint", default="unix:///csi/csi.sock", help="gRPC endpoint to serve")
    csi.add_argument("--node-id", default=os.environ.get("NODE_NAME", socket.gethostname()))
    csi.add_argument("--vault-ca", help="CA bundle that vault server certificates chain to")
    csi.add_argument(
        "--jwks-file",
        type=Path,
        help="the ServiceAccount issuer's JWKS: pods of one subject share fetches. "
        "Read again every --jwks-refresh-seconds, and when a token names an unknown key id",
    )
    csi.add_argument(
        "--jwks-refresh-request",
        type=Path,
        help="a file to touch to ask the JWKS fetcher beside the plugin for a fresh "
        "--jwks-file before each reading (the chart's jwks-refresh container watches it)",
    )
    csi.add_argument(
        "--jwks-refresh-seconds",
        type=_seconds,
        default=300.0,
        help="read the issuer's keys again this often (default %(default)s)",
    )
    csi.add_argument(
        "--jwks-min-refresh-seconds",
        type=_seconds,
        default=30.0,
        help="a token naming an unknown key id makes the plugin read the keys again, at most "
        "once in this many seconds (default %(default)s)",
    )
    csi.add_argument(
        "--no-tmpfs",
        action="store_true",
        help="write into the target directory without mounting a tmpfs on it",
    )
    csi.add_argument(
        "--share-seconds",
        type=float,
        default=30.0,
        help="how long pods of one subject share a fetched object (default %(default)s)",
    )
    csi.add_argument(
        "--registration-socket",
        type=Path,
        help="register with the kubelet: a socket in its plugins_registry directory",
    )
    csi.add_argument(
        "--kubelet-endpoint",
        default="/var/lib/kubelet/plugins/csi.strongroom.io/csi.sock",
        help="the CSI socket as the kubelet sees it (default %(default)s)",
    )
    csi.add_argument(
        "--staging-dir",
        type=Path,
        default=Path("/csi/volumes"),
        help="where the plugin mounts each volume's tmpfs for itself; pods get a read-only "
        "bind of it (default %(default)s)",
    )
    csi.add_argument(
        "--vault-address",
        action="append",
        default=[],
        type=_vault_address,
        metavar="HOST=URL",
        help="reach the vault https://HOST at URL instead, e.g. when the plugin runs outside "
        "the cluster (repeatable); pods still name only vaults of their own namespace",
    )
    metrics.add_arguments(csi, "the CSI node plugin")
    csi.set_defaults(run=_csi_node)

    from .securitydomain.command import add_arguments as security_domain_arguments

    domain = roles.add_parser(
        "security-domain",
        help="the holders' offline side of a pool's security domain: certificates as JWKs, "
        "and the upload blob from a quorum of private keys",
    )
    security_domain_arguments(domain)
    domain.set_defaults(run=_security_domain)

    token = roles.add_parser("dev-token", help="issue a bearer token from a dev state directory")
    token.add_argument("--state-dir", type=Path, default=DEV_STATE)
    token.add_argument("--subject", required=True)
    token.add_argument("--audience", default="strongroom.io/vault")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default %(default)s)")
    token.set_defaults(run=_dev_token)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        args.run(args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
