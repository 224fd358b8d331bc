"""Helpers shared by the end-to-end tests: calling MCP through Envoy, minting tokens, reading the
audit trail back through the collector's export API, and checking records field by field.

Every test tells its records apart by something unique to it: the `sub` of its token (export
filter `user=`), a unique argument value in `input` (auth failures carry no `sub`), or, for
records with neither, the time window of its one request (tests of a module run one after the
other, so their windows do not overlap).
"""

from __future__ import annotations

import calendar
import csv
import dataclasses
import http.client
import io
import json
import math
import re
import socket
import struct
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from idp import demo_idp
from stack import COLLECTOR_BIN, ROOT, Stack, export_url

PROTOCOL_VERSION = "2025-11-25"
RECORD_WAIT = 10.0  # seconds: the filter flushes every 200 ms, the collector commits at once

# Where a call came from and how to join it to other logs: the export CSV's last columns, in this
# order.
CORRELATION_FIELDS = ("sessionId", "requestId", "traceId", "spanId", "sourceAddress", "userAgent",
                      "protocolVersion")
RECORD_FIELDS = frozenset({
    "id", "event", "timestamp", "sub", "email", "tool", "input", "scopes", "scopeRequired",
    "scopeResult", "contentScan", "result", "reason", "latencyMs", "tenantId", "clientType",
    "clientId", "delegationChain", "inputSummary",
}) | frozenset(CORRELATION_FIELDS)
# Fields whose value a test cannot know in advance; `assert_record` checks their form instead.
VOLATILE_FIELDS = frozenset({"id", "timestamp", "latencyMs"})


@dataclasses.dataclass(frozen=True)
class Form:
    """An expected value a test cannot know, only its form: a string the whole of which
    `pattern` matches. `assert_record` accepts it in place of a value of `expected`."""

    what: str
    pattern: re.Pattern[str]

    def matches(self, value: Any) -> bool:
        return isinstance(value, str) and self.pattern.fullmatch(value) is not None


