"""What a deployer takes away: `make package` (the optimised module, its sha256, an OCI image
layout), the Envoy snippet, the Istio manifests and the Prometheus scrape example. The Envoy
pieces are validated by the real Envoy (`envoy --mode validate` loads the module and runs the
filter's configuration parser); the packaged module serves real calls; the Istio manifests are
checked offline (no cluster here)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stack as stack_module
import yaml
from stack import ENVOY_BIN, ROOT, Stack
from support import call_tool, caller, wait_for_records

DIST = ROOT / "dist"
MODULE = DIST / "acp_filter.wasm"
LAYOUT = DIST / "oci"
VERSION = tomllib.loads((ROOT / "filter" / "Cargo.toml").read_text())["package"]["version"]
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
METRICS_RS = ROOT / "filter" / "src" / "shell" / "metrics.rs"


def require_package() -> None:
    assert MODULE.exists() and (LAYOUT / "index.json").exists(), "run `make package` first"


def bootstrap(http_filter: dict[str, Any], clusters: list[dict[str, Any]]) -> str:
    """A minimal Envoy bootstrap around one HTTP filter and its clusters, with the module from
    `make package`."""
    http_filter = json.loads(json.dumps(http_filter))
    http_filter["typed_config"]["config"]["vm_config"]["code"] = {"local": {"filename": str(MODULE)}}
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                    "HttpConnectionManager",
           "stat_prefix": "mcp",
           "route_config": {"virtual_hosts": [{"name": "mcp", "domains": ["*"],
                                               "routes": [{"match": {"prefix": "/"},
                                                           "route": {"cluster": "mcp_server"}}]}]},
           "http_filters": [http_filter, {"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    mcp_server = {"name": "mcp_server", "type": "STATIC", "load_assignment": {"cluster_name": "mcp_server", "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}}]}]}}
    return json.dumps({"static_resources": {
        "listeners": [{"name": "mcp", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
                       "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                       "typed_config": hcm}]}]}],
        "clusters": [mcp_server, *clusters]}})


def envoy_validate(config: str, tmp_path: Path) -> str:
    """Runs `envoy --mode validate`; returns its output after asserting success."""
    path = tmp_path / "envoy.json"
    path.write_text(config)
    done = subprocess.run([str(ENVOY_BIN), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                          capture_output=True, text=True, timeout=120, check=False)
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}"


def plugin_config(http_filter: dict[str, Any]) -> dict[str, Any]:
    return json.loads(http_filter["typed_config"]["config"]["configuration"]["value"])


# ---- make package -------------------------------------------------------------------------


def blob(digest: str) -> bytes:
    algorithm, _, hex_digest = digest.partition(":")
    assert algorithm == "sha256", digest
    data = (LAYOUT / "blobs" / "sha256" / hex_digest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hex_digest, f"blob {digest} does not match its digest"
    return data


def described(descriptor: dict[str, Any]) -> bytes:
    data = blob(descriptor["digest"])
    assert len(data) == descriptor["size"], descriptor
    return data


def test_package_is_the_tested_module_with_its_digest() -> None:
    """What ships is the module the tests and the benchmark load, byte for byte."""
    require_package()
    module = MODULE.read_bytes()
    assert module[:4] == b"\0asm"
    assert (DIST / "acp_filter.wasm.sha256").read_text() == f"{hashlib.sha256(module).hexdigest()}  acp_filter.wasm\n"
    assert module == stack_module.WASM_PATH.read_bytes(), "the packaged module is not the one tested"


def test_oci_layout_digests_and_the_module_inside() -> None:
    require_package()
    assert json.loads((LAYOUT / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((LAYOUT / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == VERSION
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    manifest = json.loads(described(entry))
    assert manifest["annotations"] == {"module.wasm.image/variant": "compat"}
    config = json.loads(described(manifest["config"]))
    [layer_descriptor] = manifest["layers"]
    assert layer_descriptor["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    layer = described(layer_descriptor)
    uncompressed = gzip.decompress(layer)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(uncompressed).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(uncompressed)) as tar:
        [member] = tar.getmembers()
        assert member.name == "plugin.wasm" and member.isfile()
        inside = tar.extractfile(member).read()  # type: ignore[union-attr]
    assert inside == MODULE.read_bytes()
    stored = {p.name for p in (LAYOUT / "blobs" / "sha256").iterdir()}
    assert stored == {d["digest"].removeprefix("sha256:") for d in (entry, manifest["config"], layer_descriptor)}


def test_skopeo_reads_the_layout(tmp_path: Path) -> None:
    """An independent OCI client copies the image (checking every digest on the way)."""
    require_package()
    done = subprocess.run(["skopeo", "copy", f"oci:{LAYOUT}:{VERSION}", f"dir:{tmp_path / 'copy'}"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((tmp_path / "copy" / "manifest.json").read_text())
    layer = (tmp_path / "copy" / manifest["layers"][0]["digest"].removeprefix("sha256:")).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tar:
        assert tar.extractfile("plugin.wasm").read() == MODULE.read_bytes()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The demo stack loading the packaged module from `dist/`."""
    require_package()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack_module, "WASM_PATH", MODULE)
        with Stack(tmp_path_factory.mktemp("packaged")) as s:
            assert str(MODULE) in (s.run_dir / "envoy.yaml").read_text()
            yield s


