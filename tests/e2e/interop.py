"""Helpers of the interoperability tests: the reference MCP server `server-everything` (npm) as
the upstream, the official TypeScript SDK client (`tests/interop/ts-client/client.mjs`), the
official Python SDK client, and the filter configuration that maps the server's tools to scopes
and serves the protected resource metadata.

The npm pieces are installed by `make interop-deps` (`npm ci` into `tests/interop/ts-client/`).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp.client.client import Client, ConnectMode
from mcp.client.streamable_http import streamable_http_client
from stack import ROOT, Stack
from support import correlation

NODE_DIR = ROOT / "tests" / "interop" / "ts-client"
TS_CLIENT = NODE_DIR / "client.mjs"
EVERYTHING = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
# `Stack(upstream=...)`: server-everything in its Streamable HTTP mode on the stack's MCP port.
EVERYTHING_UPSTREAM = ["env", "PORT={port}", "node", str(EVERYTHING), "streamableHttp"]

# server-everything's tools mapped to scopes; the others are unknown to the policy (denied, hidden).
EVERYTHING_TOOLS = {
    "echo": ["everything:read"],
    "get-sum": ["everything:read"],
    "trigger-long-running-operation": ["everything:read"],
    "get-env": ["everything:admin"],
}


def package_version(name: str) -> str:
    """The installed version of npm package `name`."""
    return json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())["version"]


def protected_resource(stack: Stack) -> dict[str, Any]:
    """The `protectedResource` configuration for `stack`: the MCP endpoint, the demo IdP."""
    return {"resource": stack.mcp_url, "authorizationServers": [stack.issuer], "resourceName": "ACP interop"}


def everything_stack(run_dir: Path) -> Stack:
    """An unstarted stack with server-everything upstream, its tools mapped to scopes, and the
    protected resource metadata served."""
    node_ready()
    stack = Stack(run_dir, upstream=EVERYTHING_UPSTREAM, filter_config=lambda cfg: {
        **cfg, "tools": EVERYTHING_TOOLS, "protectedResource": protected_resource(stack)})
    return stack


def ts_client(scenario: str, url: str, token: str | None, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Runs the TypeScript SDK client; returns what it printed (JSON)."""
    env = {**os.environ, "ACP_TOKEN": token or ""}
    done = subprocess.run(["node", str(TS_CLIENT), scenario, url, json.dumps(args or {})], capture_output=True,
                          text=True, timeout=60, env=env, cwd=NODE_DIR, check=False)
    assert done.returncode == 0, f"client.mjs failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


class Wire:
    """What an httpx client sent and received: (method, MCP headers, JSON body) and the
    `User-Agent` (`agents`) per request, and (status, content type, session id) per response."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.agents: list[str | None] = []
        self.responses: list[tuple[int, str, str | None]] = []

    async def on_request(self, request: httpx2.Request) -> None:
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("mcp")}
        self.requests.append((request.method, headers, json.loads(request.content) if request.content else None))
        self.agents.append(request.headers.get("user-agent"))

    def sent_with(self, tool: str) -> dict[str, Any]:
        """The correlation fields of the `tools/call` of `tool` as sent (see `support.correlation`)."""
        [i] = [i for i, (_, _, body) in enumerate(self.requests) if isinstance(body, dict)
               and body.get("method") == "tools/call" and body["params"]["name"] == tool]
        headers = self.requests[i][1]
        return correlation(sessionId=headers.get("mcp-session-id"), userAgent=self.agents[i],
                           protocolVersion=headers.get("mcp-protocol-version"))

    async def on_response(self, response: httpx2.Response) -> None:
        self.responses.append((response.status_code, response.headers.get("content-type", ""),
                               response.headers.get("mcp-session-id")))

    def methods(self) -> list[str | None]:
        return [body.get("method") if isinstance(body, dict) else None for _, _, body in self.requests]


@asynccontextmanager
async def python_client(url: str, token: str | None, mode: ConnectMode, wire: Wire | None = None,
                        **client_args: Any) -> AsyncIterator[Client]:
    """The official Python SDK client over Streamable HTTP with a bearer token; `mode` is
    `auto` (2026-07-28 first, falling back to the handshake) or `legacy` (the handshake)."""
    hooks = {"request": [wire.on_request], "response": [wire.on_response]} if wire else {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, event_hooks=hooks, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, **client_args) as client:
            yield client


def node_ready() -> Path:
    """The server-everything entry point; fails with the make target to run when missing."""
    assert EVERYTHING.exists(), "npm pieces missing: run `make interop-deps`"
    return EVERYTHING
