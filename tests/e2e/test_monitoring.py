"""Monitoring with a real Prometheus (Debian's `prometheus`, installed by `make test-e2e`): it
scrapes the stack's collector (`/metrics`) and Envoy (`/stats/prometheus`) with the jobs of
`envoy/prometheus.example.yaml` and evaluates `envoy/prometheus-alerts.example.yaml`; the
test asks its HTTP API for the series that the tool calls moved."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from stack import ROOT, Stack, free_port
from support import call_tool, caller, wait_for_records

SCRAPE_CONFIG = ROOT / "envoy" / "prometheus.example.yaml"
ALERT_RULES = ROOT / "envoy" / "prometheus-alerts.example.yaml"
WAIT = 60.0  # seconds: Prometheus scrapes and evaluates every second here


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: `make test-e2e` installs Debian's prometheus package"
    return path


def config_for(stack: Stack) -> dict[str, Any]:
    """The example scrape jobs pointed at `stack`, scraping every second, with the alert rules."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    targets = {"envoy-acp": stack.ports.admin, "acp-collector": stack.ports.collector}
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job["scrape_interval"] = "1s"
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    return {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERT_RULES)], **config}


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus scraping `stack`; yields its base URL."""
    binary = tool("prometheus")
    run_dir = tmp_path_factory.mktemp("prometheus")
    config = run_dir / "prometheus.yml"
    config.write_text(yaml.safe_dump(config_for(stack)))
    checked = subprocess.run([tool("promtool"), "check", "config", str(config)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    log = (run_dir / "prometheus.log").open("wb")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={run_dir / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while not ready(url):
            assert proc.poll() is None, (run_dir / "prometheus.log").read_text()
            assert time.monotonic() < deadline, (run_dir / "prometheus.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def api(url: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}/api/v1/{path}{query}", timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def query(url: str, promql: str) -> dict[str, float]:
    """An instant query: each series' value by its job."""
    return {r["metric"].get("job", ""): float(r["value"][1])
            for r in api(url, "query", query=promql)["result"]}


def wait_for_values(url: str, want: dict[str, dict[str, float]]) -> None:
    """Polls until every query of `want` answers exactly its values (by job)."""
    deadline = time.monotonic() + WAIT
    while True:
        got = {promql: query(url, promql) for promql in want}
        if got == want:
            return
        assert time.monotonic() < deadline, f"Prometheus has {got}, expected {want}"
        time.sleep(0.5)


def test_alert_rules_are_valid() -> None:
    checked = subprocess.run([tool("promtool"), "check", "rules", str(ALERT_RULES)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_scrapes_the_collector_and_envoy(stack: Stack, prometheus: str) -> None:
    wait_for_values(prometheus, {"up": {"envoy-acp": 1.0, "acp-collector": 1.0}})
    alice = caller(stack, ["salesforce:read"])
    calls = 3
    for i in range(calls):
        assert call_tool(stack, alice.token, "salesforce.query", {"query": f"SELECT {i}"}).status == 200
    wait_for_records(stack, calls, user=alice.sub)

    collector, envoy = {"acp-collector": float(calls)}, {"envoy-acp": float(calls)}
    wait_for_values(prometheus, {
        'acp_collector_ingest_records_total{outcome="accepted"}': collector,
        'acp_collector_ingest_records_total{outcome="rejected"}': {"acp-collector": 0.0},
        f'acp_collector_tree_size{{tenant="{stack.tenant}"}}': collector,
        "acp_calls_allowed": envoy,
        "acp_audit_records_sent": envoy,
        "acp_audit_records_dropped": {"envoy-acp": 0.0},
        "acp_collector_writer_up": {"acp-collector": 1.0},
        "acp_collector_store_up": {"acp-collector": 1.0},
    })
    # The filter posts in batches: at least one ingest request, each timed.
    batches = query(prometheus, 'sum(acp_collector_ingest_requests_total{code="200"})')
    latency = query(prometheus, "sum(acp_collector_ingest_batch_duration_seconds_count)")
    assert batches == latency and 1 <= batches[""] <= calls, (batches, latency)


def test_every_alert_rule_evaluates_without_error(prometheus: str) -> None:
    names = {rule["alert"] for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]
             for rule in group["rules"]}
    deadline = time.monotonic() + WAIT
    while True:
        rules = [rule for group in api(prometheus, "rules")["groups"] for rule in group["rules"]]
        evaluated = {r["name"]: r["health"] for r in rules if r.get("lastEvaluation", "").startswith("2")}
        if set(evaluated) == names and not evaluated.keys() - names:
            break
        assert time.monotonic() < deadline, f"rules evaluated: {evaluated}"
        time.sleep(0.5)
    assert evaluated == {name: "ok" for name in names}, rules
    firing = [a for a in api(prometheus, "alerts")["alerts"] if a["state"] == "firing"]
    assert firing == [], firing
