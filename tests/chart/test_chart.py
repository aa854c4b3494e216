"""Chart tests: charts/sluice rendered with Helm's real SDK (helm-python-sdk),
linted strictly, and every rendered object validated with
`kubernetes-validate --strict` against Kubernetes 1.33 and the newest schema
the package ships. Negative tests prove each check can fail.

Run: .venv-chart/bin/python -m pytest tests/chart (scripts/test.sh does).
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate.utils as kv
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import CHART, COMBINATIONS, NAMESPACE, render  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KUBE_VERSIONS = ["1.33.0", kv.latest_version()]

def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def validate(objects: list[dict], tmp_path: Path, version: str) -> subprocess.CompletedProcess:
    """Runs the kubernetes-validate CLI (strict) on the objects as one file."""
    f = tmp_path / f"rendered-{version}.yaml"
    f.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    cli = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run(
        [str(cli), "--strict", "--quiet", "-k", version, str(f)],
        capture_output=True,
        text=True,
    )


def test_lint_is_clean_in_strict_mode():
    for values in COMBINATIONS.values():
        report = helm.lint(str(CHART), values, strict=True, kube_version="v1.33.0")
        bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not bad, bad


@pytest.mark.parametrize("combo", sorted(COMBINATIONS))
def test_renders_and_validates_strictly(combo, tmp_path):
    objects = render(COMBINATIONS[combo])
    assert objects
    for version in KUBE_VERSIONS:
        r = validate(objects, tmp_path, version)
        assert r.returncode == 0, f"{combo} against {version}:\n{r.stdout}{r.stderr}"


def test_defaults_deploy_both_with_least_privilege():
    objects = render({})
    ds = by_kind(objects, "DaemonSet")[0]["spec"]["template"]["spec"]
    assert ds["hostNetwork"] is True
    assert ds["priorityClassName"] == "system-node-critical"
    assert ds["tolerations"] == [{"operator": "Exists"}]
    c = ds["containers"][0]
    assert c["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert c["securityContext"]["privileged"] is False
    assert c["securityContext"]["runAsUser"] == 0  # the image's default user is 65532
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/lib/modules", "/run/xtables.lock", "/etc/sluice-proxy"} <= mounts
    assert not any(a.startswith("--overlay") for a in c["args"])

    cm = [o for o in by_kind(objects, "ConfigMap") if "config.yaml" in o["data"]][0]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["kind"] == "KubeProxyConfiguration" and config["mode"] == "ipvs"

    roles = {o["metadata"]["name"]: o["rules"] for o in by_kind(objects, "ClusterRole")}
    proxy_rules = roles["sluice-proxy"]
    assert not any("nodes/status" in r["resources"] for r in proxy_rules)
    assert not any(v in r["verbs"] for r in proxy_rules for v in ("delete", "update", "*"))
    # Exactly what the audit log shows the proxy using
    # (proxy/tests/overlay_cluster_vm.rs): lists and watches, Events created.
    assert not any("get" in r["verbs"] for r in proxy_rules)
    events = [r for r in proxy_rules if "events" in r["resources"]]
    assert events == [{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]}]
    ingress_rules = roles["sluice-ingress"]
    secrets = [r for r in ingress_rules if "secrets" in r["resources"]]
    # Listed and watched (with a type=kubernetes.io/tls field selector), never
    # read one by one: no `get` (ingress/tests/cluster_rbac.rs checks the
    # grants against the audit log).
    assert secrets and secrets[0]["verbs"] == ["list", "watch"]
    lease_role = by_kind(objects, "Role")[0]
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    # The Lease, and reading Pods (on shutdown the leader keeps the status
    # while another replica runs); nothing else, nothing to write but leases.
    assert {r["resources"][0] for r in lease_role["rules"]} == {"leases", "pods"}
    pods = [r for r in lease_role["rules"] if r["resources"] == ["pods"]]
    assert pods[0]["verbs"] == ["get", "list"]

    deploy = by_kind(objects, "Deployment")[0]["spec"]
    assert deploy["replicas"] == 2
    assert "preferredDuringSchedulingIgnoredDuringExecution" in deploy["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert by_kind(objects, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 1
    assert by_kind(objects, "Service")[0]["spec"]["type"] == "LoadBalancer"
    cls = by_kind(objects, "IngressClass")[0]
    assert cls["spec"]["controller"] == "sluice.dev/ingress-controller"
    assert "annotations" not in cls["metadata"]


def test_overlay_adds_its_mounts_flags_and_nodes_status_patch():
    objects = render(COMBINATIONS["overlay"])
    ds = by_kind(objects, "DaemonSet")[0]["spec"]["template"]["spec"]
    c = ds["containers"][0]
    assert "--overlay-config=/etc/kube-flannel/net-conf.json" in c["args"]
    assert "--overlay-iface=eth1" in c["args"]
    assert "--overlay-ip-masq=true" in c["args"]
    # Off must say so: the binary's default is on.
    off = render({"proxy": {"overlay": {"enabled": True, "ipMasq": False}}})
    args = by_kind(off, "DaemonSet")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--overlay-ip-masq=false" in args
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/etc/kube-flannel", "/run/flannel", "/etc/cni/net.d"} <= mounts
    netconf = [o for o in by_kind(objects, "ConfigMap") if "net-conf.json" in o["data"]][0]
    assert yaml.safe_load(netconf["data"]["net-conf.json"])["Backend"]["Type"] == "vxlan"
    proxy_rules = [o for o in by_kind(objects, "ClusterRole") if o["metadata"]["name"] == "sluice-proxy"][0]["rules"]
    assert {"resources": ["nodes/status"], "apiGroups": [""], "verbs": ["patch"]} in proxy_rules


def test_privileged_and_component_switches():
    c = by_kind(render(COMBINATIONS["privileged"]), "DaemonSet")[0]["spec"]["template"]["spec"]["containers"][0]
    assert c["securityContext"] == {"runAsUser": 0, "runAsNonRoot": False, "privileged": True}
    only_proxy = render(COMBINATIONS["proxy-only"])
    assert not by_kind(only_proxy, "Deployment") and not by_kind(only_proxy, "IngressClass")
    env = by_kind(only_proxy, "DaemonSet")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "KUBERNETES_SERVICE_HOST", "value": "10.0.0.1"} in env
    only_ingress = render(COMBINATIONS["ingress-only"])
    assert not by_kind(only_ingress, "DaemonSet")
    assert not by_kind(only_ingress, "PodDisruptionBudget")  # one replica


def test_default_class_and_nodeport():
    objects = render(COMBINATIONS["ingress-default-class-nodeport"])
    cls = by_kind(objects, "IngressClass")[0]
    assert cls["metadata"]["annotations"] == {"ingressclass.kubernetes.io/is-default-class": "true"}
    svc = by_kind(objects, "Service")[0]["spec"]
    assert svc["type"] == "NodePort"
    assert [p["nodePort"] for p in svc["ports"]] == [30080, 30443]
    args = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--default-ssl-certificate=kube-system/wildcard" in args
    assert "--publish-status-address=203.0.113.10" in args


# --- negative tests: each check can fail -----------------------------------

@pytest.mark.parametrize(
    "values",
    [
        {"proxy": {"overlya": {"enabled": True}}},  # misspelt key
        {"ingress": {"service": {"type": "ClusterIP"}}},  # not offered
        {"proxy": {"config": {"ipvs": {"schedular": "rr"}}}},  # KubeProxyConfiguration typo
        {"proxy": {"config": {"ipvs": {"syncPeriod": "30 seconds"}}}},  # not a Go duration
    ],
)
def test_schema_rejects_bad_values(values):
    with pytest.raises(helm.HelmValuesError):
        render(values)


def test_validator_rejects_an_unknown_field(tmp_path):
    objects = render({})
    broken = copy.deepcopy(objects)
    ds = by_kind(broken, "DaemonSet")[0]
    ds["spec"]["template"]["spec"]["containers"][0]["bogusField"] = True
    r = validate(broken, tmp_path, "1.33.0")
    assert r.returncode != 0 and "bogusField" in r.stdout + r.stderr


def test_lint_reports_a_broken_template(tmp_path):
    broken = tmp_path / "sluice"
    subprocess.run(["cp", "-r", str(CHART), str(broken)], check=True)
    t = broken / "templates" / "ingress-service.yaml"
    t.write_text(t.read_text().replace("{{- end }}", "", 1))
    report = helm.lint(str(broken), strict=True)
    assert report["errors"] or any(m["severity"] >= 3 for m in report["messages"])


# --- README's chart values table matches values.yaml -----------------------

def chart_value_keys() -> set[str]:
    """Top-level keys, with a map of settings (image, proxy, ingress)
    standing for the keys one level under it."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = set()
    for k, v in values.items():
        if isinstance(v, dict) and v:
            keys.update(f"{k}.{sub}" for sub in v)
        else:
            keys.add(k)
    return keys


def readme_value_keys() -> set[str]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^### Chart values\n(.*?)(?=^#|\Z)", text, re.S | re.M)
    assert m, "README.md has no '### Chart values' section"
    return set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", m.group(1), re.M))


def test_readme_lists_exactly_the_chart_values():
    chart, readme = chart_value_keys(), readme_value_keys()
    missing, stale = sorted(chart - readme), sorted(readme - chart)
    assert not missing and not stale, (
        f"README '### Chart values' is out of date: missing {missing}, no longer in values.yaml {stale}"
    )
