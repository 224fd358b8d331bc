"""Content scanning end to end: tool arguments with an SSN, a card number, a secret or an SSRF
URL are refused before they reach the MCP server (however they are spelled), logged PII goes
through and is only masked in the record, redacted PII is masked in what the MCP server gets,
and tool answers are redacted or replaced before the client sees them, for JSON and SSE answers.
Every case reads its record back and checks `contentScan`.

The demo stack's defaults are used (`stack`), except where a test needs `strict`: a stack whose
configuration redacts emails in inputs, blocks SSNs in outputs and allows one internal host.
The immutable input rules refused at load are in test_invalid_config.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from stack import PYTHON, Stack
from support import (
    FORBIDDEN, Caller, Reply, acp_counters, assert_jsonrpc_error, assert_record, call_tool, caller, clean_scan,
    counter_deltas, expected_record, finding, post_mcp, post_upstream, scan_report, tool_call, upstream_requests,
    wait_for_counter_deltas, wait_for_records,
)

CLAUDE = {"azp": "claude-desktop-app"}

SSN = "536-22-1987"
CARD = "4111 1111 1111 1111"
EMAIL = "jordan.avery@acme.example"
PHONE = "+1 415 555 2671"
SECRETS = ("AKIAIOSFODNN7EXAMPLE", "abcDEF1234567890ghij")
EMPLOYEE = {"employee_id": "E-1001"}
# Where the demo server's `hr.employee_lookup` answer carries each value: the JSON text of the
# employee, and the same employee as structured content.
TEXT = "$.result.content[0].text"
EMPLOYEE_FIELDS = {"ssn": "ssn", "payment_card": "corporate_card", "email": "email", "phone": "phone"}
# 1 - (1-0.9)(1-0.9)(1-0.2)(1-0.2): an SSN, a card, an email and a phone, rounded to 3 decimals.
EMPLOYEE_RISK = 0.994
# riskScore of one finding of each detector.
WEIGHT = {"ssn": 0.9, "payment_card": 0.9, "ssrf": 0.9, "secret": 0.8, "iban": 0.6, "email": 0.2, "phone": 0.2}


def strict_scanning(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["scanning"] = {"input": {"ssn": "block", "email": "redact"}, "output": {"ssn": "block"},
                       "ssrfAllowHosts": ["10.0.0.5"]}
    return cfg


@pytest.fixture(scope="module")
def strict(make_module_stack) -> Stack:
    return make_module_stack(filter_config=strict_scanning)


def records_of(stack: Stack, who: Caller, count: int = 1) -> list[dict[str, Any]]:
    records = wait_for_records(stack, count, user=who.sub)
    assert len(records) == count, records
    return records


def blocked(who: Caller, detector: str, *, tool: str, input: Any, scope: str, path: str) -> dict[str, Any]:
    """The record of a call refused because its input had a `detector` hit at `path`."""
    return expected_record(
        event="tool.denied", result="blocked", reason=f"blocked_{detector}", tool=tool, input=input,
        scope_required=[scope], scope_result="pass", identity=who.identity(client_type="claude-desktop"),
        content_scan=scan_report([finding(detector, path, "block")], risk_score=WEIGHT[detector],
                                 output_scanned=False))


def forwarded(who: Caller, *, tool: str, input: Any, scope: str, content_scan: dict[str, Any],
              event: str = "tool.call", result: str = "success", reason: str | None = None) -> dict[str, Any]:
    return expected_record(event=event, result=result, reason=reason, tool=tool, input=input, scope_required=[scope],
                           scope_result="pass", identity=who.identity(client_type="claude-desktop"),
                           content_scan=content_scan)


def assert_refused_locally(reply: Reply, *, id: Any, reason: str) -> None:
    assert reply.status == 403, reply.text
    assert reply.content_type.startswith("application/json")
    assert reply.headers.get("x-envoy-upstream-service-time") is None, "answered by the upstream?"
    assert reply.headers.get("WWW-Authenticate") is None
    assert_jsonrpc_error(reply.body, code=FORBIDDEN, id=id, reason=reason)


def assert_not_leaked(text: str) -> None:
    """None of the tests' SSN, card and secrets, in any spelling, is in `text`."""
    for value in (SSN, SSN.replace("-", ""), CARD, CARD.replace(" ", "-"), CARD.replace(" ", ""), *SECRETS):
        assert value not in text, f"{value} leaked"


