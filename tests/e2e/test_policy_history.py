"""Policy history (CC8.1) end to end: every VM of the real Envoy sends the reviewable policy
document of the configuration it loads; the collector stores each distinct version once per
tenant, serves it field by field without the ingest token, and names exactly the paths a listener
update changed.
"""

from __future__ import annotations

import copy
import subprocess
import time
from typing import Any

import pytest

from stack import COLLECTOR_BIN, ROOT, Stack
from support import RECORD_WAIT, acp_counters, http_request, parse_csv


def api(stack: Stack, path: str) -> Any:
    reply = http_request(("127.0.0.1", stack.ports.collector), "GET", f"/{stack.tenant}/api/v1/policies{path}",
                         headers={"Authorization": f"Bearer {stack.api_key}"})
    assert reply.status == 200, reply.text
    return reply


def wait_for_versions(stack: Stack, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + RECORD_WAIT
    while True:
        policies = api(stack, "").body["policies"]
        if len(policies) >= count or time.monotonic() > deadline:
            return policies
        time.sleep(0.1)


@pytest.fixture(scope="module")
def lds_stack(make_module_stack: Any) -> Stack:
    return make_module_stack(lds=True)


def test_startup_config_is_version_1_with_its_reviewable_parts(lds_stack: Stack) -> None:
    stack = lds_stack
    config = stack.filter_config()
    policies = wait_for_versions(stack, 1)
    assert [p["version"] for p in policies] == [1], policies
    assert policies[0]["hash"].startswith("sha256:") and policies[0]["changes"] == []

    reply = api(stack, "/1")
    assert stack.ingest_token not in reply.text
    doc = reply.body["policy"]
    assert reply.body["hash"] == policies[0]["hash"]
    assert doc["tenants"] == [stack.tenant]
    assert doc["tools"] == config["tools"]
    assert doc["rateLimits"] == config["rateLimits"]
    identity = doc["identity"]
    assert identity["issuer"] == stack.issuer
    assert identity["audiences"] == [stack.audience]
    assert identity["keySource"] == {"kind": "remote", **config["identity"]["jwks"]["remote"]}
    assert identity["claims"]["tenant"] == ["org_id"]
    assert identity["claims"]["subject"] == ["sub"]
    assert identity["clientTypes"] == config["identity"]["clientTypes"]
    assert identity["preset"] is None
    assert doc["scanning"]["input"]["ssn"] == "block" and doc["scanning"]["output"]["ssn"] == "redact"
    assert [r["detector"] for r in doc["immutableRules"]] == ["ssn", "payment_card", "ssrf"]
    assert all(r["input"] == "block" for r in doc["immutableRules"])
    assert doc["auditFailureMode"] == "open"
    assert doc["filterToolsList"] is True
    assert doc["audit"] == {"cluster": "acp_collector"}

    # Every VM (each worker and the main thread) delivered the same document: stored once.
    deadline = time.monotonic() + RECORD_WAIT
    while acp_counters(stack).get("policy_versions_sent", 0) < stack.concurrency and time.monotonic() < deadline:
        time.sleep(0.1)
    assert acp_counters(stack).get("policy_versions_sent", 0) >= stack.concurrency
    assert acp_counters(stack).get("policy_versions_dropped", 0) == 0
    assert [p["version"] for p in api(stack, "").body["policies"]] == [1]


def test_listener_update_is_version_2_and_the_diff_names_the_changed_paths(lds_stack: Stack) -> None:
    stack = lds_stack
    wait_for_versions(stack, 1)
    config = copy.deepcopy(stack.filter_config())
    config["tools"]["salesforce.query"] = ["salesforce:read", "salesforce:admin"]
    del config["tools"]["files.read"]
    config["tools"]["docs.search"] = ["docs:read"]
    config["audit"]["ingestToken"] = stack.ingest_token  # unchanged secret, never stored
    stack.reload_listeners(config)

    policies = wait_for_versions(stack, 2)
    assert [p["version"] for p in policies] == [2, 1], policies
    expected = {
        'tools["docs.search"]': (None, ["docs:read"]),
        'tools["files.read"]': (["files:read"], None),
        'tools["salesforce.query"]': (["salesforce:read"], ["salesforce:read", "salesforce:admin"]),
    }
    assert policies[0]["changes"] == sorted(expected)
    changes = api(stack, "/2/diff?against=1").body["changes"]
    assert {c["path"]: (c["before"], c["after"]) for c in changes} == expected
    back = api(stack, "/1/diff?against=2").body["changes"]
    assert {c["path"]: (c["after"], c["before"]) for c in back} == expected

    rows = parse_csv(api(stack, "/export?format=csv").text)
    assert [(r["version"], r["path"]) for r in rows] == [("1", ""), *(("2", p) for p in sorted(expected))]
    history = api(stack, "/export").body["policies"]
    assert [h["version"] for h in history] == [1, 2]
    assert history[1]["policy"]["tools"] == config["tools"]

    argv = [str(COLLECTOR_BIN), "verify", "--db", str(stack.db_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 policy versions" in done.stdout, done.stdout


def test_bad_requests_are_refused_with_a_reason(lds_stack: Stack) -> None:
    stack = lds_stack
    collector = ("127.0.0.1", stack.ports.collector)
    reply = http_request(collector, "GET", f"/{stack.tenant}/api/v1/policies/0",
                         headers={"Authorization": f"Bearer {stack.api_key}"})
    assert reply.status == 400 and "expected an integer from 1" in reply.body["error"]
    reply = http_request(collector, "GET", f"/{stack.tenant}/api/v1/policies/99",
                         headers={"Authorization": f"Bearer {stack.api_key}"})
    assert reply.status == 404 and reply.body["error"] == "no policy version 99"
    reply = http_request(collector, "GET", "/org_other/api/v1/policies",
                         headers={"Authorization": f"Bearer {stack.api_key}"})
    assert reply.status == 403
    forged = b'{"records": [{"hash": "sha256:00", "policy": {"tenants": ["org_acme_corp"]}}]}'
    reply = http_request(collector, "POST", "/v1/policies", body=forged,
                         headers={"Authorization": f"Bearer {stack.ingest_token}", "content-type": "application/json"})
    assert reply.status == 400 and "does not match the policy document" in reply.body["error"]
    reply = http_request(collector, "POST", "/v1/policies", body=forged, headers={"content-type": "application/json"})
    assert reply.status == 401