# The `x-request-id` Envoy generates for a request that has none: a random UUID (version 4).
ENVOY_REQUEST_ID = Form("a UUIDv4 Envoy generated",
                        re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"))
# `source.address` of a test's own connection to Envoy: loopback and its ephemeral port.
LOOPBACK_SOURCE = Form("127.0.0.1 and the client's port", re.compile(r"127\.0\.0\.1:[1-9][0-9]{0,4}"))
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# JSON-RPC error codes of the filter (filter/src/decide/request.rs).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
UNAUTHORIZED = -32001
FORBIDDEN = -32003
HEADER_MISMATCH = -32020
RATE_LIMITED = -32029
AUDIT_UNAVAILABLE = -32050

UPSTREAM_REQUESTS = "cluster.mcp_server.upstream_rq_total"
ACP_STATS = "wasmcustom.acp."


# ---- HTTP ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    """One HTTP exchange: status, headers (case-insensitive `get`), raw text, parsed body.

    `body` is the parsed JSON; for `text/event-stream` it is the JSON of the single `data` event
    (a list when there are several, see `events`). `started`/`finished` are `time.time()` around
    the exchange, to bound the records' timestamps and latencies."""

    status: int
    headers: http.client.HTTPMessage
    text: str
    body: Any
    events: list[Any]
    started: float
    finished: float

    @property
    def elapsed_ms(self) -> float:
        return (self.finished - self.started) * 1000

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def http_request(host_port: tuple[str, int], method: str, path: str, *, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None, read_body: bool = True,
                 timeout: float = 15.0) -> Reply:
    """One request on a fresh connection. `read_body=False` returns after the response headers
    (for endless SSE streams) and closes the connection."""
    conn = http.client.HTTPConnection(*host_port, timeout=timeout)
    try:
        return request_on(conn, method, path, body=body, headers=headers, read_body=read_body)
    finally:
        conn.close()


def request_on(conn: http.client.HTTPConnection, method: str, path: str, *, body: bytes | None = None,
               headers: Mapping[str, str] | None = None, read_body: bool = True) -> Reply:
    """One request on `conn` (opened if needed; kept open for the next request)."""
    started = time.time()
    conn.request(method, path, body=body, headers=dict(headers or {}))
    response = conn.getresponse()
    text = response.read().decode("utf-8", "replace") if read_body else ""
    return _reply(response.status, response.headers, text, started, time.time())


def _reply(status: int, headers: http.client.HTTPMessage, text: str, started: float, finished: float) -> Reply:
    events: list[Any] = []
    body: Any = None
    if headers.get("Content-Type", "").startswith("text/event-stream"):
        events = [_json_or_text(data) for data in sse_data(text)]
        body = events[0] if len(events) == 1 else events
    elif text:
        body = _json_or_text(text)
    return Reply(status, headers, text, body, events, started, finished)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def sse_data(text: str) -> list[str]:
    """The `data` of each event of an SSE stream (multi-line data joined with newlines)."""
    out, data = [], None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            if data is not None:
                out.append(data)
            data = None
            continue
        field, _, value = line.partition(":")
        if field == "data":
            value = value[1:] if value.startswith(" ") else value
            data = value if data is None else f"{data}\n{value}"
    if data is not None:
        out.append(data)
    return out


def envoy(stack: Stack) -> tuple[str, int]:
    return ("127.0.0.1", stack.ports.envoy)


def mcp_headers(token: str | None, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The headers of an MCP POST; `extra` adds or (with None) removes headers."""
    headers: dict[str, str | None] = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": PROTOCOL_VERSION,
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra or {})
    return {k: v for k, v in headers.items() if v is not None}


def post_mcp(stack: Stack, token: str | None, payload: Any, *, headers: Mapping[str, str | None] | None = None,
             path: str = "/mcp") -> Reply:
    """POSTs `payload` (JSON-encoded unless bytes) to the MCP endpoint through Envoy."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return http_request(envoy(stack), "POST", path, body=body, headers=mcp_headers(token, headers))


def tool_call(name: str, arguments: Any, id: Any = 1) -> dict[str, Any]:
    """A JSON-RPC `tools/call` message."""
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


def tools_list(id: Any = 1) -> dict[str, Any]:
    """A JSON-RPC `tools/list` message."""
    return {"jsonrpc": "2.0", "id": id, "method": "tools/list"}


def call_tool(stack: Stack, token: str | None, name: str, args: Any, *, id: Any = 1,
              headers: Mapping[str, str | None] | None = None, path: str = "/mcp") -> Reply:
    """One `tools/call` through Envoy (`path` `/mcp` answers JSON, `/mcp/sse` SSE)."""
    return post_mcp(stack, token, tool_call(name, args, id), headers=headers, path=path)


def post_upstream(stack: Stack, payload: Any, *, path: str = "/mcp") -> Reply:
    """POSTs `payload` to the demo MCP server directly, bypassing Envoy (what it answers unfiltered)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return http_request(("127.0.0.1", stack.ports.mcp), "POST", path, body=body, headers=mcp_headers(None))


def worker_connections(stack: Stack, per_worker: int, *, max_connections: int = 200,
                       timeout: float = 15.0) -> list[list[http.client.HTTPConnection]]:
    """`per_worker` open connections to Envoy's MCP listener on each of its `concurrency`
    workers, by worker. Connections are opened one at a time and each is attributed to the
    worker whose `listener.<addr>.worker_<n>.downstream_cx_total` moved; surplus ones are closed.
    Nothing else may connect to the listener meanwhile. The caller closes the connections."""
    prefix = f"listener.127.0.0.1_{stack.ports.envoy}.worker_"

    def accepted() -> dict[str, int]:
        return {name: value for name, value in stack.stats(prefix).items()
                if name.endswith(".downstream_cx_total")}

    by_worker: list[list[http.client.HTTPConnection]] = [[] for _ in range(stack.concurrency)]
    before = accepted()
    for _ in range(max_connections):
        if all(len(conns) >= per_worker for conns in by_worker):
            return by_worker
        conn = http.client.HTTPConnection(*envoy(stack), timeout=timeout)
        conn.connect()
        deadline = time.monotonic() + 5
        while True:
            now = accepted()
            moved = [name for name, value in now.items() if value != before.get(name, 0)]
            if moved:
                break
            assert time.monotonic() < deadline, "Envoy did not count the new connection"
            time.sleep(0.01)
        assert len(moved) == 1, f"one connection, several workers moved: {moved}"
        before = now
        worker = int(moved[0].removeprefix(prefix).split(".")[0])
        if len(by_worker[worker]) < per_worker:
            by_worker[worker].append(conn)
        else:
            conn.close()
    for conn in (c for conns in by_worker for c in conns):
        conn.close()
    raise AssertionError(f"{max_connections} connections did not reach {per_worker} on each worker")


def post_chunked(stack: Stack, token: str | None, payload: Any, *, chunk_size: int = 64,
                 trailers: Mapping[str, str] | None = None, path: str = "/mcp") -> Reply:
    """POSTs `payload` over HTTP/1.1 with `Transfer-Encoding: chunked`, in `chunk_size` pieces,
    optionally followed by `trailers`."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    conn = http.client.HTTPConnection(*envoy(stack), timeout=15)
    started = time.time()
    try:
        conn.putrequest("POST", path)
        for name, value in mcp_headers(token, {"TE": "trailers"} if trailers else None).items():
            conn.putheader(name, value)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for i in range(0, len(body), chunk_size):
            chunk = body[i:i + chunk_size]
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in (trailers or {}).items()) + b"\r\n")
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        return _reply(response.status, response.headers, text, started, time.time())
    finally:
        conn.close()


