"""The collector's container image from `make package` (dist/acp-collector-oci, built by buildah
from packaging/collector.Containerfile), run by Debian's podman: what is in it (the static
binary, the CA bundle, nothing else: no shell, no package manager, no libc), its configuration
(non-root user, port, volume, labels), and the collector working in it on a named volume:
records ingested over the published port, exported with an API key made by the image's own
`apikey create`, and `verify` run by the image against the verifier key `key show` prints.

podman runs with the runc runtime and `default_ulimits = []` (crun 1.8 and the default rlimits
fail on this VM's hybrid cgroups), in a store of its own under the test's temporary directory,
so nothing touches the machine's containers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from stack import ROOT, free_port

LAYOUT = ROOT / "dist" / "acp-collector-oci"
VERSION = tomllib.loads((ROOT / "collector" / "Cargo.toml").read_text())["package"]["version"]
TENANT = "org_container"
INGEST_TOKEN = "container-ingest-token"
# What the image holds, and nothing else.
IMAGE_FILES = {"acp-collector", "etc/ssl/certs/ca-certificates.crt"}
IMAGE_DIRS = {"etc", "etc/ssl", "etc/ssl/certs", "tmp", "var", "var/lib", "var/lib/acp"}


def blob(digest: str) -> bytes:
    data = (LAYOUT / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def manifest() -> dict[str, Any]:
    index = json.loads((LAYOUT / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == VERSION
    return json.loads(blob(entry["digest"]))


def image_config() -> dict[str, Any]:
    return json.loads(blob(manifest()["config"]["digest"]))


def layer_members() -> list[tarfile.TarInfo]:
    members = []
    for layer in manifest()["layers"]:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer["digest"])))) as tar:
            members.extend(tar.getmembers())
    return members


def require_image() -> None:
    assert (LAYOUT / "index.json").exists(), "run `make package` first"


def test_image_holds_the_static_binary_and_the_ca_bundle_only() -> None:
    require_image()
    members = {m.name.rstrip("/"): m for m in layer_members()}
    assert {n for n, m in members.items() if m.isfile()} == IMAGE_FILES
    assert {n for n, m in members.items() if m.isdir()} == IMAGE_DIRS
    binary = members["acp-collector"]
    assert (binary.uid, binary.mode & 0o7777) == (0, 0o755)
    assert (members["tmp"].mode & 0o7777) == 0o1777
    data = members["var/lib/acp"]
    assert (data.uid, data.gid) == (65532, 65532)
    # Everything else belongs to root: the user can write only its data directory and /tmp.
    assert all(m.uid == 0 for n, m in members.items() if n != "var/lib/acp")


def test_image_configuration() -> None:
    require_image()
    config = image_config()
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    c = config["config"]
    assert c["User"] == "65532:65532"
    assert c["Entrypoint"] == ["/acp-collector"] and c["Cmd"] == ["serve"]
    assert c["ExposedPorts"] == {"7070/tcp": {}}
    assert c["Volumes"] == {"/var/lib/acp": {}}
    assert "ACP_DB=/var/lib/acp/acp-audit.db" in c["Env"] and "ACP_LISTEN=0.0.0.0:7070" in c["Env"]
    labels = c["Labels"]
    assert labels["org.opencontainers.image.title"] == "acp-collector"
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")
    assert not any(k.startswith("io.buildah") for k in labels)


@dataclass
class Podman:
    """podman on a store of its own (`tmp`), with runc and the containers.conf this VM needs."""

    tmp: Path

    def argv(self, *args: str) -> list[str]:
        return ["podman", "--root", str(self.tmp / "storage"), "--runroot", str(self.tmp / "run"),
                "--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", *args]

    def __call__(self, *args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        conf = self.tmp / "containers.conf"
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        done = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, check=False,
                              env={"CONTAINERS_CONF": str(conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                   "TMPDIR": str(self.tmp)})
        if ok:
            assert done.returncode == 0, f"podman {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        return done


@dataclass
class Running:
    podman: Podman
    image: str
    volume: str
    url: str
    name: str

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        """The image's binary with `args`, in a container of its own on the same volume (the
        image has no shell to `exec` into)."""
        return self.podman("run", "--rm", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                           "--network", "none", "-v", f"{self.volume}:/var/lib/acp", self.image, *args, ok=ok)


def http(url: str, *, method: str = "GET", body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            text = reply.read().decode()
            is_json = reply.headers.get_content_type() == "application/json"
            return reply.status, json.loads(text) if is_json else text
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError) as err:
        return 0, str(err)


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Podman, str]:
    """A podman store of this module's own, holding the image; the image's id."""
    require_image()
    podman = Podman(tmp_path_factory.mktemp("podman"))
    image = podman("pull", "--quiet", f"oci:{LAYOUT}:{VERSION}").stdout.strip().splitlines()[-1]
    return podman, image


def wait_ready(podman: Podman, name: str, url: str) -> None:
    deadline = time.monotonic() + 60
    while http(f"{url}/readyz")[0] != 200:
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        assert state == "running", f"container {state}:\n{podman('logs', name, ok=False).stderr}"
        assert time.monotonic() < deadline, podman("logs", name, ok=False).stderr
        time.sleep(0.2)


@pytest.fixture(scope="module")
def collector(pulled: tuple[Podman, str]) -> Iterator[Running]:
    podman, image = pulled
    podman("volume", "create", "acp-data")
    port = free_port()
    name = "acp-collector-test"
    # The hardening a deployment uses: read-only root, no capabilities, no privilege gain.
    podman("run", "--detach", "--name", name, "--read-only", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges", "--publish", f"127.0.0.1:{port}:7070",
           "-v", "acp-data:/var/lib/acp", "-e", f"ACP_INGEST_TOKEN={INGEST_TOKEN}", image)
    running = Running(podman, image, "acp-data", f"http://127.0.0.1:{port}", name)
    try:
        wait_ready(podman, name, running.url)
        yield running
    finally:
        podman("rm", "--force", "--time", "10", name, ok=False)


def record(n: int) -> dict[str, Any]:
    return {
        "id": f"container-{n:03d}", "event": "tool.call", "timestamp": f"2026-03-10T09:{n:02d}:00.000Z",
        "sub": "auth0|alice", "email": "alice@acme.com", "tool": "salesforce.query",
        "input": {"query": f"SELECT Name FROM Opportunity LIMIT {n}"}, "scopes": ["salesforce:read"],
        "scopeRequired": ["salesforce:read"], "scopeResult": "pass", "contentScan": None, "result": "success",
        "reason": None, "latencyMs": 12.5, "tenantId": TENANT, "clientType": "claude-desktop",
        "clientId": "claude-desktop-app", "delegationChain": None,
    }


def test_the_container_runs_as_the_unprivileged_user(collector: Running) -> None:
    inspect = json.loads(collector.podman("inspect", collector.name).stdout)[0]
    assert inspect["Config"]["User"] == "65532:65532"
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    assert http(f"{collector.url}/healthz") == (200, "ok")


def test_no_shell_in_the_image(collector: Running) -> None:
    done = collector.podman("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", collector.image,
                            "-c", "true", ok=False)
    assert done.returncode != 0
    assert "/bin/sh" in done.stderr and "no such file" in done.stderr.lower(), done.stderr


def test_ingest_export_and_verify_through_the_image(collector: Running) -> None:
    records = [record(n) for n in range(1, 21)]
    status, answer = http(f"{collector.url}/v1/records", method="POST", body={"records": records}, token=INGEST_TOKEN)
    assert (status, answer) == (200, {"accepted": 20, "duplicates": 0})
    status, _ = http(f"{collector.url}/v1/records", method="POST", body={"records": records}, token="wrong")
    assert status == 401

    created = collector.run("apikey", "create", "--tenant", TENANT).stdout
    [api_key] = created.split()
    assert api_key.startswith("gsk_")
    status, page = http(f"{collector.url}/{TENANT}/api/v1/audit?limit=1000", token=api_key)
    assert status == 200, page
    exported = sorted(page["records"], key=lambda r: r["id"])
    assert [r["id"] for r in exported] == [r["id"] for r in records]
    for sent, got in zip(records, exported, strict=True):
        for field, value in sent.items():
            assert got[field] == value, (sent["id"], field, got[field])

    # The collector signs a checkpoint when it stops (SIGTERM); then verify the volume with the
    # verifier key the image prints, trusting nothing stored in the database.
    collector.podman("stop", "--time", "20", collector.name)
    stopped = collector.podman("inspect", "--format", "{{.State.ExitCode}}", collector.name).stdout.strip()
    assert stopped == "0", collector.podman("logs", collector.name, ok=False).stderr
    [vkey] = collector.run("key", "show").stdout.split()
    verified = collector.run("verify", "--public-key", vkey, ok=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert TENANT in verified.stdout + verified.stderr
    # Another key of the same name, which signed nothing here, is refused.
    [stranger] = collector.run("key", "show", "--signing-key", "/tmp/other.signing-key").stdout.split()
    assert stranger != vkey
    refused = collector.run("verify", "--public-key", stranger, ok=False)
    assert refused.returncode != 0, refused.stdout + refused.stderr


# ---- The Kubernetes Deployment's settings ---------------------------------------------------

DEPLOYMENT = ROOT / "deploy" / "kubernetes" / "deployment.yaml"
PG_SCRIPT = ROOT / "tests" / "pg" / "with-postgres.sh"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on loopback (tests/pg/with-postgres.sh, which removes it
    when its command ends: here when its standard input closes)."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("Debian's PostgreSQL server is not installed")
    server = subprocess.Popen([str(PG_SCRIPT), "sh", "-c", 'echo "$ACP_TEST_POSTGRES_URL"; exec cat >/dev/null'],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("postgres://"), url
        yield url
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=60)


def deployment_env(secrets: dict[tuple[str, str], str], listen: str) -> list[str]:
    """`-e NAME=VALUE` for each variable of deploy/kubernetes/deployment.yaml, the Secrets'
    values from `secrets`; ACP_LISTEN on `listen` (the pod's 0.0.0.0:7070 is the host's here)."""
    [container] = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["containers"]
    argv = []
    for var in container["env"]:
        if var["name"] == "ACP_LISTEN":
            value = listen
        elif "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            value = secrets[(ref["name"], ref["key"])]
        else:
            value = var["value"]
        argv += ["-e", f"{var['name']}={value}"]
    return argv


def test_two_replicas_with_the_deployments_settings_on_postgresql(pulled: tuple[Podman, str], postgres_url: str,
                                                                   tmp_path: Path) -> None:
    """Two containers of the image with the Deployment's environment (its Secrets filled in),
    its read-only root and no capabilities, and the signing key mounted read-only the way the
    Secret volume is (mode 0440, group 65532, no data volume): both get ready on one
    PostgreSQL database, records ingested through one are exported through the other, and
    `verify` passes on the database with the shared key."""
    podman, image = pulled
    keys = tmp_path / "signing-key"
    keys.mkdir()
    os.chown(keys, 65532, 65532)
    podman("run", "--rm", "--network", "none", "-v", f"{keys}:/keys", image, "key", "show",
           "--signing-key", "/keys/signing-key")
    os.chown(keys, 0, 0)
    key_file = keys / "signing-key"
    os.chown(key_file, 0, 65532)
    key_file.chmod(0o440)
    [container] = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "signing-key"]
    secrets = {("acp-collector-database", "url"): postgres_url, ("acp-collector-ingest", "token"): INGEST_TOKEN}
    hardening = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "host",
                 "-v", f"{keys}:{mount['mountPath']}:ro"]
    replicas = []
    try:
        for n in range(2):
            port = free_port()
            name = f"acp-replica-{n}"
            podman("run", "--detach", "--name", name, *hardening,
                   *deployment_env(secrets, f"127.0.0.1:{port}"), image, *container["args"])
            replicas.append((name, f"http://127.0.0.1:{port}"))
        for name, url in replicas:
            wait_ready(podman, name, url)
        (_, first), (_, second) = replicas
        records = [record(n) for n in range(30, 40)]
        status, answer = http(f"{first}/v1/records", method="POST", body={"records": records}, token=INGEST_TOKEN)
        assert (status, answer) == (200, {"accepted": 10, "duplicates": 0})
        database = ["--network", "host", "-e", f"ACP_DATABASE_URL={postgres_url}"]
        created = podman("run", "--rm", *database, image, "apikey", "create", "--tenant", TENANT).stdout
        [api_key] = created.split()
        status, page = http(f"{second}/{TENANT}/api/v1/audit?limit=1000", token=api_key)
        assert status == 200, page
        assert sorted(r["id"] for r in page["records"]) == [r["id"] for r in records]
        for name, _ in replicas:
            podman("stop", "--time", "20", name)
        [vkey] = podman("run", "--rm", "--network", "none", "-v", f"{keys}:/keys:ro", image, "key", "show",
                        "--signing-key", "/keys/signing-key").stdout.split()
        verified = podman("run", "--rm", *database, image, "verify", "--public-key", vkey, ok=False)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        for name, _ in replicas:
            podman("rm", "--force", "--time", "10", name, ok=False)
