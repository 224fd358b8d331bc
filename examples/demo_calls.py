"""Replays the reference scenario against a running `make demo`, then prints the audit trail
the way an auditor reads it.

    python examples/demo_calls.py [--envoy-url URL] [--collector-url URL] [--api-key gsk_...]

Calls are plain JSON-RPC `tools/call` POSTs to the stateless demo MCP server (no `initialize`
or `Mcp-Session-Id` needed). Exits non-zero when a call gets an unexpected HTTP status or its
audit records do not reach the collector in time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from idp import demo_idp
from stack import DEMO_PORTS, DEMO_RUN_DIR, DEMO_TENANT, export_url

PROTOCOL_VERSION = "2025-11-25"


@dataclass(frozen=True)
class Call:
    who: str
    tool: str
    arguments: dict[str, Any]
    token: str | None
    expect: int  # HTTP status


def scenario(issuer: str, tenant: str) -> list[Call]:
    """The reference's story: who calls what, with which token, and what ACP should answer."""
    def token(sub: str, scopes: list[str], **extra: Any) -> str:
        return demo_idp.sign(demo_idp.claims(sub, f"{sub}@acme.com", tenant, scopes, issuer=issuer, **extra))

    alice_scopes = ["salesforce:read", "salesforce:write"]
    soql = {"query": "SELECT Name, Amount FROM Opportunity WHERE CloseDate = THIS_MONTH"}
    agents = {"sub": "agent:report-bot", "act": {"sub": "agent:orchestrator"}}
    return [
        Call("alice (Claude Desktop)", "salesforce.query", soql,
             token("alice", alice_scopes, azp="claude-desktop-app"), 200),
        Call("bob (files:read only)", "salesforce.query", soql, token("bob", ["files:read"]), 403),
        Call("anonymous (no token)", "salesforce.query", soql, None, 401),
        Call("alice (expired token)", "salesforce.query", soql,
             token("alice", alice_scopes, now=int(time.time()) - 7200), 401),
        Call("agent for alice (act)", "salesforce.query", soql,
             token("alice", ["salesforce:read"], azp="cursor-ide", act=agents), 200),
        Call("alice (upstream fails)", "salesforce.update",
             {"record_id": "0065e00000A1xQ1", "fields": {"StageName": "Closed Won"}},
             token("alice", alice_scopes, azp="claude-desktop-app"), 200),
    ]


def call_tool(mcp_url: str, call: Call, request_id: int) -> tuple[int, str]:
    """POSTs the `tools/call`; returns the HTTP status and a one-line summary of the answer."""
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                       "params": {"name": call.tool, "arguments": call.arguments}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": PROTOCOL_VERSION}
    if call.token:
        headers["Authorization"] = f"Bearer {call.token}"
    status, response_headers, text = _http("POST", mcp_url, headers, body)
    if response_headers.get("Content-Type", "").startswith("text/event-stream"):
        text = "\n".join(line[5:].strip() for line in text.splitlines() if line.startswith("data:"))
    return status, _summary(text, response_headers.get("WWW-Authenticate"))


def _summary(text: str, www_authenticate: str | None) -> str:
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    if isinstance(message, dict) and "result" in message:
        result = message["result"]
        records = (result.get("structuredContent") or {}).get("records")
        outcome = "tool error" if result.get("isError") else "ok"
        return f"{outcome}, {len(records)} rows" if records is not None else outcome
    if isinstance(message, dict) and isinstance(message.get("error"), dict):
        return f"JSON-RPC error {message['error'].get('code')}: {message['error'].get('message')}"
    return www_authenticate or " ".join(text.split())[:100]


def fetch_records(url: str, api_key: str, since: str) -> list[dict[str, Any]]:
    """The first page (up to 1000) of the records at export `url` from `since` (RFC 3339)."""
    page_url = f"{url}?{urllib.parse.urlencode({'from': since, 'limit': 1000})}"
    status, _, text = _http("GET", page_url, {"Authorization": f"Bearer {api_key}"})
    if status != 200:
        raise RuntimeError(f"GET {page_url} -> HTTP {status}: {text[:200]}")
    return json.loads(text)["records"]


