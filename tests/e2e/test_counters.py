"""The filter's Envoy counters: each kind of call moves its counter by exactly one, and the same
values are exposed at `/stats` (`wasmcustom.acp.*`) and `/stats/prometheus` (`acp_*`)."""

from __future__ import annotations

import re
import urllib.request

from stack import Stack
from support import acp_counters, call_tool, caller, post_mcp, wait_for_counter_deltas, wait_for_records

COUNTERS = ("calls_allowed", "calls_denied", "calls_error", "auth_failed", "audit_records_queued",
            "audit_records_sent", "audit_records_retried", "audit_records_dropped", "calls_refused_audit_unavailable")


def test_each_outcome_moves_its_counter_and_prometheus_shows_the_same(stack: Stack) -> None:
    alice = caller(stack, ["salesforce:read", "salesforce:write", "files:read"], azp="claude-desktop-app")
    before = acp_counters(stack)

    assert call_tool(stack, alice.token, "salesforce.query", {"query": "SELECT Id FROM Account"}).status == 200
    assert call_tool(stack, alice.token, "salesforce.update", {"record_id": "1", "fields": {}}).status == 200
    assert call_tool(stack, alice.token, "files.read", {"path": "missing.txt"}).status == 200
    assert call_tool(stack, alice.token, "github.create_issue", {"repo": "a/b", "title": "t", "body": ""}).status == 403
    assert call_tool(stack, alice.token, "shell.exec", {"cmd": "id"}).status == 403
    assert post_mcp(stack, alice.token, b"not json").status == 400
    assert call_tool(stack, None, "salesforce.query", {"query": alice.sub}).status == 401

    expected = {"calls_allowed": 3, "calls_error": 2, "calls_denied": 3, "auth_failed": 1,
                "audit_records_queued": 7, "audit_records_sent": 7, "audit_records_retried": 0,
                "audit_records_dropped": 0, "calls_refused_audit_unavailable": 0}
    after = wait_for_counter_deltas(stack, before, expected)
    wait_for_records(stack, 6, user=alice.sub)
    after = acp_counters(stack)
    assert {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS} == expected

    with urllib.request.urlopen(f"{stack.admin_url}/stats/prometheus", timeout=5) as response:
        prometheus = response.read().decode()
    for name in COUNTERS:
        assert f"# TYPE acp_{name} counter" in prometheus, name
        match = re.search(rf"^acp_{name}(?:\{{\}})? (\d+)$", prometheus, re.MULTILINE)
        assert match, f"acp_{name} missing from /stats/prometheus"
        assert int(match.group(1)) == after[name], name
    # Once delivered, nothing waits in the buffers.
    assert "# TYPE acp_audit_records_buffered gauge" in prometheus
    assert re.search(r"^acp_audit_records_buffered(?:\{\})? 0$", prometheus, re.MULTILINE), prometheus
