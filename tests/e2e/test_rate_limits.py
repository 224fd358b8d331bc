"""Per-user rate limits: one token bucket per user shared by all Envoy workers (concurrent calls
on connections of both workers draw from one budget), `429` + `Retry-After` + JSON-RPC -32029
over the limit with a `tool.denied` / `rate_limited` record, other users unaffected, refused
calls never drawing from the budget, and a tenant's own limit counted per tool.

The module's stack runs two workers and limits each user of org_acme_corp to a burst of 5 calls
refilled at 6 a minute (one token every 10 s, so no refill disturbs a test). Requests for host
`globex.example` belong to org_globex, whose users get 2 calls per tool refilled at 60 a minute.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from stack import Stack
from support import (
    FORBIDDEN, RATE_LIMITED, Caller, Reply, acp_counters, assert_jsonrpc_error, assert_record, call_tool, caller,
    clean_scan, counter_deltas, create_api_key, expected_record, mcp_headers, request_on, tool_call,
    wait_for_counter_deltas, wait_for_records, worker_connections,
)

BURST, PER_MINUTE = 5, 6
GLOBEX, GLOBEX_HOST, GLOBEX_BURST, GLOBEX_PER_MINUTE = "org_globex", "globex.example", 2, 60


def limits(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["rateLimits"] = {"requestsPerMinute": PER_MINUTE, "burst": BURST, "tenants": {
        GLOBEX: {"requestsPerMinute": GLOBEX_PER_MINUTE, "burst": GLOBEX_BURST, "perTool": True}}}
    cfg["tenantsByHost"] = {GLOBEX_HOST: GLOBEX}
    return cfg


@pytest.fixture(scope="module")
def limited(make_module_stack) -> Stack:
    return make_module_stack(filter_config=limits, concurrency=2)


def query(n: int) -> dict[str, str]:
    return {"query": f"SELECT Id FROM Lead LIMIT {n}"}


def assert_rate_limited(reply: Reply, *, id: Any, max_wait: int) -> None:
    assert reply.status == 429, reply.text
    assert reply.headers.get("x-envoy-upstream-service-time") is None, "answered by the upstream?"
    retry_after = reply.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= max_wait, retry_after
    assert_jsonrpc_error(reply.body, code=RATE_LIMITED, id=id, reason="rate_limited")


def call_record(who: Caller, input: Any, *, tool: str = "salesforce.query", scope: str = "salesforce:read",
                limited: bool = False, tenant: str = "org_acme_corp") -> dict[str, Any]:
    """A forwarded call's record, or (`limited`) a rate-limited one: refused before its input
    was scanned, so with no `contentScan`."""
    if limited:
        return expected_record(event="tool.denied", result="rate_limited", reason="rate_limited", tool=tool,
                               input=input, scope_required=[scope], scope_result="pass", identity=who.identity(),
                               tenant=tenant)
    return expected_record(event="tool.call", result="success", reason=None, tool=tool, input=input,
                           scope_required=[scope], scope_result="pass", identity=who.identity(), tenant=tenant,
                           content_scan=clean_scan())


def test_one_budget_across_both_workers_for_concurrent_calls(limited: Stack) -> None:
    alice, bob = caller(limited, ["salesforce:read"]), caller(limited, ["salesforce:read"])
    per_worker = 6
    by_worker = worker_connections(limited, per_worker)
    connections = [conn for conns in by_worker for conn in conns]
    calls = len(connections)
    replies: list[Reply | BaseException | None] = [None] * calls
    start = threading.Barrier(calls)
    before = acp_counters(limited)

    def fire(i: int) -> None:
        body = json.dumps(tool_call("salesforce.query", query(i), id=i)).encode()
        try:
            start.wait(timeout=10)
            replies[i] = request_on(connections[i], "POST", "/mcp", body=body, headers=mcp_headers(alice.token))
        except BaseException as e:  # noqa: BLE001 - reported below
            replies[i] = e

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(calls)]
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for conn in connections:
            conn.close()
    window = time.monotonic() - started
    assert all(isinstance(r, Reply) for r in replies), replies

    ok = [i for i, r in enumerate(replies) if r.status == 200]
    refused = [i for i, r in enumerate(replies) if r.status != 200]
    # The burst, plus one refilled token if the calls took over 10 s.
    assert BURST <= len(ok) <= BURST + (1 if window >= 60 / PER_MINUTE else 0), \
        ([r.status for r in replies], by_worker)
    for i in refused:
        assert_rate_limited(replies[i], id=i, max_wait=60 // PER_MINUTE)
    for i in ok:
        assert replies[i].body["id"] == i and replies[i].body["result"]["isError"] is False
    assert [len(conns) for conns in by_worker] == [per_worker, per_worker], "both workers got calls"

    records = {r["input"]["query"]: r for r in wait_for_records(limited, calls, user=alice.sub)}
    assert len(records) == calls, records
    for i, reply in enumerate(replies):
        assert_record(records[query(i)["query"]], call_record(alice, query(i), limited=i in refused), reply,
                      forwarded=i in ok)
    expected = {"calls_rate_limited": len(refused), "calls_allowed": len(ok)}
    after = wait_for_counter_deltas(limited, before, expected)
    assert counter_deltas(before, after, *expected) == expected

    # Another user of the same tenant has a budget of their own.
    reply = call_tool(limited, bob.token, "salesforce.query", query(99))
    assert reply.status == 200, reply.text
    assert_record(wait_for_records(limited, 1, user=bob.sub)[0], call_record(bob, query(99)), reply, forwarded=True)


def test_refused_calls_do_not_draw_from_the_budget(limited: Stack) -> None:
    carol = caller(limited, ["files:read"])
    for n in range(BURST + 2):
        reply = call_tool(limited, carol.token, "salesforce.query", query(n), id=n)
        assert reply.status == 403, reply.text
        assert_jsonrpc_error(reply.body, code=FORBIDDEN, id=n, reason="insufficient_scope")
    for n in range(BURST):
        reply = call_tool(limited, carol.token, "files.read", {"path": "README.md"}, id=n)
        assert reply.status == 200, f"call {n}: {reply.text}"
    assert_rate_limited(call_tool(limited, carol.token, "files.read", {"path": "README.md"}, id="last"), id="last",
                        max_wait=60 // PER_MINUTE)
    records = wait_for_records(limited, 2 * BURST + 3, user=carol.sub)
    assert sorted(r["result"] for r in records) == ["denied"] * (BURST + 2) + ["rate_limited"] + ["success"] * BURST


def test_tenant_limit_per_tool_refills_at_its_rate(limited: Stack) -> None:
    api_key = create_api_key(limited, GLOBEX)
    dana = caller(limited, ["salesforce:read", "files:read"], org_id=GLOBEX)
    host = {"Host": GLOBEX_HOST}

    def call(tool: str, args: dict[str, str], id: Any) -> Reply:
        return call_tool(limited, dana.token, tool, args, id=id, headers=host)

    first = [call("salesforce.query", query(n), n) for n in range(GLOBEX_BURST)]
    over = call("salesforce.query", query(GLOBEX_BURST), "over")
    other_tool = call("files.read", {"path": "README.md"}, "files")
    time.sleep(60 / GLOBEX_PER_MINUTE + 0.1)  # one token refilled
    refilled = call("salesforce.query", query(GLOBEX_BURST + 1), "refilled")

    assert [r.status for r in first] == [200] * GLOBEX_BURST, [r.text for r in first]
    assert_rate_limited(over, id="over", max_wait=1)
    assert other_tool.status == 200, "perTool: files.read has a bucket of its own"
    assert refilled.status == 200, refilled.text

    records = wait_for_records(limited, GLOBEX_BURST + 3, user=dana.sub, tenant=GLOBEX, api_key=api_key)
    assert len(records) == GLOBEX_BURST + 3, records
    by_input = {json.dumps(r["input"], sort_keys=True): r for r in records}
    assert_record(by_input[json.dumps(query(GLOBEX_BURST))],
                  call_record(dana, query(GLOBEX_BURST), limited=True, tenant=GLOBEX), over)
    assert_record(by_input[json.dumps({"path": "README.md"})],
                  call_record(dana, {"path": "README.md"}, tool="files.read", scope="files:read", tenant=GLOBEX),
                  other_tool, forwarded=True)
    assert [by_input[json.dumps(query(n))]["result"] for n in (0, 1, 3)] == ["success"] * 3