def wait_for_records(url: str, api_key: str, since: str, count: int, timeout: float) -> list[dict[str, Any]]:
    """Polls the export API until `count` records from `since` are there (or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = fetch_records(url, api_key, since)
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            records, error = [], err
        else:
            error = None
        if len(records) >= count or time.monotonic() > deadline:
            if error is not None:
                print(f"export API: {error}", file=sys.stderr)
            return records
        time.sleep(0.5)


def trail_table(records: list[dict[str, Any]]) -> str:
    """The records as a compact fixed-width table."""
    columns = ["time (UTC)", "user", "email", "tool", "result", "reason", "scopes held -> required",
               "clientType", "latency", "delegation"]
    rows = [[
        r["timestamp"][11:23],
        r.get("sub") or "-",
        r.get("email") or "-",
        r.get("tool") or "-",
        r["result"],
        r.get("reason") or "-",
        _scopes(r),
        r.get("clientType") or "-",
        f"{r['latencyMs']:.1f} ms",
        " <- ".join(_actor(actor) for actor in r.get("delegationChain") or []) or "-",
    ] for r in records]
    widths = [max(len(str(cell)) for cell in column) for column in zip(columns, *rows)]
    lines = [columns, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _scopes(record: dict[str, Any]) -> str:
    held, required = " ".join(record.get("scopes") or []), " ".join(record.get("scopeRequired") or [])
    return f"{held or '(none)'} -> {required}" if required else held or "-"


def _actor(actor: Any) -> str:
    return str(actor.get("sub", actor)) if isinstance(actor, dict) else str(actor)


def _http(method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, Any, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode("utf-8", "replace")


def _rfc3339_millis(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envoy-url", default=f"http://127.0.0.1:{DEMO_PORTS.envoy}")
    parser.add_argument("--collector-url", default=f"http://127.0.0.1:{DEMO_PORTS.collector}")
    parser.add_argument("--issuer", default=demo_idp.DEFAULT_ISSUER)
    parser.add_argument("--tenant", default=DEMO_TENANT)
    parser.add_argument("--api-key", help=f"default: {DEMO_RUN_DIR}/api-key, written by `make demo`")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the records")
    args = parser.parse_args()

    api_key = args.api_key
    if api_key is None:
        try:
            api_key = (DEMO_RUN_DIR / "api-key").read_text().strip()
        except FileNotFoundError:
            parser.error(f"no {DEMO_RUN_DIR}/api-key: start `make demo` first or pass --api-key")

    calls = scenario(args.issuer, args.tenant)
    export = export_url(args.collector_url, args.tenant)
    since = _rfc3339_millis(time.time())
    print(f"Calling {args.envoy_url}/mcp as:")
    unexpected = 0
    for request_id, call in enumerate(calls, start=1):
        try:
            status, summary = call_tool(f"{args.envoy_url}/mcp", call, request_id)
        except OSError as err:
            print(f"  cannot reach {args.envoy_url}: {err} (is `make demo` running?)", file=sys.stderr)
            return 1
        flag = "" if status == call.expect else f"   <-- UNEXPECTED, wanted {call.expect}"
        unexpected += status != call.expect
        print(f"  {call.who:<24} {call.tool:<18} HTTP {status}  {summary}{flag}")

    print(f"\nWaiting for the audit records at {args.collector_url} ...")
    records = wait_for_records(export, api_key, since, len(calls), args.timeout)
    print(f"\nAudit trail of tenant {args.tenant} since {since} ({len(records)} records):\n")
    print(trail_table(records))
    csv_url = f"{export}?{urllib.parse.urlencode({'from': since, 'format': 'csv'})}"
    print(f'\nAs CSV:\n  curl -s -H "Authorization: Bearer {api_key}" "{csv_url}"')

    if len(records) < len(calls):
        print(f"\nOnly {len(records)} of {len(calls)} records arrived within {args.timeout:.0f}s.", file=sys.stderr)
        return 1
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