def unicode_escaped(text: str) -> str:
    """`text` with every digit written as a JSON `\\uXXXX` escape."""
    return "".join(f"\\u{ord(c):04x}" if c.isdigit() else c for c in text)


# ---- Blocked input ------------------------------------------------------------------------

NOTES_PATH = "$.customer.notes[0]"
# name: (raw JSON of the arguments, what the record keeps of them, detector)
BLOCKED_INPUTS: dict[str, tuple[str, Any, str]] = {
    "ssn_nested": (json.dumps({"customer": {"notes": [f"ssn {SSN}"]}}),
                   {"customer": {"notes": ["ssn [REDACTED:ssn]"]}}, "ssn"),
    "card_with_dashes": (json.dumps({"customer": {"notes": ["card 4111-1111-1111-1111"]}}),
                         {"customer": {"notes": ["card [REDACTED:payment_card]"]}}, "payment_card"),
    # Only JSON decoding reveals the SSN: its digits are \u escapes in the body.
    "ssn_unicode_escaped": ('{"customer": {"notes": ["ssn ' + unicode_escaped(SSN) + '"]}}',
                            {"customer": {"notes": ["ssn [REDACTED:ssn]"]}}, "ssn"),
    # Secrets are blocked in inputs by default (configurable, unlike the three rules above).
    "aws_access_key": (json.dumps({"customer": {"notes": [f"key {SECRETS[0]}"]}}),
                       {"customer": {"notes": ["key [REDACTED:secret]"]}}, "secret"),
    "bearer_token": (json.dumps({"customer": {"notes": [f"Authorization: Bearer {SECRETS[1]}"]}}),
                     {"customer": {"notes": ["Authorization: Bearer [REDACTED:secret]"]}}, "secret"),
}


@pytest.mark.parametrize("case", list(BLOCKED_INPUTS))
def test_input_with_an_ssn_card_or_secret_is_blocked_before_the_mcp_server(stack: Stack, case: str) -> None:
    raw_arguments, masked, detector = BLOCKED_INPUTS[case]
    alice = caller(stack, ["salesforce:read"], **CLAUDE)
    body = ('{"jsonrpc": "2.0", "id": "scan-1", "method": "tools/call", '
            '"params": {"name": "salesforce.query", "arguments": ' + raw_arguments + '}}').encode()
    if case == "ssn_unicode_escaped":
        assert SSN.encode() not in body and b"\\u0035\\u0033\\u0036-" in body
    upstream_before, counters_before = upstream_requests(stack), acp_counters(stack)

    reply = post_mcp(stack, alice.token, body)

    assert_refused_locally(reply, id="scan-1", reason=f"blocked_{detector}")
    assert detector in reply.body["error"]["message"]
    [record] = records_of(stack, alice)
    assert_record(record, blocked(alice, detector, tool="salesforce.query", input=masked, scope="salesforce:read",
                                  path=NOTES_PATH), reply)
    assert_not_leaked(json.dumps(record))
    assert upstream_requests(stack) == upstream_before, "the blocked call reached the MCP server"
    after = wait_for_counter_deltas(stack, counters_before, {"calls_blocked": 1})
    assert counter_deltas(counters_before, after, "calls_blocked", "calls_denied", "calls_allowed") \
        == {"calls_blocked": 1, "calls_denied": 0, "calls_allowed": 0}


def test_input_with_a_fullwidth_ssn_is_blocked_and_the_finding_says_what_was_normalised(stack: Stack) -> None:
    # The SSN in full-width digits and full-width hyphen-minus signs: folded to ASCII before
    # matching, masked as written in the record, and the finding names the folding.
    fullwidth = "".join(chr(0xFF10 + int(c)) if c.isdigit() else "\uff0d" for c in SSN)
    alice = caller(stack, ["salesforce:read"], **CLAUDE)
    upstream_before = upstream_requests(stack)

    reply = call_tool(stack, alice.token, "salesforce.query", {"customer": {"notes": [f"ssn {fullwidth}"]}}, id=9)

    assert_refused_locally(reply, id=9, reason="blocked_ssn")
    [record] = records_of(stack, alice)
    expected = blocked(alice, "ssn", tool="salesforce.query", input={"customer": {"notes": ["ssn [REDACTED:ssn]"]}},
                       scope="salesforce:read", path=NOTES_PATH)
    expected["contentScan"]["findings"][0]["normalized"] = ["fullwidth_digits", "unicode_separators"]
    assert_record(record, expected, reply)
    assert fullwidth not in json.dumps(record, ensure_ascii=False)
    assert upstream_requests(stack) == upstream_before, "the blocked call reached the MCP server"