def h2c_post(stack: Stack, token: str | None, payload: Any, *, trailers: Mapping[str, str] | None = None,
             path: str = "/mcp", headers: Mapping[str, str | None] | None = None, timeout: float = 15.0) -> Reply:
    """POSTs `payload` over cleartext HTTP/2 (prior knowledge; the demo listener's codec is AUTO),
    optionally ending the request with `trailers` instead of END_STREAM on the last DATA frame.

    A minimal stdlib client for one stream: request headers are sent as HPACK literals; of the
    response headers only `:status` is decoded (`headers` stays empty); DATA is the body. Keep
    request and response bodies under 64 KiB (no flow-control updates are sent)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request_headers = [(":method", "POST"), (":scheme", "http"), (":path", path),
                       (":authority", f"127.0.0.1:{stack.ports.envoy}"),
                       *((k.lower(), v) for k, v in mcp_headers(token, headers).items())]
    frames = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", _h2_frame(_SETTINGS, 0, 0)]
    end_stream_on_headers = not body and not trailers
    frames.append(_h2_frame(_HEADERS, _END_HEADERS | (_END_STREAM if end_stream_on_headers else 0), 1,
                            _hpack_literals(request_headers)))
    chunks = [body[i:i + 16384] for i in range(0, len(body), 16384)]
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        frames.append(_h2_frame(_DATA, _END_STREAM if last and not trailers else 0, 1, chunk))
    if trailers:
        frames.append(_h2_frame(_HEADERS, _END_HEADERS | _END_STREAM, 1, _hpack_literals(trailers.items())))

    started = time.time()
    with socket.create_connection(("127.0.0.1", stack.ports.envoy), timeout=timeout) as sock:
        sock.sendall(b"".join(frames))
        status, data = _h2_response(sock)
    finished = time.time()
    assert status is not None, f"no HTTP/2 response (body {data[:200]!r})"
    text = data.decode("utf-8", "replace")
    return Reply(status, http.client.HTTPMessage(), text, _json_or_text(text) if text else None, [], started, finished)


_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4
# RFC 7541: `:status` values of the static table, and the Huffman codes of the digits.
_STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}
_HUFFMAN_DIGITS = {(0b00000, 5): "0", (0b00001, 5): "1", (0b00010, 5): "2", (0b011001, 6): "3",
                   (0b011010, 6): "4", (0b011011, 6): "5", (0b011100, 6): "6", (0b011101, 6): "7",
                   (0b011110, 6): "8", (0b011111, 6): "9"}


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _hpack_int(value: int, prefix_bits: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out, value = [limit], value - limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes([*out, value])


def _hpack_literals(headers: Iterable[tuple[str, str]]) -> bytes:
    """Literal header fields without indexing, new names, no Huffman coding."""
    out = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _hpack_int(len(n), 7) + n + _hpack_int(len(v), 7) + v
    return out


def _h2_status(block: bytes) -> int:
    """`:status` from the first field of a response header block (fresh connection: the field is
    a static-table index, or a literal with the indexed name `:status` and a digit value)."""
    if block[0] & 0x80:
        return _STATIC_STATUS[block[0] & 0x7F]
    huffman, length = block[1] & 0x80, block[1] & 0x7F
    raw = block[2:2 + length]
    if not huffman:
        return int(raw.decode())
    digits, code, bits = "", 0, 0
    for bit in "".join(f"{b:08b}" for b in raw):
        code, bits = (code << 1) | int(bit), bits + 1
        if (code, bits) in _HUFFMAN_DIGITS:
            digits, code, bits = digits + _HUFFMAN_DIGITS[(code, bits)], 0, 0
    return int(digits)


def _h2_response(sock: socket.socket) -> tuple[int | None, bytes]:
    """Reads frames until stream 1 ends; acknowledges the server's SETTINGS."""
    buf, status, data = b"", None, b""
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                return status, data
            buf += chunk
        length, kind, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
        stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        payload, buf = buf[9:9 + length], buf[9 + length:]
        if kind == _SETTINGS and not flags & _ACK:
            sock.sendall(_h2_frame(_SETTINGS, _ACK, 0))
        elif kind == _HEADERS and stream == 1:
            status = _h2_status(payload) if status is None else status
            if flags & _END_STREAM:
                return status, data
        elif kind == _DATA and stream == 1:
            data += payload
            if flags & _END_STREAM:
                return status, data
        elif kind == _GOAWAY or (kind == _RST_STREAM and stream == 1):
            return status, data


