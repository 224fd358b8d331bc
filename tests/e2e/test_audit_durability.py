"""No audit record is lost or stored twice when the collector is down, killed mid-ingest, or when
Envoy's listener is replaced under load; with `auditFailureMode: closed`, calls whose records
cannot be buffered are refused instead ("no audit, no action").

Every tool call carries a distinct input value, so its record is found by that value: each
one must be stored exactly once."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from idp import demo_idp
from stack import Stack
from support import (
    AUDIT_UNAVAILABLE, acp_counters, assert_jsonrpc_error, assert_unique_ids, call_tool, caller, collector_cli,
    counter_deltas, envoy, fetch_records, http_request, mcp_headers, request_on, rfc3339_ms, tool_call,
    upstream_requests, wait_for_counter_deltas, wait_for_records, worker_connections,
)

OUTAGE_SECONDS = 30
OUTAGE_CALLS = 2000
CLIENTS = 8
# The collector's ingest API (`acp_record::INGEST_PATH`).
INGEST_PATH = "/v1/records"


def quick_retries(cfg: dict[str, Any], **audit: Any) -> dict[str, Any]:
    """The filter retries a failed batch at least every second (the default cap is 30 s), so a
    test sees delivery soon after the collector is back; no per-user rate limit (the tests make
    thousands of calls as one user)."""
    cfg["audit"].update({"maxRetryDelayMs": 1000, **audit})
    cfg.pop("rateLimits", None)
    return cfg


def inputs_of(records: list[dict[str, Any]]) -> Counter[str]:
    """How many records there are of each call (its `input.query`)."""
    return Counter(r["input"]["query"] for r in records)


def wait_until_delivered(stack: Stack, before: dict[str, int], count: int, timeout: float = 60) -> dict[str, int]:
    """Waits until `count` more records were acknowledged and none waits; returns the counters."""
    wait_for_counter_deltas(stack, before, {"audit_records_sent": count}, timeout=timeout)
    deadline = time.monotonic() + timeout
    while (after := acp_counters(stack))["audit_records_buffered"] != 0:
        assert time.monotonic() < deadline, f"records still buffered: {after}"
        time.sleep(0.1)
    return after


def test_2000_calls_during_a_30_s_collector_outage_are_all_stored_exactly_once(make_stack) -> None:
    stack = make_stack(filter_config=quick_retries).start()
    alice = caller(stack, ["salesforce:read"])
    before = acp_counters(stack)

    stack.stop_collector()
    stopped = time.monotonic()
    queries = [f"outage call {i}" for i in range(OUTAGE_CALLS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(lambda q: call_tool(stack, alice.token, "salesforce.query", {"query": q}).status,
                                 queries))
    assert Counter(statuses) == {200: OUTAGE_CALLS}
    during = wait_for_counter_deltas(stack, before, {"audit_records_queued": OUTAGE_CALLS,
                                                     "audit_records_buffered": OUTAGE_CALLS})
    assert during["audit_records_buffered"] == OUTAGE_CALLS, during
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    stack.start_collector()

    after = wait_until_delivered(stack, before, OUTAGE_CALLS)
    records = wait_for_records(stack, OUTAGE_CALLS, user=alice.sub, timeout=30)
    assert_unique_ids(records)
    assert inputs_of(records) == Counter(queries), "every call stored exactly once"
    assert all(r["result"] == "success" for r in records)
    deltas = counter_deltas(before, after, "audit_records_queued", "audit_records_sent", "audit_records_dropped")
    assert deltas == {"audit_records_queued": OUTAGE_CALLS, "audit_records_sent": OUTAGE_CALLS,
                      "audit_records_dropped": 0}
    assert after["audit_records_retried"] > before.get("audit_records_retried", 0)


# ---- The collector killed in the middle of ingest ------------------------------------------


def direct_record(sub: str) -> dict[str, Any]:
    """A valid record, as a client of the ingest API other than the filter would post it."""
    return {"id": str(uuid.uuid4()), "event": "tool.call", "timestamp": rfc3339_ms(time.time()), "sub": sub,
            "email": None, "tool": "ingest.direct", "input": None, "scopes": [], "scopeRequired": None,
            "scopeResult": None, "contentScan": None, "result": "success", "reason": None, "latencyMs": 1.0,
            "tenantId": "org_acme_corp", "clientType": None, "clientId": None, "delegationChain": None}


class Load:
    """Client threads that repeat `step(client, n)` until `stop()`; `step` returns True when it
    completed something (counted in `done`)."""

    def __init__(self, clients: int, step: Callable[[int, int], bool]):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.done = 0
        self.errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run, args=(c, step)) for c in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self, client: int, step: Callable[[int, int], bool]) -> None:
        n = 0
        try:
            while not self._stop.is_set():
                if step(client, n):
                    n += 1
                    with self._lock:
                        self.done += 1
        except BaseException as err:  # reported by stop()
            self.errors.append(err)

    def wait_for(self, done: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.done < done:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"{self.done} of {done} steps done"
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not self.errors, self.errors


class IngestClients:
    """Clients posting batches straight to the collector's ingest API, each batch retried until
    it gets a 2xx (as the filter does). `acked` holds the ids of acknowledged batches."""

    BATCH = 50

    def __init__(self, stack: Stack, sub: str):
        self.stack, self.sub = stack, sub
        self.acked: list[list[str]] = []
        self.failed_posts = 0

    def step(self, _client: int, _n: int) -> bool:
        batch = [direct_record(self.sub) for _ in range(self.BATCH)]
        body = json.dumps({"records": batch}).encode()
        headers = {"Authorization": f"Bearer {self.stack.ingest_token}", "Content-Type": "application/json"}
        while True:
            try:
                reply = http_request(("127.0.0.1", self.stack.ports.collector), "POST", INGEST_PATH, body=body,
                                     headers=headers, timeout=10)
                if 200 <= reply.status < 300:
                    assert reply.body["accepted"] + reply.body["duplicates"] == self.BATCH, reply.text
                    self.acked.append([r["id"] for r in batch])
                    return True
            except (OSError, http.client.HTTPException):
                pass
            self.failed_posts += 1
            time.sleep(0.05)


class ToolCalls:
    """Tool calls through Envoy, each with a distinct input; `answered` maps each input to the
    HTTP status it got, `unanswered` lists those that got no HTTP answer. Odd-numbered clients
    keep their connection open from call to call, the others open one per call."""

    def __init__(self, stack: Stack, token: str, prefix: str):
        self.stack, self.token, self.prefix = stack, token, prefix
        self.answered: dict[str, int] = {}
        self.unanswered: list[str] = []
        self._connections: dict[int, http.client.HTTPConnection] = {}

    def step(self, client: int, n: int) -> bool:
        query = f"{self.prefix} {client}-{n}"
        try:
            if client % 2:
                conn = self._connections.setdefault(client, http.client.HTTPConnection(*envoy(self.stack), timeout=15))
                body = json.dumps(tool_call("salesforce.query", {"query": query})).encode()
                reply = request_on(conn, "POST", "/mcp", body=body, headers=mcp_headers(self.token))
            else:
                reply = call_tool(self.stack, self.token, "salesforce.query", {"query": query})
            self.answered[query] = reply.status
        except (OSError, http.client.HTTPException):
            self.unanswered.append(query)
            if client in self._connections:
                self._connections.pop(client).close()
        return True

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()


def test_collector_killed_mid_ingest_keeps_every_acknowledged_batch_once(make_stack) -> None:
    stack = make_stack(filter_config=quick_retries).start()
    alice = caller(stack, ["salesforce:read"])
    before = acp_counters(stack)
    ingest = IngestClients(stack, f"ingest-{uuid.uuid4().hex[:12]}")
    calls = ToolCalls(stack, alice.token, "kill call")
    direct, through_envoy = Load(4, ingest.step), Load(2, calls.step)
    try:
        direct.wait_for(20)
        through_envoy.wait_for(20)
        stack.kill_collector()
        acked_before_kill = list(ingest.acked)
        time.sleep(1)
        stack.start_collector()
        direct.wait_for(len(acked_before_kill) + 20)
    finally:
        direct.stop()
        through_envoy.stop()
        calls.close()

    assert ingest.failed_posts > 0, "some posts must have met the killed collector"
    stored = wait_for_records(stack, len(ingest.acked) * IngestClients.BATCH, user=ingest.sub, timeout=30)
    assert_unique_ids(stored)
    stored_ids = Counter(r["id"] for r in stored)
    assert all(stored_ids[i] == 1 for ids in acked_before_kill for i in ids), "an acknowledged batch was lost"
    assert stored_ids == Counter(i for ids in ingest.acked for i in ids)

    assert not calls.unanswered and set(calls.answered.values()) == {200}, calls.unanswered
    after = wait_until_delivered(stack, before, len(calls.answered))
    records = wait_for_records(stack, len(calls.answered), user=alice.sub, timeout=30)
    assert_unique_ids(records)
    assert inputs_of(records) == Counter(list(calls.answered))
    assert after["audit_records_dropped"] == before.get("audit_records_dropped", 0)

    # The killed ingest left the tamper-evident log whole: stopping signs the last checkpoint,
    # and `verify` checks every leaf, root and signature.
    stack.stop_collector()
    key = collector_cli("key", "show", "--db", str(stack.db_path)).stdout.strip()
    done = collector_cli("verify", "--db", str(stack.db_path), "--public-key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{stack.tenant}: ok: " in done.stdout, done.stdout


# ---- auditFailureMode: closed --------------------------------------------------------------

BUFFER = 3


def closed_mode(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["auditFailureMode"] = "closed"
    return quick_retries(cfg, maxBufferedRecords=BUFFER)


def test_closed_mode_refuses_calls_while_records_cannot_be_buffered_and_recovers(make_stack) -> None:
    stack = make_stack(filter_config=closed_mode).start()
    alice = caller(stack, ["salesforce:read"])
    by_worker = [conns[0] for conns in worker_connections(stack, 1)]
    before = acp_counters(stack)

    def call(conn: http.client.HTTPConnection, query: str, token: str | None = alice.token) -> Any:
        body = json.dumps(tool_call("salesforce.query", {"query": query}, id=query)).encode()
        return request_on(conn, "POST", "/mcp", body=body, headers=mcp_headers(token))

    stack.stop_collector()
    try:
        for w, conn in enumerate(by_worker):
            for i in range(BUFFER):
                assert call(conn, f"closed {w}-{i}").status == 200
        forwarded = upstream_requests(stack)
        refused = [(conn, f"refused {w}") for w, conn in enumerate(by_worker)]
        for conn, query in refused:
            reply = call(conn, query)
            assert reply.status == 503, reply.text
            assert reply.headers.get("Retry-After") == "5"
            assert_jsonrpc_error(reply.body, code=AUDIT_UNAVAILABLE, id=query, reason="audit_unavailable")
            # A failed authentication would be recorded too: without room it is refused as well.
            anonymous = call(conn, f"{query} anonymous", token=None)
            assert anonymous.status == 503, anonymous.text
        assert upstream_requests(stack) == forwarded, "a refused call reached the MCP server"
        during = acp_counters(stack)
        buffered = BUFFER * len(by_worker)
        assert during["audit_records_buffered"] == buffered
        assert counter_deltas(before, during, "calls_refused_audit_unavailable", "audit_records_dropped") == {
            "calls_refused_audit_unavailable": 2 * len(by_worker), "audit_records_dropped": 0}

        stack.start_collector()
        wait_until_delivered(stack, before, buffered)
        for w, conn in enumerate(by_worker):
            assert call(conn, f"after {w}").status == 200
    finally:
        for conn in by_worker:
            conn.close()

    expected = [f"closed {w}-{i}" for w in range(len(by_worker)) for i in range(BUFFER)]
    expected += [f"after {w}" for w in range(len(by_worker))]
    records = wait_for_records(stack, len(expected), user=alice.sub)
    assert inputs_of(records) == Counter(expected), "refused calls leave no record; admitted ones exactly one"
    assert not [r for r in fetch_records(stack, result="auth_failed") if "anonymous" in json.dumps(r["input"])]


# ---- Envoy's listener replaced under load --------------------------------------------------

RELOADS = 3
DRAINING = "listener_manager.total_filter_chains_draining"


def generation(n: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Configuration number `n`: a new policy each time, so every reload replaces the filter's
    configuration (and its per-worker plugin state); inline keys, so it verifies at once."""
    def apply(cfg: dict[str, Any]) -> dict[str, Any]:
        cfg["identity"]["jwks"] = {"inline": demo_idp.jwks()}
        cfg["tools"][f"reload.generation_{n}"] = ["reload:test"]
        return quick_retries(cfg)
    return apply


