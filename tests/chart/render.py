"""Renders charts/sluice with Helm's real SDK (helm-python-sdk).

Shared by the chart tests (test_chart.py) and the Rust tests that install
the chart into the real control plane (`sluice_tests::cluster::chart`):

    python render.py                 # every variant name, one per line
    python render.py VARIANT         # that variant's objects, as YAML
    python render.py --values JSON   # the objects for these values
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "sluice"
NAMESPACE = "kube-system"

# The value combinations a user picks (see the README's quickstart).
COMBINATIONS = {
    "defaults": {},
    "overlay": {"proxy": {"overlay": {"enabled": True, "iface": "eth1"}}},
    "privileged": {"proxy": {"privileged": True, "loadKernelModules": True}},
    "ingress-default-class-nodeport": {
        "ingress": {
            "ingressClass": {"default": True},
            "service": {"type": "NodePort", "nodePorts": {"http": 30080, "https": 30443}},
            "antiAffinity": "hard",
            "defaultSslCertificate": "kube-system/wildcard",
            "publishStatusAddress": "203.0.113.10",
        }
    },
    "proxy-only": {
        "ingress": {"enabled": False},
        "proxy": {
            "apiServer": {"host": "10.0.0.1"},
            "config": {"clusterCIDR": "10.244.0.0/16", "ipvs": {"scheduler": "wrr", "strictARP": True}},
            "extraArgs": ["--masquerade-all"],
        },
    },
    "ingress-only": {"proxy": {"enabled": False}, "ingress": {"replicas": 1}},
}


def render(values: dict, namespace: str = NAMESPACE) -> list[dict]:
    """Renders the chart; returns every object (NOTES.txt excluded)."""
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name="sluice", namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def main(argv: list[str]) -> int:
    if not argv:
        print("\n".join(sorted(COMBINATIONS)))
        return 0
    if argv[0] == "--values" and len(argv) == 2:
        values = json.loads(argv[1])
    elif argv[0] in COMBINATIONS:
        values = COMBINATIONS[argv[0]]
    else:
        print(f"render.py: no variant {argv[0]!r}", file=sys.stderr)
        return 2
    print(yaml.safe_dump_all(render(values), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
