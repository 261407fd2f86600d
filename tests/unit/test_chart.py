"""The Helm chart: lints, renders least-privilege objects, rejects unknown values, one source.

Needs the pinned helm (`scripts/helm`, built by scripts/setup); without it these
tests fail, they do not skip.
"""

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from strongroom.csi.server import DRIVER_NAME
from strongroom.csi.volume import AUDIENCE
from strongroom.models.crd import RESOURCES
from strongroom.reconcile.ca import CA_SECRET

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "strongroom"
HELM = ROOT / "scripts" / "helm"
NAMESPACE = "strongroom-system"
KUBE_VERSION = "1.33.0"  # built from source, helm otherwise assumes its own default (1.20)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True)
    if result.returncode == 127:
        pytest.fail(f"helm is missing: run scripts/setup\n{result.stderr}", pytrace=False)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}", pytrace=False)
    return result


def template(*values: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    sets = [f"--set={value}" for value in values]
    return helm(
        "template",
        "strongroom",
        str(CHART),
        f"--namespace={NAMESPACE}",
        f"--kube-version={KUBE_VERSION}",
        *sets,
        check=check,
    )


def render(*values: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(template(*values).stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render()


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    containers = pod["containers"] + pod.get("initContainers", [])
    return next(c for c in containers if c["name"] == name)


def _volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in pod["volumes"] if v["name"] == name)


def _bound_rules(
    objects: list[dict[str, Any]], account: str
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (binding, roleRef) granting something to the ServiceAccount `account`."""
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount" and subject["name"] == account:
                yield binding, binding["roleRef"]


# --- lint, schema, values ---------------------------------------------------------------


def test_the_chart_lints_cleanly() -> None:
    result = helm("lint", "--strict", str(CHART), f"--kube-version={KUBE_VERSION}")
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    "value",
    [
        "bogus=1",
        "operator.bogus=1",
        "csiNode.jwks.bogus=1",
        "image.bogus=1",
        "tests.bogus=1",
        "operator.resources.requests.gpu=1",
        "image.pullPolicy=Sometimes",
        "logLevel=TRACE",
        "csiNode.jwks.source=vault",
        "csiNode.jwks.source=configMap",  # without a ConfigMap's name
        "csiNode.kubeletDir=relative/path",
        "csiNode.shareSeconds=-1",
        "operator.watchNamespaces[0]=Not_A_Namespace",
        "pools.bogus=1",
        "pools.allowedImages=registry.example/a:1",  # a string, not a list
        "pools.allowedImages[0]=has space",
        "pools.imagePullPolicy=Sometimes",
        "operator.replicas=0",
        "operator.replicas=two",
        "operator.leaderElection.bogus=1",
        "operator.leaderElection.leaseDurationSeconds=1",
        "operator.leaderElection.retryPeriodSeconds=0",
        "operator.leaderElection.renewDeadlineSeconds=6.5",  # whole seconds
        "operator.podDisruptionBudget=sometimes",
        "tests.mount.enabled=true",  # without a vault, secret and ServiceAccount
        "tests.mount.secret=a/b",
        "metrics.bogus=1",
        "metrics.ports.pool=80",
        "metrics.ports.bogus=9999",
        "metrics.serviceMonitor.enabled=maybe",
        "metrics.serviceMonitor.interval=often",
        "metrics.dashboard.bogus=1",
    ],
)
def test_the_schema_rejects_unknown_keys_and_bad_values(value: str) -> None:
    result = template(value, check=False)
    assert result.returncode != 0, f"--set {value} was accepted"
    assert "schema" in result.stderr or "values don't meet" in result.stderr, result.stderr


def _walk_schema(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk_schema(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk_schema(node["items"], f"{path}[]")


def test_every_object_of_the_schema_is_closed() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, node in _walk_schema(schema, "values"):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"


def _walk_values(values: dict[str, Any], schema: dict[str, Any], path: str) -> Iterator[str]:
    for key, value in values.items():
        assert key in schema.get("properties", {}), f"{path}.{key} is not in the schema"
        child = schema["properties"][key]
        yield f"{path}.{key}"
        if isinstance(value, dict) and "properties" in child:
            yield from _walk_values(value, child, f"{path}.{key}")


# Values that hold Kubernetes' own objects: their inner keys are data, not chart values.
FREE_FORM = {"resources", "nodeSelector", "tolerations", "affinity", "podAnnotations"}


def test_every_value_is_in_the_schema_and_commented() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert list(_walk_values(values, schema, "values"))
    lines = (CHART / "values.yaml").read_text().splitlines()
    parents: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        key = re.match(r"^( *)([A-Za-z][\w-]*):", line)
        if key is None:
            continue
        indent = len(key.group(1))
        while parents and parents[-1][0] >= indent:
            parents.pop()
        if not FREE_FORM & {name for _, name in parents}:
            above = lines[index - 1].strip() if index else ""
            assert above.startswith("#"), f"values.yaml:{index + 1}: {key.group(2)} has no comment"
        parents.append((indent, key.group(2)))


def test_the_default_values_render_the_documented_image(default: list[dict[str, Any]]) -> None:
    for workload in (
        find(default, "Deployment", "strongroom-operator"),
        find(default, "DaemonSet", "strongroom-csi-node"),
    ):
        for container in _pod(workload)["containers"] + _pod(workload).get("initContainers", []):
            assert container["image"] == "strongroom.io/strongroom:dev"
            assert container["imagePullPolicy"] == "IfNotPresent"


# --- the operator -----------------------------------------------------------------------


def test_the_operator_runs_two_replicas_unprivileged(default: list[dict[str, Any]]) -> None:
    deployment = find(default, "Deployment", "strongroom-operator")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    # Two replicas, one active at a time (the Lease); rolled one new standby at a time.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = _pod(deployment)
    assert pod["serviceAccountName"] == "strongroom-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(pod, "operator")
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["args"][:2] == ["--log-level=INFO", "operator"]
    assert "--image=strongroom.io/strongroom:dev" in container["args"]
    assert f"--namespace={NAMESPACE}" in container["args"]
    # Every replica answers its probes, active or standby: liveness while the election
    # runs, readiness for the holder and for a standby that can take over.
    assert container["ports"][0] == {"name": "health", "containerPort": 8080}
    assert "--health-address=0.0.0.0:8080" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    # The Lease names the pod that holds it.
    assert "--identity=$(POD_NAME)" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # No token for the pools: the operator calls them with its client certificate only.
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert not [a for a in container["args"] if a.startswith("--allowed-image")]


def _operator_args(objects: list[dict[str, Any]]) -> argparse.Namespace:
    """The operator container's arguments, parsed by the operator's own parser."""
    from strongroom.operator.options import add_arguments

    args = _container(_pod(find(objects, "Deployment", "strongroom-operator")), "operator")["args"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(args[args.index("operator") + 1 :])


def test_the_lease_timings_reach_the_operator_and_fit_together() -> None:
    from strongroom.operator.lease import Timings
    from strongroom.operator.options import timings

    args = _operator_args(render())
    assert args.lease_name == "strongroom-operator"
    assert args.owner_deployment == "strongroom-operator"  # the Lease goes on uninstall
    assert timings(args) == Timings(10, 7, 2)
    assert timings(args).worst_takeover_seconds < 30
    args = _operator_args(
        render(
            "operator.leaderElection.leaseDurationSeconds=20",
            "operator.leaderElection.renewDeadlineSeconds=12",
            "operator.leaderElection.retryPeriodSeconds=3",
        )
    )
    assert timings(args) == Timings(20, 12, 3)


@pytest.mark.parametrize(
    "values",
    [
        ("operator.leaderElection.renewDeadlineSeconds=10",),  # not shorter than the lease
        ("operator.leaderElection.retryPeriodSeconds=7",),  # not shorter than the deadline
        ("operator.leaderElection.leaseDurationSeconds=5",),
    ],
)
def test_lease_timings_that_do_not_fit_fail_the_install(values: tuple[str, ...]) -> None:
    result = template(*values, check=False)
    assert result.returncode != 0
    assert "retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds" in result.stderr


def test_the_replicas_spread_over_nodes_softly(default: list[dict[str, Any]]) -> None:
    deployment = find(default, "Deployment", "strongroom-operator")
    affinity = _pod(deployment)["affinity"]
    # Preferred, not required: a single-node cluster still runs both replicas.
    assert list(affinity) == ["podAntiAffinity"]
    assert list(affinity["podAntiAffinity"]) == ["preferredDuringSchedulingIgnoredDuringExecution"]
    [term] = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == deployment["spec"]["selector"]["matchLabels"]
    )
    # An affinity of the installer's own replaces it.
    own = render("operator.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                 ".nodeSelectorTerms[0].matchExpressions[0].key=pool",
                 "operator.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                 ".nodeSelectorTerms[0].matchExpressions[0].operator=Exists")  # fmt: skip
    assert list(_pod(find(own, "Deployment", "strongroom-operator"))["affinity"]) == [
        "nodeAffinity"
    ]


def test_a_disruption_budget_keeps_one_replica_through_a_drain(
    default: list[dict[str, Any]],
) -> None:
    budget = find(default, "PodDisruptionBudget", "strongroom-operator")
    assert budget["metadata"]["namespace"] == NAMESPACE
    assert budget["spec"]["minAvailable"] == 1
    deployment = find(default, "Deployment", "strongroom-operator")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    # One replica: a budget of one would block every drain; none is made.
    for values in (("operator.replicas=1",), ("operator.podDisruptionBudget=false",)):
        assert not [o for o in render(*values) if o["kind"] == "PodDisruptionBudget"]
    assert (
        find(render("operator.replicas=3"), "Deployment", "strongroom-operator")["spec"]["replicas"]
        == 3
    )


def test_the_lease_rbac_is_one_lease_in_the_operators_namespace(
    default: list[dict[str, Any]],
) -> None:
    role = find(default, "Role", "strongroom-operator-lease")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["strongroom-operator"],
            "verbs": ["get", "update"],
        },
        # RBAC cannot narrow create by name.
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    binding = find(default, "RoleBinding", "strongroom-operator-lease")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "strongroom-operator-lease",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "strongroom-operator", "namespace": NAMESPACE}
    ]
    # Nothing cluster-wide about Leases.
    cluster_role = find(default, "ClusterRole", "strongroom-operator")
    assert not [r for r in cluster_role["rules"] if "coordination.k8s.io" in r["apiGroups"]]


def test_allowed_pool_images_reach_the_operator() -> None:
    objects = render("pools.allowedImages={registry.example/a:1,registry.example/b@sha256:00}")
    container = _container(_pod(find(objects, "Deployment", "strongroom-operator")), "operator")
    allowed = [a for a in container["args"] if a.startswith("--allowed-image")]
    assert allowed == [
        "--allowed-image=registry.example/a:1",
        "--allowed-image=registry.example/b@sha256:00",
    ]


def _pool_pull_policy(objects: list[dict[str, Any]]) -> list[str]:
    container = _container(_pod(find(objects, "Deployment", "strongroom-operator")), "operator")
    return [a for a in container["args"] if a.startswith("--pool-image-pull-policy")]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((), "IfNotPresent"),
        (("image.pullPolicy=Never",), "Never"),  # unset: the operator's own
        (("image.pullPolicy=Never", "pools.imagePullPolicy=Always"), "Always"),
        (("pools.imagePullPolicy=Never",), "Never"),
    ],
    ids=["default", "image-policy", "pool-policy-wins", "pool-policy"],
)
def test_the_pools_pull_policy_reaches_the_operator(values: tuple[str, ...], expected: str) -> None:
    assert _pool_pull_policy(render(*values)) == [f"--pool-image-pull-policy={expected}"]


def test_the_operator_rbac_is_the_least_it_needs(default: list[dict[str, Any]]) -> None:
    role = find(default, "ClusterRole", "strongroom-operator")
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert not {"escalate", "impersonate", "deletecollection"} & set(rule["verbs"]), rule
        if "bind" in rule["verbs"]:
            # The one role it may grant; not system:auth-delegator (subjectaccessreviews).
            assert rule["resourceNames"] == ["strongroom-token-reviewer"]
            assert rule["verbs"] == ["bind"]
        if "secrets" in rule["resources"]:
            # Reads the Secrets it names; never lists or watches every Secret in the cluster.
            assert set(rule["verbs"]) == {"get", "create", "patch"}
        if "delete" in rule["verbs"]:
            assert rule["resources"] == ["clusterrolebindings"]
        if "clusterrolebindings" in rule["resources"]:
            # Made once per pool, never patched: it cannot be turned into another grant.
            assert set(rule["verbs"]) == {"get", "create", "delete"}
    bindings = list(_bound_rules(default, "strongroom-operator"))
    assert sorted((b["kind"], ref["name"]) for b, ref in bindings) == [
        ("ClusterRoleBinding", "strongroom-operator"),
        ("RoleBinding", "strongroom-operator-lease"),
    ]


def test_the_operator_watches_and_reports_on_every_kind_of_strongroom(
    default: list[dict[str, Any]],
) -> None:
    """Each kind the CRDs define (VaultCertificate included) is watched, patched for kopf's
    finalizer, and reported on through its status subresource, and no more."""
    role = find(default, "ClusterRole", "strongroom-operator")
    ours = [rule for rule in role["rules"] if rule["apiGroups"] == ["strongroom.io"]]
    plurals = [resource.plural for resource in RESOURCES]
    assert "vaultcertificates" in plurals
    assert ours == [
        {
            "apiGroups": ["strongroom.io"],
            "resources": plurals,
            "verbs": ["get", "list", "watch", "patch"],
        },
        {
            "apiGroups": ["strongroom.io"],
            "resources": [f"{plural}/status" for plural in plurals],
            "verbs": ["get", "patch"],
        },
    ]


def test_every_operator_rule_says_why(default: list[dict[str, Any]]) -> None:
    text = (CHART / "templates" / "operator" / "rbac.yaml").read_text()
    for kind in ("ClusterRole", "Role"):
        rules = text.split(f"kind: {kind}\n", 1)[1].split("\n---", 1)[0]
        lines = rules.splitlines()
        checked = 0
        for index, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                assert lines[index - 1].strip().startswith("#"), f"rule without a reason: {line}"
                checked += 1
        assert checked >= 2, kind


def test_pools_are_bound_to_token_review_only(default: list[dict[str, Any]]) -> None:
    role = find(default, "ClusterRole", "strongroom-token-reviewer")
    assert role["rules"] == [
        {
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["tokenreviews"],
            "verbs": ["create"],
        }
    ]


def test_namespace_users_get_strongroom_kinds_through_the_built_in_roles(
    default: list[dict[str, Any]],
) -> None:
    kinds = ["hsmpools", "vaults", "keys", "vaultsecrets", "vaultcertificates"]
    edit = find(default, "ClusterRole", "strongroom-edit")
    labels = edit["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert [rule["resources"] for rule in edit["rules"]] == [kinds]  # no status, nothing else
    assert edit["rules"][0]["apiGroups"] == ["strongroom.io"]
    view = find(default, "ClusterRole", "strongroom-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert view["rules"] == [
        {"apiGroups": ["strongroom.io"], "resources": kinds, "verbs": ["get", "list", "watch"]}
    ]
    # Aggregation only: no binding of the chart's grants anyone these roles.
    bound = {
        obj["roleRef"]["name"]
        for obj in default
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding")
    }
    assert not bound & {"strongroom-edit", "strongroom-view"}
    names = {obj["metadata"]["name"] for obj in render("tenants.aggregateToDefaultRoles=false")}
    assert not names & {"strongroom-edit", "strongroom-view"}


def test_the_operator_rbac_is_the_one_the_operator_names_in_its_errors() -> None:
    text = (ROOT / "operator" / "strongroom" / "reconcile" / "errors.py").read_text()
    assert "deploy/rbac.yaml" in text
    assert (ROOT / "deploy" / "rbac.yaml").exists()


def test_watched_namespaces_and_changed_values_reach_the_operator() -> None:
    objects = render(
        "image.repository=registry.example/strongroom",
        "image.tag=1.2.3",
        "image.pullPolicy=Never",
        "logLevel=DEBUG",
        "operator.watchNamespaces={team-a,team-b}",
        "operator.nodeSelector.pool=system",
        "operator.priorityClassName=high",
    )
    pod = _pod(find(objects, "Deployment", "strongroom-operator"))
    container = _container(pod, "operator")
    assert container["image"] == "registry.example/strongroom:1.2.3"
    assert container["imagePullPolicy"] == "Never"
    assert "--image=registry.example/strongroom:1.2.3" in container["args"]
    assert container["args"][0] == "--log-level=DEBUG"
    assert "--watch-namespace=team-a" in container["args"]
    assert "--watch-namespace=team-b" in container["args"]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["priorityClassName"] == "high"


# --- the CSI node plugin ----------------------------------------------------------------


def test_the_csi_driver_is_what_csi_node_serves(default: list[dict[str, Any]]) -> None:
    driver = find(default, "CSIDriver", DRIVER_NAME)
    assert driver["spec"] == {
        "attachRequired": False,
        "podInfoOnMount": True,
        "volumeLifecycleModes": ["Ephemeral"],
        "fsGroupPolicy": "File",
        "requiresRepublish": True,
        "tokenRequests": [{"audience": AUDIENCE, "expirationSeconds": 3600}],
    }


def test_the_csi_node_plugin_mounts_what_it_must(default: list[dict[str, Any]]) -> None:
    daemonset = find(default, "DaemonSet", "strongroom-csi-node")
    pod = _pod(daemonset)
    container = _container(pod, "csi-node")
    assert container["securityContext"]["privileged"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["pods-dir"]["mountPath"] == "/var/lib/kubelet/pods"
    assert mounts["pods-dir"]["mountPropagation"] == "Bidirectional"
    assert [m for m in mounts.values() if m.get("mountPropagation")] == [mounts["pods-dir"]]
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host == {
        "plugin-dir": "/var/lib/kubelet/plugins/csi.strongroom.io",
        "registration-dir": "/var/lib/kubelet/plugins_registry",
        "pods-dir": "/var/lib/kubelet/pods",
    }
    args = container["args"]
    assert args[:2] == ["--log-level=INFO", "csi-node"]
    assert "--endpoint=unix:///csi/csi.sock" in args and mounts["plugin-dir"]["mountPath"] == "/csi"
    assert "--kubelet-endpoint=/var/lib/kubelet/plugins/csi.strongroom.io/csi.sock" in args
    assert "--registration-socket=/registration/csi.strongroom.io-reg.sock" in args
    assert mounts["registration-dir"]["mountPath"] == "/registration"
    assert "--node-id=$(NODE_NAME)" in args
    assert "--share-seconds=30" in args
    assert "--jwks-file=/jwks/jwks.json" in args
    # The plugin asks the jwks-refresh container for fresh issuer keys through a file of its
    # own emptyDir; the keys come back in the jwks emptyDir, which the plugin only reads.
    assert "--jwks-refresh-request=/jwks-requests/refresh" in args
    assert mounts["jwks"]["readOnly"] is True and "readOnly" not in mounts["jwks-requests"]
    refresh = {m["name"]: m for m in _container(pod, "jwks-refresh")["volumeMounts"]}
    assert refresh["jwks-requests"]["readOnly"] is True and "readOnly" not in refresh["jwks"]
    assert _container(pod, "jwks-refresh")["command"][-2:] == [
        "/jwks/jwks.json",
        "--watch=/jwks-requests/refresh",
    ]
    for name in ("jwks", "jwks-requests"):
        assert _volume(pod, name)["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}


def test_the_csi_node_plugin_trusts_the_public_ca_certificate_only(
    default: list[dict[str, Any]],
) -> None:
    pod = _pod(find(default, "DaemonSet", "strongroom-csi-node"))
    secret = _volume(pod, "vault-ca")["secret"]
    assert secret["secretName"] == CA_SECRET
    assert secret["items"] == [{"key": "tls.crt", "path": "ca.crt"}]
    container = _container(pod, "csi-node")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "vault-ca")
    assert f"--vault-ca={mount['mountPath']}/ca.crt" in container["args"]


def test_the_csi_node_plugin_can_read_no_vault_and_no_secret(
    default: list[dict[str, Any]],
) -> None:
    account = find(default, "ServiceAccount", "strongroom-csi-node")
    assert account["automountServiceAccountToken"] is False
    pod = _pod(find(default, "DaemonSet", "strongroom-csi-node"))
    assert pod["automountServiceAccountToken"] is False
    # Its only binding: the issuer's public discovery documents (for the JWKS).
    refs = [ref for _, ref in _bound_rules(default, "strongroom-csi-node")]
    assert refs == [
        {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:service-account-issuer-discovery",
        }
    ]
    # The API token is in the unprivileged containers that fetch the JWKS (at start, and
    # again when the plugin asks), not in the plugin.
    users = [
        c["name"]
        for c in pod["containers"] + pod["initContainers"]
        if any(m["name"] == "api-credentials" for m in c["volumeMounts"])
    ]
    assert users == ["jwks-refresh", "fetch-jwks"]
    for name in users:
        fetch = _container(pod, name)
        assert fetch["securityContext"]["runAsNonRoot"] is True
        assert fetch["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert fetch["securityContext"]["allowPrivilegeEscalation"] is False
        assert "privileged" not in fetch["securityContext"]


def test_a_jwks_from_a_config_map_needs_no_api_access() -> None:
    objects = render("csiNode.jwks.source=configMap", "csiNode.jwks.configMap.name=issuer")
    assert list(_bound_rules(objects, "strongroom-csi-node")) == []
    pod = _pod(find(objects, "DaemonSet", "strongroom-csi-node"))
    assert "initContainers" not in pod
    assert [c["name"] for c in pod["containers"]] == ["csi-node"]
    args = _container(pod, "csi-node")["args"]
    assert "--jwks-file=/jwks/jwks.json" in args
    # The kubelet updates a ConfigMap volume in place: the plugin reads it again on its own.
    assert not [a for a in args if a.startswith("--jwks-refresh-request")]
    assert _volume(pod, "jwks")["configMap"] == {
        "name": "issuer",
        "items": [{"key": "jwks.json", "path": "jwks.json"}],
    }
    assert not [o for o in objects if o["metadata"]["name"] == "strongroom-csi-node-scripts"]


def test_without_a_jwks_the_plugin_gets_no_jwks_file() -> None:
    objects = render("csiNode.jwks.source=none")
    assert list(_bound_rules(objects, "strongroom-csi-node")) == []
    container = _container(_pod(find(objects, "DaemonSet", "strongroom-csi-node")), "csi-node")
    assert not [a for a in container["args"] if a.startswith("--jwks")]


def test_changed_values_reach_the_csi_node_plugin() -> None:
    kubelet = "/var/snap/microk8s/common/var/lib/kubelet"
    objects = render(
        f"csiNode.kubeletDir={kubelet}/",
        "csiNode.shareSeconds=5",
        "csiNode.tolerations=null",
        "csiNode.nodeSelector.strongroom=yes",
    )
    pod = _pod(find(objects, "DaemonSet", "strongroom-csi-node"))
    container = _container(pod, "csi-node")
    assert "--share-seconds=5" in container["args"]
    assert f"--kubelet-endpoint={kubelet}/plugins/csi.strongroom.io/csi.sock" in container["args"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "pods-dir")
    assert mount["mountPath"] == f"{kubelet}/pods"
    assert _volume(pod, "registration-dir")["hostPath"]["path"] == f"{kubelet}/plugins_registry"
    assert pod["nodeSelector"] == {"strongroom": "yes"}
    assert "tolerations" not in pod


# --- helm test --------------------------------------------------------------------------


def test_the_helm_test_pod_is_a_hook_with_read_only_access(
    default: list[dict[str, Any]],
) -> None:
    pod = find(default, "Pod", "strongroom-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    for binding, ref in _bound_rules(default, "strongroom-test"):
        kind = "ClusterRole" if binding["kind"] == "ClusterRoleBinding" else "Role"
        role = find(default, kind, ref["name"])
        for rule in role["rules"]:
            assert set(rule["verbs"]) <= {"get", "list"}, rule
            assert "secrets" not in rule["resources"]
    assert pod["spec"]["containers"][0]["command"][-4:] == [
        NAMESPACE,
        "strongroom-operator",
        "strongroom-csi-node",
        DRIVER_NAME,
    ]


def test_without_tests_nothing_of_helm_test_is_made() -> None:
    objects = render("tests.enabled=false")
    assert not [o for o in objects if o["metadata"]["name"] == "strongroom-test"]


MOUNT = (
    "tests.mount.enabled=true",
    "tests.mount.namespace=demo",
    "tests.mount.serviceAccount=reader",
    "tests.mount.vault=demo",
    "tests.mount.secret=db-password",
)


def test_the_mount_check_runs_as_the_workload_and_prints_no_value() -> None:
    assert not [o for o in render() if o["metadata"]["name"] == "strongroom-test-mount"]
    pod = find(render(*MOUNT), "Pod", "strongroom-test-mount")
    assert pod["metadata"]["namespace"] == "demo"
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["serviceAccountName"] == "reader"
    volume = pod["spec"]["volumes"][0]["csi"]
    assert volume["driver"] == "csi.strongroom.io" and volume["readOnly"] is True
    assert json.loads(volume["volumeAttributes"]["objects"]) == [
        {"kind": "secret", "name": "db-password", "path": "check"}
    ]
    assert volume["volumeAttributes"]["vault"] == "demo"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "wc -c" in script and "cat" not in script
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


# --- one source -------------------------------------------------------------------------


def test_the_chart_crds_are_the_crds() -> None:
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    source = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert source and chart == source, "charts/strongroom/crds/ is stale: run scripts/gen-crds"


def test_deploy_is_rendered_from_the_chart() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-deploy"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_helm_is_pinned_to_the_version_the_cluster_tier_builds() -> None:
    def pinned(path: Path) -> str:
        found = re.search(r"^HELM_VERSION=(v[\d.]+)$", path.read_text(), re.M)
        assert found, path
        return found.group(1)

    assert pinned(ROOT / "scripts" / "helm") == pinned(ROOT / "e2e" / "lib.sh")


MONITORING_API = "monitoring.coreos.com/v1/ServiceMonitor"


def render_with_api(*values: str, api: str | None = None) -> list[dict[str, Any]]:
    args = [f"--set={value}" for value in values] + ([f"--api-versions={api}"] if api else [])
    out = helm(
        "template",
        "strongroom",
        str(CHART),
        f"--namespace={NAMESPACE}",
        f"--kube-version={KUBE_VERSION}",
        *args,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_metrics_ports_and_scrape_annotations_by_default(default: list[dict[str, Any]]) -> None:
    operator = find(default, "Deployment", "strongroom-operator")
    container = _container(_pod(operator), "operator")
    assert "--metrics-port=9103" in container["args"]
    assert "--pool-metrics-port=9102" in container["args"]
    assert {"name": "metrics", "containerPort": 9103} in container["ports"]
    assert {"name": "health", "containerPort": 8080} in container["ports"]
    annotations = operator["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9103",
        "prometheus.io/path": "/metrics",
    }
    csi = find(default, "DaemonSet", "strongroom-csi-node")
    plugin = _container(_pod(csi), "csi-node")
    assert "--metrics-port=9104" in plugin["args"]
    assert plugin["ports"] == [{"name": "metrics", "containerPort": 9104}]
    assert csi["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9104"
    # No Prometheus Operator in a plain render: no monitors, no metrics Services.
    kinds = {o["kind"] for o in default}
    assert "ServiceMonitor" not in kinds and "PodMonitor" not in kinds and "Service" not in kinds


def test_pod_annotations_of_the_values_are_kept_beside_the_scrape_ones() -> None:
    objects = render("operator.podAnnotations.team=vaults")
    operator = find(objects, "Deployment", "strongroom-operator")
    annotations = operator["spec"]["template"]["metadata"]["annotations"]
    assert annotations["team"] == "vaults" and annotations["prometheus.io/scrape"] == "true"


def test_without_metrics_nothing_is_served_or_announced() -> None:
    objects = render("metrics.enabled=false", "metrics.serviceMonitor.enabled=true")
    operator = find(objects, "Deployment", "strongroom-operator")
    container = _container(_pod(operator), "operator")
    assert not [a for a in container["args"] if "metrics" in a]
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert "annotations" not in operator["spec"]["template"]["metadata"]
    csi = find(objects, "DaemonSet", "strongroom-csi-node")
    plugin = _container(_pod(csi), "csi-node")
    assert not [a for a in plugin["args"] if "metrics" in a] and "ports" not in plugin
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "Service"}
    assert not [o for o in objects if o["metadata"]["name"] == "strongroom-dashboard"]


@pytest.mark.parametrize(
    ("values", "api", "expected"),
    [
        ((), None, False),
        ((), MONITORING_API, True),  # null: when the cluster serves the API
        (("metrics.serviceMonitor.enabled=true",), None, True),
        (("metrics.serviceMonitor.enabled=false",), MONITORING_API, False),
    ],
)
def test_the_monitors_render_when_asked_or_when_the_api_exists(
    values: tuple[str, ...], api: str | None, expected: bool
) -> None:
    objects = render_with_api(*values, api=api)
    monitors = [o for o in objects if o["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert bool(monitors) == expected
    if not expected:
        return
    monitor = find(objects, "ServiceMonitor", "strongroom")
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    selected = monitor["spec"]["selector"]["matchLabels"]
    services = [
        o
        for o in objects
        if o["kind"] == "Service" and selected.items() <= o["metadata"]["labels"].items()
    ]
    assert sorted(s["metadata"]["name"] for s in services) == [
        "strongroom-csi-node-metrics",
        "strongroom-operator-metrics",
    ]
    for service in services:
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    pools = find(objects, "PodMonitor", "strongroom-pools")
    assert pools["spec"]["namespaceSelector"] == {"any": True}
    # The operator's pools carry these labels (builders/common.py) and a port named metrics.
    assert pools["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "strongroom",
        "app.kubernetes.io/component": "hsm-pool",
    }
    assert pools["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_monitor_labels_and_interval_reach_the_monitors() -> None:
    objects = render(
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.interval=15s",
        "metrics.serviceMonitor.labels.release=prometheus",
    )
    for kind, name in (("ServiceMonitor", "strongroom"), ("PodMonitor", "strongroom-pools")):
        monitor = find(objects, kind, name)
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        find(objects, "ServiceMonitor", "strongroom")["spec"]["endpoints"][0]["interval"] == "15s"
    )


def test_the_dashboard_is_a_labelled_config_map_of_every_metric_family(
    default: list[dict[str, Any]],
) -> None:
    config_map = find(default, "ConfigMap", "strongroom-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["strongroom.json"])
    assert dashboard == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    exprs = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    for family in (
        "strongroom_requests_total",
        "strongroom_request_duration_seconds_bucket",
        "strongroom_auth_failures_total",
        "strongroom_hsm_operation_duration_seconds_bucket",
        "strongroom_hsm_call_duration_seconds_bucket",
        "strongroom_hsm_queue_depth",
        "strongroom_vault_objects",
        "strongroom_csi_publishes_total",
        "strongroom_csi_publish_duration_seconds_bucket",
        "strongroom_csi_rotations_total",
        "strongroom_reconciles_total",
        "strongroom_reconcile_duration_seconds_bucket",
        "strongroom_resources_not_ready",
    ):
        assert family in exprs, family
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Requests by operation", "Errors by status", "Publish latency p95"} <= titles
    assert not find_all(
        render("metrics.dashboard.enabled=false"), "ConfigMap", "strongroom-dashboard"
    )


def find_all(objects: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
