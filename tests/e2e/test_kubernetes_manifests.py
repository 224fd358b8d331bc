"""The Kubernetes manifests of the collector (deploy/kubernetes/): every object is valid against
the Kubernetes API schemas (PyPI `kubernetes-validate`, strict: unknown fields are errors), and
the manifests agree with the collector they run: the probe paths are routes of its router, the
port is its default port and the image's, every environment variable is one its command line
reads, the user is the image's. Offline: no cluster here, so scheduling, the NetworkPolicy's
enforcement and the probes against a live pod are not tested."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from stack import ROOT

MANIFESTS = ROOT / "deploy" / "kubernetes"
COLLECTOR_SRC = ROOT / "collector" / "src"
CONTAINERFILE = ROOT / "packaging" / "collector.Containerfile"
# The oldest Kubernetes minor still maintained upstream when these were written, and the newest
# the validator knows.
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def objects() -> list[dict[str, Any]]:
    return [d for p in manifest_files() for d in yaml.safe_load_all(p.read_text()) if d]


def one(kind: str) -> dict[str, Any]:
    [found] = [d for d in objects() if d["kind"] == kind]
    return found


def container() -> dict[str, Any]:
    [c] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env() -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container()["env"]}


def collector_env_names() -> set[str]:
    """Every `env = "..."` of the collector's command line (clap reads these)."""
    text = "".join(p.read_text() for p in (COLLECTOR_SRC / "cli").glob("*.rs"))
    return set(re.findall(r'env = "([A-Z0-9_]+)"', text))


def collector_default_port() -> int:
    args = (COLLECTOR_SRC / "cli" / "args.rs").read_text()
    [listen] = re.findall(r'env = "ACP_LISTEN", default_value = "([^"]+)"', args)
    return int(listen.rsplit(":", 1)[1])


def containerfile(instruction: str) -> list[str]:
    return [line.split(None, 1)[1] for line in CONTAINERFILE.read_text().splitlines()
            if line.startswith(instruction + " ")]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_wrong_field() -> None:
    """The validation above can fail: a misspelt field and a wrong type are refused."""
    deployment = one("Deployment")
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSIONS[-1], strict=True)
    wrong_type = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    namespace = kustomization["namespace"]
    assert one("Namespace")["metadata"]["name"] == namespace
    assert all(d["metadata"]["namespace"] == namespace for d in objects() if d["kind"] != "Namespace")
    [image] = kustomization["images"]
    assert container()["image"].split(":")[0] == image["name"]


def test_probe_paths_are_collector_routes() -> None:
    router = (COLLECTOR_SRC / "http" / "mod.rs").read_text()
    routes = set(re.findall(r'\.route\(\s*"([^"]+)"', router))
    c = container()
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["path"] in routes, probe
        assert c[probe]["httpGet"]["port"] == "http"


def test_port_is_the_collectors_everywhere() -> None:
    port = collector_default_port()
    c = container()
    [container_port] = c["ports"]
    assert container_port == {"name": "http", "containerPort": port, "protocol": "TCP"}
    assert env()["ACP_LISTEN"]["value"] == f"0.0.0.0:{port}"
    assert containerfile("EXPOSE") == [str(port)]
    assert f"ACP_LISTEN=0.0.0.0:{port}" in CONTAINERFILE.read_text()
    [service_port] = one("Service")["spec"]["ports"]
    assert service_port["port"] == port and service_port["targetPort"] == "http"
    ingress = one("NetworkPolicy")["spec"]["ingress"]
    assert [p["port"] for rule in ingress for p in rule["ports"]] == [port, port]


def test_environment_variables_are_ones_the_collector_reads() -> None:
    names = collector_env_names()
    assert {"ACP_DATABASE_URL", "ACP_INGEST_TOKEN", "ACP_SIGNING_KEY", "ACP_LISTEN"} <= names
    assert set(env()) <= names, set(env()) - names
    image_env = re.findall(r"(ACP_[A-Z_]+)=", CONTAINERFILE.read_text())
    assert image_env and set(image_env) <= names


def test_secrets_give_the_database_the_token_and_the_signing_key() -> None:
    e = env()
    assert e["ACP_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "acp-collector-database", "key": "url"}
    assert e["ACP_INGEST_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "acp-collector-ingest", "key": "token"}
    pod = one("Deployment")["spec"]["template"]["spec"]
    [mount] = [m for m in container()["volumeMounts"] if m["name"] == "signing-key"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "signing-key"]
    [item] = volume["secret"]["items"]
    assert e["ACP_SIGNING_KEY"]["value"] == f"{mount['mountPath']}/{item['path']}"
    assert mount["readOnly"] is True
    # Readable by the collector's group only: fsGroup owns the Secret's files.
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def test_pod_runs_unprivileged_as_the_images_user() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    user, group = containerfile("USER")[0].split(":")
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(user), int(group))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container()["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    resources = container()["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    assert one("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_selectors_pick_the_collectors_pods() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 2
    selectors = [deployment["spec"]["selector"]["matchLabels"], one("Service")["spec"]["selector"],
                 one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                 one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"]]
    for selector in selectors:
        assert selector.items() <= labels.items(), selector
    assert one("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_network_policy_admits_sidecars_and_readers_only() -> None:
    policy = one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [records, readers] = [rule["from"] for rule in policy["ingress"]]
    # Each peer names both a namespace and pods: no rule admits a whole namespace or every pod.
    for peer in records + readers:
        assert peer["namespaceSelector"]["matchLabels"] and peer["podSelector"]["matchLabels"], peer
    assert records[0]["podSelector"]["matchLabels"] == {"security.istio.io/tlsMode": "istio"}
    webhooks = [rule for rule in policy["egress"] if any("ipBlock" in to for to in rule["to"])]
    [https] = webhooks
    assert [p["port"] for p in https["ports"]] == [443]
    for to in https["to"]:
        assert to["ipBlock"]["except"], "private ranges stay closed to webhooks"