# ---- Tokens -------------------------------------------------------------------------------


def unique(prefix: str = "e2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclasses.dataclass(frozen=True)
class Caller:
    """A user with a valid token from the stack's demo IdP."""

    sub: str
    email: str
    scopes: tuple[str, ...]
    client_id: str | None
    token: str

    def identity(self, *, client_type: str | None = None,
                 delegation_chain: list[Any] | None = None) -> dict[str, Any]:
        """The identity fields a record of this caller carries."""
        return {"sub": self.sub, "email": self.email, "scopes": list(self.scopes),
                "clientId": self.client_id, "clientType": client_type, "delegationChain": delegation_chain}


def caller(stack: Stack, scopes: Iterable[str] = ("salesforce:read",), *, sub: str | None = None,
           email: str | None = None, azp: str | None = None, **claims: Any) -> Caller:
    """A caller with a unique `sub` (unless given) and a token for `scopes` (plus `claims`)."""
    sub = sub or unique()
    email = email or f"{sub}@acme.com"
    scopes = tuple(scopes)
    token = demo_idp.mint(iss=stack.issuer, sub=sub, email=email, scope=" ".join(scopes), azp=azp, **claims)
    return Caller(sub, email, scopes, azp or claims.get("client_id"), token)


def token(stack: Stack, **claims: Any) -> str:
    """`demo_idp.mint` for this stack's issuer (claims may override it)."""
    return demo_idp.mint(**{"iss": stack.issuer, **claims})


# ---- Export API ---------------------------------------------------------------------------


def rfc3339_ms(t: float) -> str:
    """`t` (Unix seconds) as RFC 3339 UTC, milliseconds truncated (`from` is inclusive)."""
    millis = math.floor(t * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)) + f".{millis % 1000:03d}Z"


def export(stack: Stack, *, api_key: str | None = None, tenant: str | None = None,
           params: Mapping[str, Any] | None = None, path: str | None = None) -> Reply:
    """GET on the export API (default: the stack's tenant and API key). `path` (a `next` link)
    replaces tenant and params."""
    if path is None:
        base = urllib.parse.urlsplit(export_url(stack.collector_url, tenant or stack.tenant)).path
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        path = f"{base}?{query}" if query else base
    key = stack.api_key if api_key is None else api_key
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return http_request(("127.0.0.1", stack.ports.collector), "GET", path, headers=headers)


def window(since: float | None, until: float | None) -> dict[str, str]:
    """Export `from`/`to` covering the Unix times [since, until] (`to` is exclusive)."""
    out = {}
    if since is not None:
        out["from"] = rfc3339_ms(since)
    if until is not None:
        out["to"] = rfc3339_ms(until + 0.001)
    return out