def test_listener_reloads_under_load_lose_and_duplicate_no_record(make_stack) -> None:
    stack = make_stack(lds=True, drain_seconds=2, filter_config=generation(0)).start()
    alice = caller(stack, ["salesforce:read"])
    before = acp_counters(stack)
    calls = ToolCalls(stack, alice.token, "reload call")
    load = Load(4, calls.step)
    try:
        for n in range(1, RELOADS + 1):
            load.wait_for(n * 100)
            stack.reload_listeners(generation(n))
        load.wait_for((RELOADS + 1) * 100)
    finally:
        load.stop()
        calls.close()

    assert not calls.unanswered, f"{len(calls.unanswered)} calls got no answer: {calls.unanswered[:5]}"
    assert set(calls.answered.values()) == {200}, Counter(calls.answered.values())
    after = wait_until_delivered(stack, before, len(calls.answered))
    records = wait_for_records(stack, len(calls.answered), user=alice.sub, timeout=30)
    assert_unique_ids(records)
    assert inputs_of(records) == Counter(list(calls.answered))
    assert counter_deltas(before, after, "audit_records_sent", "audit_records_dropped") == {
        "audit_records_sent": len(calls.answered), "audit_records_dropped": 0}


def test_a_replaced_configuration_delivers_its_buffered_records_before_it_ends(make_stack) -> None:
    stack = make_stack(lds=True, drain_seconds=1, filter_config=generation(0)).start()
    alice = caller(stack, ["salesforce:read"])
    before = acp_counters(stack)
    stack.stop_collector()
    queries = [f"replaced {i}" for i in range(20)]
    for query in queries[:10]:
        assert call_tool(stack, alice.token, "salesforce.query", {"query": query}).status == 200
    stack.reload_listeners(generation(1))
    for query in queries[10:]:
        assert call_tool(stack, alice.token, "salesforce.query", {"query": query}).status == 200
    # The first configuration's filter chain drains for a second, then its plugin is removed
    # with its records still waiting for the collector (the filter logs it).
    deadline = time.monotonic() + 30
    while "plugin removed with" not in stack.log_path("envoy").read_text():
        assert time.monotonic() < deadline, stack.tail("envoy")
        time.sleep(0.1)
    assert stack.stats(DRAINING).get(DRAINING) == 0
    assert acp_counters(stack)["audit_records_buffered"] == len(queries)
    stack.start_collector()

    wait_until_delivered(stack, before, len(queries))
    records = wait_for_records(stack, len(queries), user=alice.sub, timeout=30)
    assert inputs_of(records) == Counter(queries)


