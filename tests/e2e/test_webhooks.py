"""Webhooks to a SIEM, against the real collector binary and its SQLite database, with a real
HTTP receiver on loopback: records become signed deliveries (checked with the
`standardwebhooks` package), a receiver that is down gets everything afterwards, 410 disables,
replay re-sends, each format has its shape, tenants are isolated and private addresses are
refused unless allowed. The last test follows one tool call through Envoy to a delivery."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stack import Stack
from support import CORRELATION_FIELDS, call_tool, caller
from webhook_receiver import Collector, Receiver, verify_signatures, wait_until

TENANT = "org_hooks"
ALL_RECORD_EVENTS = ["tool.call", "tool.denied", "auth.failed"]
LOOPBACK = "127.0.0.0/8,::1/128"


def record(result: str = "success", *, tenant: str = TENANT, tool: str | None = "crm.query") -> dict[str, Any]:
    failed = result == "auth_failed"
    return {
        "id": str(uuid.uuid4()),
        "event": "auth.failed" if failed else "tool.call" if result in ("success", "error") else "tool.denied",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sub": None if failed else "auth0|alice",
        "email": None if failed else "alice@acme.com",
        "tool": tool,
        "input": {"q": "x"},
        "scopes": [] if failed else ["crm:read"],
        "scopeRequired": None if failed else ["crm:read"],
        "scopeResult": None if failed else "pass",
        "contentScan": None,
        "result": result,
        "reason": None if result == "success" else f"because {result}",
        "latencyMs": 12.4,
        "tenantId": tenant,
        "clientType": "claude-desktop",
        "clientId": "app",
        "delegationChain": None,
        # The correlation fields and the input summary, null as the collector stores them when a
        # filter sends none.
        **dict.fromkeys(CORRELATION_FIELDS),
        "inputSummary": None,
    }


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    c = Collector(tmp_path_factory.mktemp("webhooks"),
                  ["--webhook-allow-cidrs", LOOPBACK, "--webhook-retry-initial-ms", "100",
                   "--webhook-retry-max-ms", "400", "--checkpoint-interval", "1"])
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def key(collector: Collector) -> str:
    return collector.api_key(TENANT)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def create(collector: Collector, key: str, url: str, events: list[str] = ALL_RECORD_EVENTS, *,
           tenant: str = TENANT, **extra: Any) -> dict[str, Any]:
    status, body = collector.request("POST", f"/{tenant}/api/v1/webhooks", key=key,
                                     body={"url": url, "events": events,
                                           "batch": {"maxEvents": 10, "maxWaitMs": 100}, **extra})
    assert status == 201, body
    assert body["secret"].startswith("whsec_")
    return body


def status_of(collector: Collector, key: str, hook: dict[str, Any]) -> dict[str, Any]:
    status, body = collector.request("GET", f"/{TENANT}/api/v1/webhooks/{hook['id']}", key=key)
    assert status == 200, body
    assert "secret" not in body
    return body


def test_records_and_checkpoints_arrive_signed(collector: Collector, key: str, receiver: Receiver) -> None:
    hook = create(collector, key, receiver.url(), [*ALL_RECORD_EVENTS, "audit.checkpoint"])
    records = [record(r) for r in ("success", "error", "denied", "blocked", "rate_limited", "auth_failed")]
    collector.ingest(records)
    ids = {r["id"] for r in records}
    wait_until("every record delivered", lambda: ids <= receiver.event_ids())
    events = {e["id"]: e for d in receiver.received() for e in d.events()}
    assert [events[r["id"]]["type"] for r in records] == [
        "tool.call", "tool.call", "tool.denied", "tool.denied", "tool.denied", "auth.failed"]
    assert events[records[0]["id"]]["data"] == records[0]
    assert sorted(events[r["id"]]["seq"] for r in records) == sorted({events[r["id"]]["seq"] for r in records})
    checkpoint = wait_until("a checkpoint delivered", lambda: [
        e for d in receiver.received() for e in d.events() if e["type"] == "audit.checkpoint"])[0]
    assert checkpoint["data"]["origin"] == f"acp-collector/{TENANT}"
    assert checkpoint["data"]["note"].startswith(f"acp-collector/{TENANT}\n")
    verify_signatures(receiver.received(), hook["secret"])
    with pytest.raises(Exception):
        verify_signatures(receiver.received(), "whsec_" + "A" * 32)
    done = wait_until("no lag", lambda: (s := status_of(collector, key, hook))["lag"] == 0 and s)
    assert done["enabled"] and done["lastSuccessAt"] and done["lastError"] is None
    assert done["deliveredSeq"] == max(e["seq"] for e in events.values() if "seq" in e) + 1


def test_receiver_down_then_everything_arrives_once_each_by_id(collector: Collector, key: str,
                                                               receiver: Receiver) -> None:
    hook = create(collector, key, receiver.url())
    receiver.status = 503
    sent = [record() for _ in range(25)]
    collector.ingest(sent[:10])
    failing = wait_until("failures recorded", lambda: (s := status_of(collector, key, hook))[
        "consecutiveFailures"] >= 2 and s)
    assert "503" in failing["lastError"] and failing["lag"] >= 10
    # A restart while the receiver is down loses nothing: the cursor is in the database.
    collector.stop()
    collector.start()
    collector.ingest(sent[10:])
    wait_until("more failures", lambda: receiver.answered.count(503) >= 4)
    assert receiver.received() == []
    receiver.status = 200
    ids = {r["id"] for r in sent}
    wait_until("everything delivered", lambda: ids <= receiver.event_ids())
    received = [e for d in receiver.received() for e in d.events()]
    assert {e["id"] for e in received} == ids
    by_id: dict[str, Any] = {}
    for e in received:
        assert by_id.setdefault(e["id"], e) == e, "a duplicate differs from the first delivery"
    assert wait_until("no lag", lambda: status_of(collector, key, hook)["lag"] == 0)
    assert status_of(collector, key, hook)["consecutiveFailures"] == 0


def test_410_disables_and_enable_resumes(collector: Collector, key: str, receiver: Receiver) -> None:
    hook = create(collector, key, receiver.url())
    receiver.status = 410
    first = record()
    collector.ingest([first])
    gone = wait_until("disabled", lambda: not (s := status_of(collector, key, hook))["enabled"] and s)
    assert "410" in gone["disabledReason"]
    answered = len(receiver.answered)
    receiver.status = 200
    collector.ingest([record()])
    # The collector sends nothing to a disabled endpoint, however long it waits: enable it.
    status, body = collector.request("POST", f"/{TENANT}/api/v1/webhooks/{hook['id']}/enable", key=key)
    assert status == 200 and body["enabled"] and body["disabledReason"] is None, body
    wait_until("delivered after enable", lambda: first["id"] in receiver.event_ids())
    assert receiver.answered[answered:].count(410) == 0


def test_replay_resends_from_a_sequence_number(collector: Collector, key: str, receiver: Receiver) -> None:
    hook = create(collector, key, receiver.url())
    sent = [record() for _ in range(5)]
    collector.ingest(sent)
    wait_until("delivered", lambda: {r["id"] for r in sent} <= receiver.event_ids())
    seqs = {e["id"]: e["seq"] for d in receiver.received() for e in d.events()}
    from_seq = seqs[sent[2]["id"]]
    before = len(receiver.received())
    status, body = collector.request("POST", f"/{TENANT}/api/v1/webhooks/{hook['id']}/replay", key=key,
                                     body={"fromSeq": from_seq})
    assert status == 200 and body["deliveredSeq"] == from_seq, body
    again = {r["id"] for r in sent[2:]}
    wait_until("replayed", lambda: again <= {e["id"] for d in receiver.received()[before:] for e in d.events()})
    replayed = [e for d in receiver.received()[before:] for e in d.events()]
    assert min(e["seq"] for e in replayed) == from_seq
    assert not {r["id"] for r in sent[:2]} & {e["id"] for e in replayed}


def test_ocsf_and_splunk_hec_shapes(collector: Collector, key: str, receiver: Receiver) -> None:
    ocsf = create(collector, key, receiver.url("/ocsf"), format="ocsf")
    hec = create(collector, key, receiver.url("/hec"), format="splunk-hec", hecToken="hec-token-1")
    call, denied, failed = record("success"), record("denied"), record("auth_failed")
    correlated = {**record("success"), "sessionId": "mcp-7f3a", "requestId": "6f1c0e9a-req",
                  "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
                  "sourceAddress": "10.0.0.7:51234", "userAgent": "claude-desktop/0.9", "protocolVersion": "2025-06-18"}
    collector.ingest([call, denied, failed, correlated])
    ids = {call["id"], denied["id"], failed["id"], correlated["id"]}
    wait_until("both formats delivered", lambda: ids <= receiver.event_ids("/ocsf") and ids <= receiver.event_ids("/hec"))
    verify_signatures(receiver.received("/ocsf"), ocsf["secret"])
    verify_signatures(receiver.received("/hec"), hec["secret"])

    events = {e["id"]: e["ocsf"] for d in receiver.received("/ocsf") for e in d.events()}
    api = events[call["id"]]
    assert (api["class_uid"], api["category_uid"], api["activity_id"], api["type_uid"]) == (6003, 6, 99, 600399)
    assert (api["status_id"], api["status"]) == (1, "Success")
    assert api["time"] == int(datetime.fromisoformat(call["timestamp"]).timestamp() * 1000)
    assert api["actor"]["user"] == {"uid": "auth0|alice", "email_addr": "alice@acme.com"}
    assert api["actor"]["app_name"] == "claude-desktop"
    assert api["api"]["operation"] == "crm.query" and api["api"]["service"]["name"] == "mcp"
    assert api["metadata"]["uid"] == call["id"] and api["metadata"]["tenant_uid"] == TENANT
    assert (events[denied["id"]]["status_id"], events[denied["id"]]["status_code"]) == (2, "denied")
    auth = events[failed["id"]]
    assert (auth["class_uid"], auth["category_uid"], auth["activity_id"], auth["type_uid"]) == (3002, 3, 1, 300201)
    assert (auth["status_id"], auth["status_detail"]) == (2, "because auth_failed")
    # A record without the correlation keys maps as before; one with them fills OCSF's places.
    assert not {"src_endpoint", "http_request", "trace"} & set(api) and "correlation_uid" not in api["metadata"]
    traced = events[correlated["id"]]
    assert traced["src_endpoint"] == {"ip": "10.0.0.7", "port": 51234}
    assert traced["http_request"] == {"user_agent": "claude-desktop/0.9"}
    assert traced["metadata"]["correlation_uid"] == "6f1c0e9a-req"
    assert (traced["trace"]["uid"], traced["trace"]["span"]["uid"]) == ("4bf92f3577b34da6a3ce929d0e0e4736",
                                                                        "00f067aa0ba902b7")
    assert traced["actor"]["session"] == {"uid": "mcp-7f3a"} and traced["api"]["version"] == "2025-06-18"

    deliveries = receiver.received("/hec")
    assert all(d.headers["authorization"] == "Splunk hec-token-1" for d in deliveries)
    lines = [line for d in deliveries for line in d.body.decode().splitlines()]
    envelopes = {json.loads(line)["event"]["id"]: json.loads(line) for line in lines}
    env = envelopes[call["id"]]
    assert set(env) == {"time", "source", "sourcetype", "fields", "event"}
    assert env["sourcetype"] == "acp:tool.call" and env["fields"] == {"tenant": TENANT}
    assert env["time"] == pytest.approx(datetime.fromisoformat(call["timestamp"]).timestamp())
    assert envelopes[failed["id"]]["sourcetype"] == "acp:auth.failed"
    assert envelopes[correlated["id"]]["fields"] == {
        "tenant": TENANT, **{k: correlated[k] for k in CORRELATION_FIELDS}}


def test_bad_requests_say_why_and_tenants_are_isolated(collector: Collector, key: str, receiver: Receiver) -> None:
    path = f"/{TENANT}/api/v1/webhooks"
    for raw, status, reason in [
        (b"{not json", 400, "invalid request body"),
        (b'{"url":"http://127.0.0.1:9/","events":["tool.exploded"]}', 400, "events[0]"),
        (b'{"url":"http://127.0.0.1:9/","events":["tool.call"],"secret":"mine"}', 400, "unknown field `secret`"),
        (b'{"url":"gopher://127.0.0.1:9/","events":["tool.call"]}', 400, "http or https"),
        (b'{"url":"http://127.0.0.1:9/","events":[]}', 400, "at least one"),
        (b'{"url":"http://127.0.0.1:9/","events":["tool.call"],"batch":{"maxEvents":5000}}', 400, "maxEvents"),
        (b'{"url":"http://127.0.0.1:9/' + b"a" * 20000 + b'","events":["tool.call"]}', 413, "length limit"),
    ]:
        got, body = collector.request("POST", path, key=key, raw=raw)
        assert got == status and reason in body["error"], (raw[:80], got, body)
    assert collector.request("POST", path, raw=b"{}")[0] == 401

    other_key = collector.api_key("org_other")
    mine = create(collector, key, receiver.url())
    theirs = create(collector, other_key, receiver.url("/other"), tenant="org_other")
    assert collector.request("GET", path, key=other_key)[0] == 403
    assert collector.request("POST", path, key=other_key, body={"url": receiver.url(), "events": ["tool.call"]})[0] == 403
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/enable")]:
        got, body = collector.request(method, f"/org_other/api/v1/webhooks/{mine['id']}{suffix}", key=other_key)
        assert got == 404, (method, suffix, body)
    got, body = collector.request("GET", "/org_other/api/v1/webhooks", key=other_key)
    assert [h["id"] for h in body["webhooks"]] == [theirs["id"]]
    assert mine["id"] not in {h["id"] for h in collector.request("GET", "/org_other/api/v1/webhooks", key=other_key)[1]["webhooks"]}
    collector.ingest([record(tenant="org_other")])
    collector.ingest([mine_only := record()])
    wait_until("delivered", lambda: mine_only["id"] in receiver.event_ids("/hook"))
    assert all(e["tenant"] == TENANT for d in receiver.received("/hook") for e in d.events())
    assert collector.request("DELETE", f"{path}/{mine['id']}", key=key)[0] == 204
    assert collector.request("GET", f"{path}/{mine['id']}", key=key)[0] == 404


def test_private_addresses_are_refused_without_the_allowance(tmp_path: Path, receiver: Receiver) -> None:
    strict = Collector(tmp_path, ["--webhook-retry-initial-ms", "100", "--webhook-retry-max-ms", "400"]).start()
    try:
        key = strict.api_key(TENANT)
        for url in [receiver.url(), "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/",
                    f"http://localhost:{receiver.server.server_address[1]}/hook"]:
            got, body = strict.request("POST", f"/{TENANT}/api/v1/webhooks", key=key,
                                       body={"url": url, "events": ["tool.call"]})
            assert got == 400 and "--webhook-allow-cidrs" in body["error"], (url, body)
        refused = strict.cli("webhook", "create", "--tenant", TENANT, "--url", receiver.url(), "--events", "tool.call")
        assert refused.returncode != 0 and "loopback, private" in refused.stderr, refused.stderr

        # Created while loopback was allowed; the service, which does not allow it, refuses to
        # connect when it delivers (as it would after a DNS rebinding).
        made = strict.cli("webhook", "create", "--tenant", TENANT, "--url",
                          f"http://localhost:{receiver.server.server_address[1]}/hook", "--events", "tool.call",
                          env={"ACP_WEBHOOK_ALLOW_CIDRS": LOOPBACK})
        assert made.returncode == 0, made.stderr
        hook_id = json.loads(made.stdout)["id"]
        strict.ingest([record()])
        failed = wait_until("refused at delivery", lambda: (s := strict.request(
            "GET", f"/{TENANT}/api/v1/webhooks/{hook_id}", key=key)[1])["consecutiveFailures"] >= 1 and s)
        assert "loopback, private" in failed["lastError"], failed
        assert receiver.answered == []

        listed = strict.cli("webhook", "list", "--tenant", TENANT)
        assert listed.returncode == 0 and hook_id in listed.stdout and "whsec_" not in listed.stdout
        assert strict.cli("webhook", "delete", hook_id).returncode == 0
        assert hook_id not in strict.cli("webhook", "list").stdout
    finally:
        strict.stop()


def test_a_tool_call_through_envoy_becomes_a_signed_delivery(stack: Stack, receiver: Receiver) -> None:
    stack.stop_collector()
    os.environ["ACP_WEBHOOK_ALLOW_CIDRS"] = LOOPBACK
    try:
        stack.start_collector()
    finally:
        del os.environ["ACP_WEBHOOK_ALLOW_CIDRS"]
    assert stack.api_key is not None
    got, hook = Collector(stack.run_dir, port=stack.ports.collector).request(
        "POST", f"/{stack.tenant}/api/v1/webhooks", key=stack.api_key,
        body={"url": receiver.url(), "events": ["tool.call"], "format": "ocsf"})
    assert got == 201, hook
    alice = caller(stack, ["salesforce:read"])
    assert call_tool(stack, alice.token, "salesforce.query", {"query": "SELECT Id FROM Account"}).status == 200
    delivery = wait_until("a delivery", receiver.received)[0]
    verify_signatures([delivery], hook["secret"])
    event = delivery.events()[0]["ocsf"]
    assert event["class_uid"] == 6003 and event["api"]["operation"] == "salesforce.query"
    assert event["actor"]["user"]["uid"] == alice.sub and event["metadata"]["tenant_uid"] == stack.tenant


def test_policy_versions_become_policy_changed_events(collector: Collector, key: str, receiver: Receiver) -> None:
    hook = create(collector, key, receiver.url(), ["policy.changed"])
    policy = {"tenants": [TENANT], "tools": {"crm.query": ["crm:read"]}, "marker": str(uuid.uuid4())}
    digest = hashlib.sha256(json.dumps(policy, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    status, body = collector.request("POST", "/v1/policies", key=collector.ingest_token,
                                     body={"records": [{"hash": f"sha256:{digest}", "policy": policy}]})
    assert status == 200, body
    [version] = [p["version"] for p in collector.request("GET", f"/{TENANT}/api/v1/policies", key=key)[1]["policies"]
                 if p["hash"] == f"sha256:{digest}"]
    delivery = wait_until("a policy.changed delivery", receiver.received)[0]
    verify_signatures([delivery], hook["secret"])
    [event] = delivery.events()
    assert event["id"] == f"policy:{TENANT}:{version}" and event["type"] == "policy.changed"
    assert event["data"] == {"version": version, "hash": f"sha256:{digest}", "policy": policy}
