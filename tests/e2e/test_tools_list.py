"""`tools/list` answers show each caller only the tools its scopes allow (JSON and SSE answers),
the removed ones are counted in `tools_hidden`, and `filterToolsList: false` turns this off.
Listing tools leaves no audit record."""

from __future__ import annotations

from typing import Any

import pytest
from stack import Stack
from support import (
    acp_counters, call_tool, caller, counter_deltas, post_mcp, post_upstream, tools_list, wait_for_counter_deltas,
    wait_for_records,
)

# The demo MCP server's tools, in its order (each is mapped to one scope in the demo configuration).
TOOLS = ["salesforce.query", "salesforce.update", "github.create_issue", "files.read", "hr.employee_lookup"]
PATHS = pytest.mark.parametrize("path", ["/mcp", "/mcp/sse"], ids=["json", "sse"])


def upstream_tools(stack: Stack) -> list[dict[str, Any]]:
    """The demo MCP server's own, unfiltered tool list."""
    tools = post_upstream(stack, tools_list()).body["result"]["tools"]
    assert [t["name"] for t in tools] == TOOLS, "the demo server's tools changed"
    return tools


def listed(stack: Stack, token: str, path: str, id: Any = "list-1") -> list[dict[str, Any]]:
    reply = post_mcp(stack, token, tools_list(id), path=path)
    assert reply.status == 200, reply.text
    if path == "/mcp/sse":
        assert reply.content_type.startswith("text/event-stream"), reply.content_type
        assert len(reply.events) == 1, reply.text
    assert reply.body["jsonrpc"] == "2.0" and reply.body["id"] == id and "error" not in reply.body, reply.body
    return reply.body["result"]["tools"]


def hidden_since(stack: Stack, before: dict[str, int]) -> int:
    return counter_deltas(before, acp_counters(stack), "tools_hidden")["tools_hidden"]


@PATHS
@pytest.mark.parametrize(("scopes", "names"), [
    (["salesforce:read"], ["salesforce.query"]),
    (["files:read", "hr:read", "salesforce:read", "crm:admin"], ["salesforce.query", "files.read", "hr.employee_lookup"]),
    ([], []),
], ids=["salesforce_reader", "three_scopes", "no_scope"])
def test_caller_sees_only_the_tools_its_scopes_allow(stack: Stack, path: str, scopes: list[str],
                                                    names: list[str]) -> None:
    everything = upstream_tools(stack)
    visible = [t for t in everything if t["name"] in names]
    before = acp_counters(stack)

    tools = listed(stack, caller(stack, scopes).token, path)

    assert tools == visible, "kept tools must be the server's entries, unchanged and in order"
    hidden = len(everything) - len(visible)
    if hidden:
        wait_for_counter_deltas(stack, before, {"tools_hidden": hidden})
    assert hidden_since(stack, before) == hidden


def test_listing_tools_leaves_no_record(stack: Stack) -> None:
    reader = caller(stack, ["salesforce:read"])
    listed(stack, reader.token, "/mcp")
    assert call_tool(stack, reader.token, "salesforce.query", {"query": "SELECT Id FROM Lead"}).status == 200
    records = wait_for_records(stack, 1, user=reader.sub)
    assert [r["tool"] for r in records] == ["salesforce.query"], records


@pytest.fixture(scope="module")
def unfiltered(make_module_stack) -> Stack:
    return make_module_stack(filter_config=lambda cfg: {**cfg, "filterToolsList": False})


@PATHS
def test_filter_tools_list_false_shows_every_tool(unfiltered: Stack, path: str) -> None:
    before = acp_counters(unfiltered)

    tools = listed(unfiltered, caller(unfiltered, ["salesforce:read"]).token, path)

    assert tools == upstream_tools(unfiltered)
    assert hidden_since(unfiltered, before) == 0