def fetch_records(stack: Stack, *, since: float | None = None, until: float | None = None,
                  tenant: str | None = None, api_key: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every record (JSON format, all pages) matching the export filters `params`, of the
    stack's tenant or of `tenant` (with an `api_key` of that tenant)."""
    reply = export(stack, api_key=api_key, tenant=tenant, params={"limit": 1000, **window(since, until), **params})
    records: list[dict[str, Any]] = []
    while True:
        assert reply.status == 200, f"export: HTTP {reply.status}: {reply.text[:500]}"
        records.extend(reply.body["records"])
        if not reply.body["next"]:
            return records
        reply = export(stack, api_key=api_key, path=reply.body["next"])


def wait_for_records(stack: Stack, count: int, *, where: Callable[[dict[str, Any]], bool] | None = None,
                     since: float | None = None, until: float | None = None, timeout: float = RECORD_WAIT,
                     tenant: str | None = None, api_key: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Polls the export API until at least `count` records match `params` (export filters such
    as `user`, `tool`, `result`) and `where`; returns all that match, so that the caller can
    assert the exact number. Fails with the filter's counters and the logs after `timeout`.
    `tenant` and `api_key` read another tenant's records (see `fetch_records`).

    The records of one request are queued together, so they arrive in the same batch: once
    one is there, all of them are."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in fetch_records(stack, since=since, until=until, tenant=tenant, api_key=api_key, **params)
                   if where is None or where(r)]
        if len(records) >= count:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(records)} of {count} expected audit records (filters {params}, "
                f"since={since}, until={until}) after {timeout}s: {records}\n"
                f"filter counters: {stack.stats(ACP_STATS)}\n"
                f"collector log:\n{stack.tail('collector')}\nenvoy log:\n{stack.tail('envoy')}")
        time.sleep(0.1)


def records_of_reply(stack: Stack, reply: Reply, count: int = 1, **params: Any) -> list[dict[str, Any]]:
    """The records whose timestamp falls in `reply`'s exchange (for records with no `sub` and no
    input, e.g. a failed authentication of a bodiless request)."""
    return wait_for_records(stack, count, since=reply.started, until=reply.finished, **params)


def parse_csv(text: str) -> list[dict[str, str]]:
    """Rows of a CSV export, by column name (cells may be as large as a record's input)."""
    csv.field_size_limit(max(csv.field_size_limit(), 64 << 20))
    return list(csv.DictReader(io.StringIO(text, newline="")))


def create_api_key(stack: Stack, tenant: str) -> str:
    """`acp-collector apikey create --db <stack db> --tenant <tenant>`: the printed key."""
    argv = [str(COLLECTOR_BIN), "apikey", "create", "--db", str(stack.db_path), "--tenant", tenant]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT, check=False)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}): {done.stderr}"
    key = done.stdout.strip()
    assert key.startswith("gsk_") and "\n" not in key, f"apikey create printed {done.stdout!r}"
    return key


# ---- Checks -------------------------------------------------------------------------------

NO_IDENTITY: dict[str, Any] = {"sub": None, "email": None, "scopes": [], "clientId": None, "clientType": None,
                               "delegationChain": None}


def clean_scan(*, output_scanned: bool = True) -> dict[str, Any]:
    """`contentScan` of a forwarded call whose input (and answer) were scanned and found clean."""
    return scan_report([], risk_score=0.0, output_scanned=output_scanned)


def finding(type: str, path: str, action: str, *, location: str = "input") -> dict[str, Any]:
    """One `contentScan.findings` entry: detector, JSON path (`$.a.b[0]`, `$.result...`), action."""
    return {"type": type, "location": location, "path": path, "action": action}


def scan_report(findings: Iterable[Mapping[str, Any]], *, risk_score: float, input_scanned: bool = True,
                output_scanned: bool = True) -> dict[str, Any]:
    """A record's `contentScan`: `riskScore` is `1 - Π(1 - w)` over the distinct detectors found
    (given by the test, e.g. 0.9 for an SSN); `piiDetected` is true when a detector other than
    `ssrf` found something. `assert_record` compares `findings` in any order."""
    findings = [dict(f) for f in findings]
    return {"piiDetected": any(f["type"] != "ssrf" for f in findings), "riskScore": risk_score,
            "inputScanned": input_scanned, "outputScanned": output_scanned, "findings": findings}