def test_packaged_module_serves_calls_in_envoy(packaged: Stack) -> None:
    alice = caller(packaged, ["files:read"])
    assert call_tool(packaged, alice.token, "files.read", {"path": "README.md"}).status == 200
    assert call_tool(packaged, alice.token, "salesforce.query", {"query": "x"}).status == 403
    records = wait_for_records(packaged, 2, user=alice.sub)
    assert sorted((r["tool"], r["result"]) for r in records) == [("files.read", "success"),
                                                                 ("salesforce.query", "denied")]


def test_prometheus_example_scrapes_every_filter_counter(packaged: Stack) -> None:
    """Every counter `metrics.rs` defines is at `/stats/prometheus` as `acp_<name>`, typed as a
    counter, and kept by the example's relabelling."""
    names = re.findall(r'Counter::define\(\s*host,\s*"acp\.(\w+)"', METRICS_RS.read_text())
    assert len(names) >= 15
    jobs = yaml.safe_load((ROOT / "envoy" / "prometheus.example.yaml").read_text())["scrape_configs"]
    [job] = [j for j in jobs if j["job_name"] == "envoy-acp"]
    [keep] = job["metric_relabel_configs"]
    with urllib.request.urlopen(packaged.admin_url + job["metrics_path"], timeout=10) as response:
        scrape = response.read().decode()
    for name in names:
        assert f"# TYPE acp_{name} counter" in scrape, name
        assert re.search(rf"^acp_{name}(\{{.*\}})? \d+$", scrape, re.M), name
        assert re.fullmatch(keep["regex"], f"acp_{name}"), name


# ---- The Envoy snippet --------------------------------------------------------------------


def snippet() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "envoy" / "acp-snippet.yaml").read_text())


def test_envoy_snippet_loads_with_the_packaged_module(tmp_path: Path) -> None:
    require_package()
    pieces = snippet()
    [acp] = pieces["http_filters"]
    assert acp["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True
    cluster_names = {c["name"] for c in pieces["clusters"]}
    config = plugin_config(acp)
    assert {config["audit"]["cluster"], config["identity"]["jwks"]["remote"]["cluster"]} == cluster_names
    out = envoy_validate(bootstrap(acp, pieces["clusters"]), tmp_path)
    assert out.startswith("exit 0") and "OK" in out, out


def test_envoy_snippet_validation_runs_the_filter_parser(tmp_path: Path) -> None:
    require_package()
    pieces = snippet()
    [acp] = pieces["http_filters"]
    config = plugin_config(acp)
    config["audit"]["batchSize"] = 0
    acp["typed_config"]["config"]["configuration"]["value"] = json.dumps(config)
    out = envoy_validate(bootstrap(acp, pieces["clusters"]), tmp_path)
    assert not out.startswith("exit 0")
    assert "invalid plugin configuration: audit.batchSize" in out, out


# ---- Istio --------------------------------------------------------------------------------

ISTIO_KINDS = {
    "ServiceEntry": ("networking.istio.io/v1", ("hosts", "ports", "resolution", "location")),
    "DestinationRule": ("networking.istio.io/v1", ("host", "trafficPolicy")),
    "EnvoyFilter": ("networking.istio.io/v1alpha3", ("workloadSelector", "configPatches")),
}


def istio_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "envoy" / "istio" / "acp.yaml").read_text()) if d]


