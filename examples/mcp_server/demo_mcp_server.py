"""Demo MCP server behind ACP: fake Salesforce, GitHub, file and HR tools over Streamable HTTP.

    demo_mcp_server.py --port 9100 [--host 127.0.0.1]

Both endpoints are stateless (no `initialize` or `Mcp-Session-Id` needed) and serve the same
tools; they differ only in how a POST is answered:
    /mcp      application/json: one JSON-RPC response body
    /mcp/sse  text/event-stream: the JSON-RPC response as one SSE `message` event (for requests
              of the handshake-era protocol revisions, up to 2025-11-25; a 2026-07-28 request
              is streamed only when its handler sends notifications, otherwise it gets JSON)

Error behaviour: `salesforce.update` always fails with a JSON-RPC error (code -32603, HTTP 200);
`files.read` of an unknown path and `hr.employee_lookup` of an unknown id return a tool result
with `isError: true`. `hr.employee_lookup` answers with fake PII (a valid-format SSN, a test card
number, an email, a phone number) for the output-scanning demos; `github.create_issue` echoes
its `title`, so what reached the server can be seen in the answer. `files.read`'s `path` is
mirrored into the `Mcp-Param-Path` header by 2026-07-28 clients (`x-mcp-header`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Annotated, Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR
from pydantic import Field
from starlette.applications import Starlette

JSON_PATH = "/mcp"
SSE_PATH = "/mcp/sse"

OPPORTUNITIES = [
    {"Id": "0065e00000A1xQ1", "Name": "Globex renewal", "StageName": "Negotiation", "Amount": 120000,
     "CloseDate": "2026-03-27"},
    {"Id": "0065e00000A1xQ2", "Name": "Initech expansion", "StageName": "Proposal", "Amount": 48000,
     "CloseDate": "2026-03-31"},
    {"Id": "0065e00000A1xQ3", "Name": "Umbrella pilot", "StageName": "Closed Won", "Amount": 15000,
     "CloseDate": "2026-03-12"},
]

# A tiny read-only file tree; customers.csv holds fake PII (a test card number, a sample SSN)
# for content-inspection demos.
FILES = {
    "README.md": "# Acme shared drive\nQuarterly plans live in plans/.\n",
    "plans/q2.md": "Q2 plan: close Globex renewal, hire two SDRs.\n",
    "customers.csv": "name,email,ssn,card\nJane Roe,jane@example.com,219-09-9999,4111 1111 1111 1111\n",
}

# Fake HR records for output-scanning demos: the SSN has a valid format (area, group and serial
# in range, not an SSA-published sample), the card is the Visa test number (Luhn-valid).
EMPLOYEES = {
    "E-1001": {"employee_id": "E-1001", "name": "Jordan Avery", "department": "Payroll",
               "ssn": "536-22-1987", "email": "jordan.avery@acme.example", "phone": "+1 415 555 2671",
               "corporate_card": "4111 1111 1111 1111"},
}


def build_server() -> MCPServer:
    """An MCPServer with the five demo tools."""
    server = MCPServer("acp-demo-mcp", version="1.0.0", log_level="WARNING")
    issue_numbers = itertools.count(101)

    @server.tool(name="salesforce.query")
    def salesforce_query(query: str) -> dict[str, Any]:
        """Run a SOQL query against the (fake) Salesforce org; returns opportunity rows."""
        return {"query": query, "totalSize": len(OPPORTUNITIES), "records": OPPORTUNITIES}

    @server.tool(name="salesforce.update")
    def salesforce_update(record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Update a Salesforce record. Always fails in the demo (upstream error path)."""
        raise MCPError(INTERNAL_ERROR, f"Salesforce rejected the update of {record_id}: "
                                       "UNABLE_TO_LOCK_ROW (demo: this tool always fails)")

    @server.tool(name="github.create_issue")
    def github_create_issue(repo: str, title: str, body: str) -> dict[str, Any]:
        """Open an issue in a (fake) GitHub repository."""
        number = next(issue_numbers)
        return {"repo": repo, "number": number, "title": title,
                "url": f"https://github.com/{repo}/issues/{number}"}

    @server.tool(name="files.read")
    def files_read(path: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Path"})]) -> str:
        """Read a file from the (fake) shared drive."""
        try:
            return FILES[path.lstrip("/")]
        except KeyError:
            raise ToolError(f"No such file: {path}") from None

    @server.tool(name="hr.employee_lookup")
    def hr_employee_lookup(employee_id: str) -> dict[str, Any]:
        """Look up an employee in the (fake) HR system; the answer carries PII."""
        try:
            return EMPLOYEES[employee_id]
        except KeyError:
            raise ToolError(f"No such employee: {employee_id}") from None

    return server


def build_app() -> Starlette:
    """The ASGI app: JSON responses at `JSON_PATH`, SSE responses at `SSE_PATH`."""
    # The server sits behind Envoy, which keeps the client's Host header (any tenant domain).
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    servers = {path: build_server() for path in (JSON_PATH, SSE_PATH)}
    apps = [server.streamable_http_app(streamable_http_path=path, json_response=path == JSON_PATH,
                                       stateless_http=True, transport_security=security)
            for path, server in servers.items()]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for server in servers.values():
                await stack.enter_async_context(server.session_manager.run())
            yield

    return Starlette(routes=[route for app in apps for route in app.routes], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(build_app(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