def correlation(**fields: Any) -> dict[str, Any]:
    """A record's correlation fields: those of a request `post_mcp` sends (no session, trace or
    user agent; `MCP-Protocol-Version` `PROTOCOL_VERSION`; the `x-request-id` Envoy generates;
    the test's loopback address), with `fields` (camelCase names) instead."""
    unknown = set(fields) - set(CORRELATION_FIELDS)
    assert not unknown, f"test bug: {unknown} are not correlation fields"
    return {"sessionId": None, "requestId": ENVOY_REQUEST_ID, "traceId": None, "spanId": None,
            "sourceAddress": LOOPBACK_SOURCE, "userAgent": None, "protocolVersion": PROTOCOL_VERSION, **fields}


def expected_record(*, event: str, result: str, reason: str | None, tool: str | None, input: Any,
                    scope_required: list[str] | None, scope_result: str | None,
                    identity: Mapping[str, Any] = NO_IDENTITY, tenant: str = "org_acme_corp",
                    content_scan: Mapping[str, Any] | None = None,
                    sent: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every field of a record except the volatile ones (`id`, `timestamp`, `latencyMs`);
    `contentScan` is null unless given (calls refused before their input was scanned);
    `inputSummary` null (the input is stored whole); the correlation fields are `sent`, by
    default `correlation()` (a request of `post_mcp`)."""
    return {"event": event, "result": result, "reason": reason, "tool": tool, "input": input, "inputSummary": None,
            "scopeRequired": scope_required, "scopeResult": scope_result, "contentScan": content_scan,
            "tenantId": tenant, **identity, **(correlation() if sent is None else sent)}


def assert_record(record: Mapping[str, Any], expected: Mapping[str, Any], reply: Reply | None = None, *,
                  forwarded: bool = False) -> None:
    """Checks every field of `record`: the exact field set, each non-volatile field against
    `expected`, `id` a UUIDv7, `timestamp` RFC 3339 UTC milliseconds within `reply`'s exchange,
    `latencyMs` a non-negative number no larger than the client saw (and above 0.1 ms for a
    forwarded call, which proves milliseconds rather than seconds). A `Form` in `expected`
    (e.g. `requestId` `ENVOY_REQUEST_ID`) is checked against the field's form."""
    assert set(record) == RECORD_FIELDS, f"fields {sorted(set(record) ^ RECORD_FIELDS)} differ"
    assert set(expected) == RECORD_FIELDS - VOLATILE_FIELDS, "test bug: expected must give every field"
    expected = dict(expected)
    for name, want in expected.items():
        if isinstance(want, Form):
            assert want.matches(record[name]), f"{name} {record[name]!r} is not {want.what}"
            expected[name] = record[name]
    actual = {k: v for k, v in record.items() if k not in VOLATILE_FIELDS}
    assert _findings_in_order(actual) == _findings_in_order(expected)

    rid = uuid.UUID(record["id"])
    assert str(rid) == record["id"] and rid.version == 7, f"id {record['id']!r} is not a UUIDv7"

    ts = record["timestamp"]
    assert TIMESTAMP_RE.match(ts), f"timestamp {ts!r} is not YYYY-MM-DDTHH:MM:SS.mmmZ"
    latency = record["latencyMs"]
    assert isinstance(latency, (int, float)) and not isinstance(latency, bool) and latency >= 0, latency
    if forwarded:
        assert latency > 0.1, f"latencyMs {latency} of a forwarded call"
    if reply is not None:
        exchange = f"[{rfc3339_ms(reply.started)}, {rfc3339_ms(reply.finished)}]"

        def during_exchange(ms: int) -> bool:
            return math.floor(reply.started * 1000) - 5 <= ms <= math.floor(reply.finished * 1000) + 5

        assert during_exchange(_millis(ts)), f"timestamp {ts} outside the exchange {exchange}"
        assert latency <= reply.elapsed_ms + 1000, f"latencyMs {latency} > client round trip {reply.elapsed_ms:.1f} ms"
        id_ms = rid.int >> 80  # a UUIDv7 begins with its Unix time in milliseconds
        assert during_exchange(id_ms), f"id {rid} made at {rfc3339_ms(id_ms / 1000)}, outside the exchange {exchange}"


def _findings_in_order(record: Mapping[str, Any]) -> dict[str, Any]:
    """`record` with its `contentScan.findings` sorted (their order follows the filter's walk of
    the JSON and is no part of the record's meaning)."""
    scan = record.get("contentScan")
    if not isinstance(scan, dict) or not isinstance(scan.get("findings"), list):
        return dict(record)
    findings = sorted(scan["findings"], key=lambda f: json.dumps(f, sort_keys=True))
    return {**record, "contentScan": {**scan, "findings": findings}}


def _millis(ts: str) -> int:
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) * 1000 + int(ts[20:23])


