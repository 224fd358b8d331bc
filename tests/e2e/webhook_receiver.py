"""A SIEM stand-in for the webhook tests: an HTTP server on loopback that keeps every request
it receives and answers with a status the test sets, and a collector runner for tests that
need the collector alone with its own flags."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook

from stack import COLLECTOR_BIN, free_port


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    def events(self) -> list[dict[str, Any]]:
        """The events of a delivery in any of the three formats, as their `json` form."""
        text = self.body.decode()
        if self.body.startswith(b'{"events"'):
            return json.loads(text)["events"]
        if self.body.startswith(b"["):
            return [{"id": e["metadata"]["uid"], "ocsf": e} for e in json.loads(text)]
        return [json.loads(line)["event"] for line in text.splitlines() if line]


class Receiver:
    """Answers `status` (200 unless set) to every POST and keeps what was sent."""

    def __init__(self) -> None:
        self.status = 200
        self.deliveries: list[Delivery] = []
        self.answered: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    status = receiver.status
                    receiver.answered.append(status)
                    if 200 <= status < 300:
                        receiver.deliveries.append(
                            Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def received(self, path: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if path is None or d.path == path]

    def event_ids(self, path: str | None = None) -> set[str]:
        return {e["id"] for d in self.received(path) for e in d.events()}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_signatures(deliveries: list[Delivery], secret: str) -> None:
    """Every delivery carries a valid Standard Webhooks signature made with `secret`.
    `Webhook.verify` also parses the body as one JSON document, which a Splunk HEC body (one
    envelope per line) is not: those are checked against `Webhook.sign`."""
    assert deliveries
    hook = Webhook(secret)
    for d in deliveries:
        headers = {k: d.headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        if d.body.count(b"\n") > 1:
            sent = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
            if hook.sign(headers["webhook-id"], sent, d.body.decode()) != headers["webhook-signature"]:
                raise AssertionError(f"bad signature on {headers['webhook-id']}")
        else:
            hook.verify(d.body, headers)


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not so after {timeout}s: {what}")
        time.sleep(0.1)


@dataclass
class Collector:
    """The real collector binary on its own database and port, with `flags` added to `serve`."""

    run_dir: Path
    flags: list[str] = field(default_factory=list)
    ingest_token: str = "webhook-test-token"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def db(self) -> Path:
        return self.run_dir / "acp.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(COLLECTOR_BIN), *args, "--db", str(self.db)], capture_output=True, text=True,
                              timeout=60, check=False, env={**os.environ, **(env or {})})

    def api_key(self, tenant: str) -> str:
        done = self.cli("apikey", "create", "--tenant", tenant)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def start(self) -> Collector:
        log = open(self.run_dir / "collector.log", "ab")  # noqa: SIM115 (kept by the child)
        self.process = subprocess.Popen(
            [str(COLLECTOR_BIN), "serve", "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db),
             "--ingest-token", self.ingest_token, *self.flags], stdout=log, stderr=log)
        wait_until("the collector answers /healthz", self._healthy)
        return self

    def _healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log()
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def log(self) -> str:
        return (self.run_dir / "collector.log").read_text(errors="replace")[-4000:]

    def request(self, method: str, path: str, *, key: str | None = None, body: Any = None,
                raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("content-type", "application/json")
        if key is not None:
            request.add_header("authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                text = reply.read()
                return reply.status, json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            text = err.read()
            return err.code, json.loads(text) if text else None

    def ingest(self, records: list[dict[str, Any]]) -> None:
        request = urllib.request.Request(f"{self.url}/v1/records", data=json.dumps({"records": records}).encode(),
                                         method="POST")
        request.add_header("content-type", "application/json")
        request.add_header("authorization", f"Bearer {self.ingest_token}")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200, reply.read()
