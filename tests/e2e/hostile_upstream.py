"""A stand-in MCP server for the hostile-input tests. Every POST gets a JSON-RPC result whose
text ends with a fake SSN (which output scanning must redact), framed by the path:

- `/mcp`: JSON, gzip-compressed only when the request asked for it (`Accept-Encoding: gzip`),
  as a well-behaved server does;
- `/mcp/gzip-always`: JSON, gzip-compressed whatever the request asked;
- `/mcp/sse-split`: one SSE event sent in 7-byte chunks (the event, its `data:` line and the
  SSN itself all split across chunks);
- `/mcp/sse-crlf`: a progress notification and the answer, as two SSE events with CRLF line
  ends;
- `/mcp/sse-side`: a log notification carrying the SSN too, then the answer, as SSE events;
- `/mcp/trailers`: JSON in two chunks, ended by a trailer rather than by the last chunk.

    hostile_upstream.py <port>
"""

from __future__ import annotations

import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from chunked_upstream import send_chunked

TEXT = "customer record, ssn 536-22-1987"
SPLIT_CHUNK = 7


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        request = json.loads(self._body() or b"{}")
        answer = json.dumps({"jsonrpc": "2.0", "id": request.get("id"),
                             "result": {"content": [{"type": "text", "text": TEXT}], "isError": False}}).encode()
        if self.path == "/mcp/sse-split":
            send_chunked(self, "text/event-stream", b"event: message\ndata: " + answer + b"\n\n", SPLIT_CHUNK, pause=0.005)
            return
        if self.path == "/mcp/sse-side":
            log = json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                              "params": {"level": "info", "data": TEXT}}).encode()
            events = b"".join(b"event: message\ndata: " + data + b"\n\n" for data in (log, answer))
            send_chunked(self, "text/event-stream", events, len(events), pause=0.005)
            return
        if self.path == "/mcp/trailers":
            send_chunked(self, "application/json", answer, len(answer) // 2 + 1, pause=0.005,
                         trailers=b"x-checksum: sha256=0\r\n")
            return
        if self.path == "/mcp/sse-crlf":
            progress = json.dumps({"jsonrpc": "2.0", "method": "notifications/progress",
                                   "params": {"progressToken": 1, "progress": 1}}).encode()
            events = b"".join(b"event: message\r\ndata: " + data + b"\r\n\r\n" for data in (progress, answer))
            send_chunked(self, "text/event-stream", events, len(events), pause=0.005)
            return
        compress = self.path == "/mcp/gzip-always" or "gzip" in self.headers.get("Accept-Encoding", "")
        body = gzip.compress(answer) if compress else answer
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if compress:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        """The request body, sized or chunked (HTTP/2 calls reach us chunked)."""
        if "chunked" not in self.headers.get("Transfer-Encoding", ""):
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return body

    def log_message(self, *_args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