def test_istio_manifests_are_well_formed() -> None:
    docs = istio_documents()
    assert sorted(d["kind"] for d in docs) == ["DestinationRule", "DestinationRule", "EnvoyFilter",
                                               "ServiceEntry", "ServiceEntry"]
    for doc in docs:
        api_version, required = ISTIO_KINDS[doc["kind"]]
        assert doc["apiVersion"] == api_version, doc["kind"]
        assert doc["metadata"]["name"] and doc["metadata"]["namespace"], doc["metadata"]
        assert all(field in doc["spec"] for field in required), (doc["kind"], required)
    [envoy_filter] = [d for d in docs if d["kind"] == "EnvoyFilter"]
    extension, placement = envoy_filter["spec"]["configPatches"]
    assert (extension["applyTo"], extension["patch"]["operation"]) == ("EXTENSION_CONFIG", "ADD")
    assert (placement["applyTo"], placement["patch"]["operation"]) == ("HTTP_FILTER", "INSERT_BEFORE")
    assert placement["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    assert extension["match"]["context"] == placement["match"]["context"] == "SIDECAR_INBOUND"
    value = extension["patch"]["value"]
    assert placement["patch"]["value"]["name"] == value["name"], "the filter must name the extension it loads"
    assert placement["patch"]["value"]["config_discovery"]["type_urls"] == [value["typed_config"]["@type"]] == [WASM_TYPE]
    wasm = value["typed_config"]["config"]
    assert wasm["allow_on_headers_stop_iteration"] is True
    assert wasm["vm_config"]["code"]["remote"]["http_uri"]["uri"].startswith("oci://")


def test_istio_clusters_are_the_ones_the_service_entries_create() -> None:
    """Istio names the cluster of a ServiceEntry `outbound|<port>||<host>`; the plugin
    configuration must use those names, and TLS must be originated for them."""
    docs = istio_documents()
    [envoy_filter] = [d for d in docs if d["kind"] == "EnvoyFilter"]
    config = plugin_config(envoy_filter["spec"]["configPatches"][0]["patch"]["value"])
    created = {f"outbound|{port['number']}||{host}" for d in docs if d["kind"] == "ServiceEntry"
               for host in d["spec"]["hosts"] for port in d["spec"]["ports"]}
    used = {config["audit"]["cluster"], config["identity"]["jwks"]["remote"]["cluster"]}
    assert used == created
    tls_hosts = {d["spec"]["host"] for d in docs if d["kind"] == "DestinationRule"
                 if d["spec"]["trafficPolicy"]["tls"]["mode"] == "SIMPLE"}
    assert tls_hosts == {name.rsplit("|", 1)[1] for name in created}


def test_istio_plugin_configuration_loads_in_envoy(tmp_path: Path) -> None:
    """The EnvoyFilter's extension, rendered as a plain HTTP filter with the packaged module
    and stand-ins for the Istio-generated clusters, passes `envoy --mode validate`."""
    require_package()
    [envoy_filter] = [d for d in istio_documents() if d["kind"] == "EnvoyFilter"]
    value = envoy_filter["spec"]["configPatches"][0]["patch"]["value"]
    config = plugin_config(value)
    clusters = [{"name": name, "type": "STRICT_DNS", "load_assignment": {"cluster_name": name, "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": name.rsplit("|", 1)[1], "port_value": 443}}}}]}]}}
        for name in (config["audit"]["cluster"], config["identity"]["jwks"]["remote"]["cluster"])]
    out = envoy_validate(bootstrap({"name": value["name"], "typed_config": value["typed_config"]}, clusters), tmp_path)
    assert out.startswith("exit 0") and "OK" in out, out