# ---- SSRF ---------------------------------------------------------------------------------

SSRF_URLS = {
    "metadata": "http://169.254.169.254/latest/meta-data/",
    "decimal_ip": "http://2130706433/",
    "hex_short_ip": "http://0x7f.1/",
    "octal_ip": "http://0177.0.0.1/",
    "ipv4_mapped_ipv6": "http://[::ffff:127.0.0.1]/",
    "userinfo": "http://good.example@127.0.0.1/",
    "percent_encoded": "http://%31%32%37.0.0.1/",
    "localhost_upper_trailing_dot": "http://LOCALHOST./",
    "file_scheme": "file:///etc/passwd",
    "gopher_to_private": "gopher://10.0.0.5:6379/_",
}


def issue(url: str) -> dict[str, str]:
    return {"repo": "acme/app", "title": "fetch", "body": url}


@pytest.mark.parametrize("name", list(SSRF_URLS))
def test_input_url_reaching_an_internal_address_is_blocked_in_any_spelling(stack: Stack, name: str) -> None:
    url = SSRF_URLS[name]
    bob = caller(stack, ["github:write"], **CLAUDE)
    upstream_before = upstream_requests(stack)

    reply = call_tool(stack, bob.token, "github.create_issue", issue(url), id=7)

    assert_refused_locally(reply, id=7, reason="blocked_ssrf")
    [record] = records_of(stack, bob)
    assert_record(record, blocked(bob, "ssrf", tool="github.create_issue", input=issue("[REDACTED:ssrf]"),
                                  scope="github:write", path="$.body"), reply)
    assert record["contentScan"]["piiDetected"] is False
    assert upstream_requests(stack) == upstream_before, "the blocked call reached the MCP server"


@pytest.mark.parametrize("url", ["http://127.0.0.1.nip.io/admin", "http://10-0-0-5.sslip.io:8080/",
                                 "http://api.lvh.me/"])
def test_input_url_of_a_wildcard_dns_name_reaching_inside_is_blocked(stack: Stack, url: str) -> None:
    bob = caller(stack, ["github:write"], **CLAUDE)
    upstream_before = upstream_requests(stack)

    reply = call_tool(stack, bob.token, "github.create_issue", issue(url), id=8)

    assert_refused_locally(reply, id=8, reason="blocked_ssrf")
    [record] = records_of(stack, bob)
    expected = blocked(bob, "ssrf", tool="github.create_issue", input=issue("[REDACTED:ssrf]"), scope="github:write",
                       path="$.body")
    expected["contentScan"]["findings"][0]["normalized"] = ["wildcard_dns"]
    assert_record(record, expected, reply)
    assert upstream_requests(stack) == upstream_before, "the blocked call reached the MCP server"


@pytest.mark.parametrize("url", ["https://example.com/x", "https://8.8.8.8/dns-query", "https://8.8.8.8.nip.io/"])
def test_input_url_of_a_public_host_is_forwarded(stack: Stack, url: str) -> None:
    bob = caller(stack, ["github:write"], **CLAUDE)
    reply = call_tool(stack, bob.token, "github.create_issue", issue(url))
    assert reply.status == 200, reply.text
    assert reply.body["result"]["isError"] is False
    [record] = records_of(stack, bob)
    assert_record(record, forwarded(bob, tool="github.create_issue", input=issue(url), scope="github:write",
                                    content_scan=clean_scan()), reply, forwarded=True)


def test_allow_listed_internal_host_is_forwarded_and_its_neighbour_still_blocked(strict: Stack) -> None:
    bob = caller(strict, ["github:write"], **CLAUDE)
    allowed = issue("http://10.0.0.5/reports/q2")
    reply = call_tool(strict, bob.token, "github.create_issue", allowed)
    assert reply.status == 200, reply.text
    assert reply.body["result"]["isError"] is False

    upstream_before = upstream_requests(strict)
    refused = call_tool(strict, bob.token, "github.create_issue", issue("http://10.0.0.6/reports/q2"), id=2)
    assert_refused_locally(refused, id=2, reason="blocked_ssrf")
    assert upstream_requests(strict) == upstream_before

    by_result = {r["result"]: r for r in records_of(strict, bob, 2)}
    assert_record(by_result["success"], forwarded(bob, tool="github.create_issue", input=allowed,
                                                  scope="github:write", content_scan=clean_scan()), reply,
                  forwarded=True)
    assert_record(by_result["blocked"], blocked(bob, "ssrf", tool="github.create_issue",
                                                input=issue("[REDACTED:ssrf]"), scope="github:write",
                                                path="$.body"), refused)