def test_large_inputs_under_a_tiny_buffer_shed_their_input_and_every_call_keeps_its_record(make_stack) -> None:
    """Inputs over `audit.maxInputBytes` are stored truncated; with the collector down and a
    buffer of 24,000 bytes, records shed their inputs (size and SHA-256 kept) rather than being
    dropped: every call has its record once the collector is back."""
    max_input = 4096
    stack = make_stack(concurrency=1, filter_config=lambda cfg: quick_retries(
        cfg, maxBufferedBytes=24_000, maxInputBytes=max_input)).start()
    alice = caller(stack, ["salesforce:read"])
    before = acp_counters(stack)
    stack.stop_collector()
    small = {"query": "small input kept whole"}
    assert call_tool(stack, alice.token, "salesforce.query", small).status == 200
    sent = {}
    for i in range(8):
        args = {"query": f"large {i} " + "Globex renewal closes 2026-03-27, stage 4. " * 500}
        text = json.dumps(args, separators=(",", ":"))
        sent[text[:40]] = text
        assert call_tool(stack, alice.token, "salesforce.query", args).status == 200
    stack.start_collector()
    wait_until_delivered(stack, before, 1 + len(sent))
    after = acp_counters(stack)
    records = wait_for_records(stack, 1 + len(sent), user=alice.sub)
    assert len(records) == 1 + len(sent)
    assert [r["input"] for r in records if r["inputSummary"] is None] == [small]

    reasons = Counter()
    for record in (r for r in records if r["inputSummary"] is not None):
        summary = record["inputSummary"]
        assert record["input"] is None
        reasons[summary["reason"]] += 1
        if summary["reason"] == "truncated":
            assert len(summary["prefix"]) == max_input
            text = sent[summary["prefix"][:40]]
            assert summary["prefix"] == text[:max_input]
        else:
            assert summary["reason"] == "buffer_pressure" and "prefix" not in summary, summary
            [text] = [t for t in sent.values() if hashlib.sha256(t.encode()).hexdigest() == summary["sha256"]]
        assert summary["bytes"] == len(text.encode())
        assert summary["sha256"] == hashlib.sha256(text.encode()).hexdigest()
        del sent[text[:40]]
    assert not sent, "every large call has its own record"
    assert reasons["truncated"] >= 1 and reasons["buffer_pressure"] >= 1, reasons
    assert counter_deltas(before, after, "audit_records_dropped", "audit_inputs_shed") == {
        "audit_records_dropped": 0, "audit_inputs_shed": reasons["buffer_pressure"]}