def assert_unique_ids(records: Iterable[Mapping[str, Any]]) -> None:
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), f"duplicate record ids: {ids}"


def assert_jsonrpc_error(body: Any, *, code: int, id: Any, reason: str) -> dict[str, Any]:
    """`body` is a JSON-RPC error response with `code`, the request's `id` and `data.reason`."""
    assert isinstance(body, dict), body
    assert body.get("jsonrpc") == "2.0", body
    assert "id" in body and body["id"] == id, body
    assert "result" not in body, body
    error = body["error"]
    assert error["code"] == code, body
    assert error["data"] == {"reason": reason}, body
    assert isinstance(error["message"], str) and error["message"], body
    return error


def upstream_requests(stack: Stack) -> int:
    """Requests Envoy has sent to the MCP server (robust proof that a call was or was not forwarded)."""
    return stack.stats(UPSTREAM_REQUESTS).get(UPSTREAM_REQUESTS, 0)


# The filter sums its counters in each VM and adds them to Envoy's on the tick
# (`audit.flushIntervalMs`, 200 ms in the test stacks): a reading is settled once it has not
# moved for longer than a tick.
COUNTER_TICK = 0.3
COUNTER_SETTLE_LIMIT = 10.0


def counters_now(stack: Stack) -> dict[str, int]:
    """The filter's counters as Envoy shows them now (up to a tick behind the filter)."""
    return {name.removeprefix(ACP_STATS): value for name, value in stack.stats(ACP_STATS).items()}


def acp_counters(stack: Stack) -> dict[str, int]:
    """The filter's counters, by short name (`calls_allowed`, ...), once settled: read again a
    tick later until two readings agree (at most `COUNTER_SETTLE_LIMIT` s, for counters that
    keep moving, e.g. retries while the collector is down: then the last reading)."""
    deadline = time.monotonic() + COUNTER_SETTLE_LIMIT
    now = counters_now(stack)
    while time.monotonic() < deadline:
        time.sleep(COUNTER_TICK)
        previous, now = now, counters_now(stack)
        if now == previous:
            break
    return now


def counter_deltas(before: Mapping[str, int], after: Mapping[str, int], *names: str) -> dict[str, int]:
    """How much each counter `names` grew from `before` to `after` (`acp_counters` readings)."""
    return {name: after.get(name, 0) - before.get(name, 0) for name in names}


def wait_for_counter_deltas(stack: Stack, before: Mapping[str, int], deltas: Mapping[str, int],
                            timeout: float = RECORD_WAIT) -> dict[str, int]:
    """Waits until each counter has grown by at least its delta since `before`; returns the
    counters then, settled (the caller asserts exact deltas). Counters move in `on_log`, which
    may run just after the client has its response, and reach Envoy on the filter's tick."""
    deadline = time.monotonic() + timeout
    while True:
        now = counters_now(stack)
        if all(now.get(k, 0) - before.get(k, 0) >= d for k, d in deltas.items()):
            return acp_counters(stack)
        if time.monotonic() > deadline:
            got = {k: now.get(k, 0) - before.get(k, 0) for k in deltas}
            raise AssertionError(f"counter deltas {got}, expected at least {dict(deltas)}")
        time.sleep(0.05)


def collector_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs the collector binary's command line (`verify`, `key show`, `evidence`, ...)."""
    return subprocess.run([str(COLLECTOR_BIN), *args], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          check=False)