# ---- Logged and redacted input ------------------------------------------------------------

def test_logged_pii_in_input_reaches_the_mcp_server_and_is_masked_only_in_the_record(stack: Stack) -> None:
    bob = caller(stack, ["github:write"], **CLAUDE)
    title = f"Call back {EMAIL} or {PHONE}"
    args = {"repo": "acme/app", "title": title, "body": "customer asked for a callback"}

    reply = call_tool(stack, bob.token, "github.create_issue", args)

    assert reply.status == 200, reply.text
    # github.create_issue echoes the title: the MCP server got the real values, and the answer
    # (email and phone are `log` in outputs too) reaches the client untouched.
    assert reply.body["result"]["structuredContent"]["title"] == title
    assert EMAIL in reply.body["result"]["content"][0]["text"]
    [record] = records_of(stack, bob)
    findings = [finding(kind, path, "log", location=location)
                for kind in ("email", "phone")
                for location, path in (("input", "$.title"), ("output", TEXT),
                                       ("output", "$.result.structuredContent.title"))]
    assert_record(record, forwarded(
        bob, tool="github.create_issue", input={**args, "title": "Call back [REDACTED:email] or [REDACTED:phone]"},
        scope="github:write", content_scan=scan_report(findings, risk_score=0.36)), reply, forwarded=True)
    assert EMAIL not in json.dumps(record) and PHONE not in json.dumps(record)


def test_iban_in_input_is_logged_by_default_and_forwarded(stack: Stack) -> None:
    bob = caller(stack, ["github:write"], **CLAUDE)
    args = {"repo": "acme/app", "title": "Refund", "body": "refund to DE89370400440532013000 today"}
    reply = call_tool(stack, bob.token, "github.create_issue", args)
    assert reply.status == 200, reply.text
    [record] = records_of(stack, bob)
    assert_record(record, forwarded(bob, tool="github.create_issue",
                                    input={**args, "body": "refund to [REDACTED:iban] today"}, scope="github:write",
                                    content_scan=scan_report([finding("iban", "$.body", "log")], risk_score=0.6)),
                  reply, forwarded=True)


def test_redact_action_on_input_masks_what_the_mcp_server_receives(strict: Stack) -> None:
    bob = caller(strict, ["github:write"], **CLAUDE)
    args = {"repo": "acme/app", "title": f"Contact {EMAIL}", "body": "b"}
    masked = {**args, "title": "Contact [REDACTED:email]"}

    reply = call_tool(strict, bob.token, "github.create_issue", args)

    assert reply.status == 200, reply.text
    assert reply.body["result"]["structuredContent"]["title"] == masked["title"], "the server got the email"
    assert EMAIL not in reply.text
    [record] = records_of(strict, bob)
    assert_record(record, forwarded(bob, tool="github.create_issue", input=masked, scope="github:write",
                                    content_scan=scan_report([finding("email", "$.title", "redact")],
                                                             risk_score=0.2)), reply, forwarded=True)


# ---- Output -------------------------------------------------------------------------------

def employee_findings(actions: dict[str, str]) -> list[dict[str, Any]]:
    """The output findings of the `hr.employee_lookup` answer: each detector in the text and in
    its structured-content field."""
    return [finding(kind, path, actions[kind], location="output")
            for kind, field in EMPLOYEE_FIELDS.items()
            for path in (TEXT, f"$.result.structuredContent.{field}")]


def upstream_employee(stack: Stack) -> dict[str, Any]:
    """The employee as the demo MCP server answers it, bypassing Envoy."""
    reply = post_upstream(stack, tool_call("hr.employee_lookup", EMPLOYEE))
    employee = reply.body["result"]["structuredContent"]
    assert {field: employee[field] for field in EMPLOYEE_FIELDS.values()} == {
        "ssn": SSN, "corporate_card": CARD, "email": EMAIL, "phone": PHONE}
    return employee


