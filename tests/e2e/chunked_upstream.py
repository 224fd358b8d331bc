"""A stand-in MCP server whose answers arrive in pieces: every POST gets a JSON-RPC result of
about 4 KB (a text ending with a fake SSN), sent with chunked encoding in 1000-byte chunks 50 ms
apart, so that Envoy hands the body to the filter in several calls.

    chunked_upstream.py <port>
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TEXT = "x" * 4000 + " ssn 536-22-1987"
CHUNK = 1000


def send_chunked(handler: BaseHTTPRequestHandler, content_type: str, body: bytes, size: int, pause: float,
                 trailers: bytes = b"") -> None:
    """Answers 200 with `body` in chunks of `size` bytes, `pause` seconds apart, then `trailers`
    (header lines, each ending in CRLF)."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for i in range(0, len(body), size):
        chunk = body[i:i + size]
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        handler.wfile.flush()
        time.sleep(pause)
    handler.wfile.write(b"0\r\n" + trailers + b"\r\n")
    handler.wfile.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        body = json.dumps({"jsonrpc": "2.0", "id": request.get("id"),
                           "result": {"content": [{"type": "text", "text": TEXT}], "isError": False}}).encode()
        send_chunked(self, "application/json", body, CHUNK, pause=0.05)

    def log_message(self, *_args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