@pytest.mark.parametrize("path", ["/mcp", "/mcp/sse"], ids=["json", "sse"])
def test_ssn_and_card_in_the_answer_are_redacted_before_the_client_sees_them(stack: Stack, path: str) -> None:
    hr = caller(stack, ["hr:read"], **CLAUDE)
    employee = upstream_employee(stack)

    reply = call_tool(stack, hr.token, "hr.employee_lookup", EMPLOYEE, id="emp-1", path=path)

    assert reply.status == 200, reply.text
    if path == "/mcp/sse":
        assert reply.content_type.startswith("text/event-stream"), reply.content_type
        assert len(reply.events) == 1, reply.text
    assert_not_leaked(reply.text)
    assert reply.body["id"] == "emp-1"
    result = reply.body["result"]
    redacted = {**employee, "ssn": "[REDACTED:ssn]", "corporate_card": "[REDACTED:payment_card]"}
    assert result["isError"] is False
    assert result["structuredContent"] == redacted
    assert json.loads(result["content"][0]["text"]) == redacted, "email and phone (log) stay visible"
    [record] = records_of(stack, hr)
    actions = {"ssn": "redact", "payment_card": "redact", "email": "log", "phone": "log"}
    assert_record(record, forwarded(hr, tool="hr.employee_lookup", input=EMPLOYEE, scope="hr:read",
                                    content_scan=scan_report(employee_findings(actions), risk_score=EMPLOYEE_RISK)),
                  reply, forwarded=True)


@pytest.mark.parametrize("path", ["/mcp", "/mcp/sse"], ids=["json", "sse"])
def test_block_action_on_output_replaces_the_answer_with_a_jsonrpc_error(strict: Stack, path: str) -> None:
    hr = caller(strict, ["hr:read"], **CLAUDE)
    counters_before = acp_counters(strict)

    reply = call_tool(strict, hr.token, "hr.employee_lookup", EMPLOYEE, id=31, path=path)

    assert reply.status == 200, reply.text
    assert reply.headers.get("x-envoy-upstream-service-time") is not None, "the upstream's answer, rewritten"
    if path == "/mcp/sse":
        assert reply.content_type.startswith("text/event-stream"), reply.content_type
        assert len(reply.events) == 1, reply.text
    assert_not_leaked(reply.text)
    assert EMAIL not in reply.text and "Jordan" not in reply.text
    assert_jsonrpc_error(reply.body, code=FORBIDDEN, id=31, reason="blocked_output_ssn")
    [record] = records_of(strict, hr)
    actions = {"ssn": "block", "payment_card": "redact", "email": "log", "phone": "log"}
    assert_record(record, forwarded(hr, tool="hr.employee_lookup", input=EMPLOYEE, scope="hr:read",
                                    event="tool.denied", result="blocked", reason="blocked_output_ssn",
                                    content_scan=scan_report(employee_findings(actions), risk_score=EMPLOYEE_RISK)),
                  reply, forwarded=True)
    after = wait_for_counter_deltas(strict, counters_before, {"calls_blocked": 1})
    assert counter_deltas(counters_before, after, "calls_blocked", "calls_allowed") \
        == {"calls_blocked": 1, "calls_allowed": 0}


# The answer of `chunked_upstream.py` (about 4 KB, an SSN at its very end) in 1000-byte chunks.
CHUNKED_UPSTREAM = [str(PYTHON), str(Path(__file__).with_name("chunked_upstream.py")), "{port}"]


def test_answer_growing_past_max_scan_bytes_is_refused_whole(make_stack) -> None:
    small = make_stack(filter_config=lambda cfg: {**cfg, "scanning": {"maxScanBytes": 2000}},
                       upstream=CHUNKED_UPSTREAM).start()
    alice = caller(small, ["salesforce:read"])

    reply = call_tool(small, alice.token, "salesforce.query", {"query": "SELECT Id FROM Lead"}, id=5)

    assert_not_leaked(reply.text)
    assert isinstance(reply.body, dict) and reply.body["error"]["code"] == FORBIDDEN, reply.text
    assert reply.body["id"] == 5 and reply.body["error"]["data"] == {"reason": "output_too_large_to_scan"}, reply.text
    [record] = wait_for_records(small, 1, user=alice.sub)
    assert (record["event"], record["result"], record["reason"]) == ("tool.denied", "blocked", "output_too_large_to_scan")
