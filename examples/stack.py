"""The ACP stack launcher: collector, demo IdP, demo MCP server and Envoy (with or without the
ACP filter), used by `make demo` and by the end-to-end tests.

    python examples/stack.py demo      # fixed demo ports, runs until Ctrl-C / SIGTERM

    from stack import Ports, Stack     # with examples/ on sys.path
    with Stack(tmp_path, Ports.free(), filter_config=lambda cfg: {**cfg, "tools": {...}}) as s:
        s.mcp_url, s.api_key, s.issuer, ...
        s.stop_collector(); ...; s.start_collector()      # or s.kill_collector() (SIGKILL)
        s.reload_listeners(new_filter_config)             # with Stack(..., lds=True)

Every child runs in its own session (Envoy gets a SIGTERM otherwise), logs to `<run dir>/<name>.log`,
and is waited for until ready; `stop()` sends SIGTERM to each child's process group, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
ENVOY_BIN = VENV_BIN / "envoy"
PYTHON = VENV_BIN / "python"
COLLECTOR_BIN = ROOT / "target" / "release" / "acp-collector"
WASM_PATH = ROOT / "target" / "wasm32-wasip1" / "wasm" / "acp_filter.wasm"
ENVOY_TEMPLATE = ROOT / "envoy" / "demo.template.yaml"
FILTER_TEMPLATE = ROOT / "envoy" / "acp-filter.template.yaml"
IDP_SCRIPT = ROOT / "examples" / "idp" / "demo_idp.py"
MCP_SCRIPT = ROOT / "examples" / "mcp_server" / "demo_mcp_server.py"
DEMO_RUN_DIR = ROOT / ".run" / "demo"

DEMO_TENANT = "org_acme_corp"
DEMO_INGEST_TOKEN = "demo-ingest-token"
AUDIENCE = "acp-demo"
JWKS_FETCHED_STAT = "wasmcustom.acp.jwks_fetched"

FilterConfig = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]]


class StackError(RuntimeError):
    """A component could not be started (the message carries its log tail)."""


@dataclasses.dataclass(frozen=True)
class Ports:
    envoy: int
    admin: int
    collector: int
    idp: int
    mcp: int

    @classmethod
    def free(cls) -> Ports:
        """Five distinct ports that are free right now."""
        sockets = [socket.socket() for _ in range(5)]
        try:
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            return cls(*(s.getsockname()[1] for s in sockets))
        finally:
            for s in sockets:
                s.close()


DEMO_PORTS = Ports(envoy=10000, admin=9901, collector=7070, idp=9000, mcp=9100)


def export_url(collector_url: str, tenant: str) -> str:
    """The collector's export API for `tenant` (GET, `Authorization: Bearer gsk_...`; query
    `from`, `to`, `user`, `tool`, `result`, `event`, `format=json|ndjson|csv`, `limit`, `cursor`)."""
    return f"{collector_url}/{urllib.parse.quote(tenant)}/api/v1/audit"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- Envoy configuration ------------------------------------------------------------------


class PlaceholderTemplate(string.Template):
    """`${NAME}` placeholders only: any other `$` (the templates' comments say `${...}`) is text."""

    pattern = r"\$\{(?P<braced>[A-Z][A-Z0-9_]*)\}(?P<named>(?!))?(?P<escaped>(?!))?(?P<invalid>(?!))?"
    flags = 0


def default_filter_config(ports: Ports, tenant: str, ingest_token: str) -> dict[str, Any]:
    """The plugin configuration of `envoy/acp-filter.template.yaml`, rendered for these ports."""
    _, block, _ = _split_value_block(_render_filter_template(ports, tenant, ingest_token))
    return json.loads("\n".join(block))


def render_filter(ports: Ports, tenant: str, ingest_token: str, config: Mapping[str, Any]) -> str:
    """The ACP filter's YAML (an `http_filters` entry) with `config` as its plugin configuration."""
    head, block, tail = _split_value_block(_render_filter_template(ports, tenant, ingest_token))
    indent = min(len(line) - len(line.lstrip()) for line in block if line.strip())
    body = [" " * indent + line for line in json.dumps(config, indent=2).splitlines()]
    return "\n".join([*head, *body, *tail])


# The demo's access log: one JSON line per request. `request_id` and `traceparent` are the
# headers as the filter saw them (Envoy sets `x-request-id` before any filter runs), so a
# record's `requestId` finds its line; `source` is the address in the record's `sourceAddress`.
ACCESS_LOG_FORMAT = {
    "start_time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(:PATH)%",
    "status": "%RESPONSE_CODE%", "duration_ms": "%DURATION%", "request_id": "%REQ(X-REQUEST-ID)%",
    "traceparent": "%REQ(TRACEPARENT)%", "source": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "user_agent": "%REQ(USER-AGENT)%",
}


def render_envoy(ports: Ports, acp_filter: str = "", *, access_log: Path | None = None,
                 connection_manager: Mapping[str, Any] | None = None) -> str:
    """`envoy/demo.template.yaml` for these ports; `acp_filter` is the filter YAML or empty,
    `access_log` the file of the access log (none without), `connection_manager` further
    settings of the HTTP connection manager (e.g. `use_remote_address`)."""
    return PlaceholderTemplate(ENVOY_TEMPLATE.read_text()).substitute(
        ADMIN_PORT=ports.admin, ENVOY_PORT=ports.envoy, MCP_PORT=ports.mcp,
        COLLECTOR_PORT=ports.collector, IDP_PORT=ports.idp, ACP_FILTER=acp_filter,
        CONNECTION_MANAGER="\n".join(f"          {k}: {json.dumps(v)}" for k, v in (connection_manager or {}).items()),
        ACCESS_LOG="" if access_log is None else _access_log_yaml(access_log))


def _access_log_yaml(path: Path) -> str:
    """The connection manager's `access_log`: a file, one JSON object (`ACCESS_LOG_FORMAT`) a line."""
    return "\n".join([
        "          access_log:",
        "          - name: envoy.access_loggers.file",
        "            typed_config:",
        '              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog',
        f"              path: {json.dumps(str(path))}",
        "              log_format:",
        "                json_format:",
        *(f"                  {k}: {json.dumps(v)}" for k, v in ACCESS_LOG_FORMAT.items())])


def _render_filter_template(ports: Ports, tenant: str, ingest_token: str) -> str:
    return PlaceholderTemplate(FILTER_TEMPLATE.read_text()).substitute(
        WASM_PATH=WASM_PATH, TENANT=tenant, ISSUER=_issuer(ports), AUDIENCE=AUDIENCE,
        INGEST_TOKEN=ingest_token)


def _split_value_block(yaml_text: str) -> tuple[list[str], list[str], list[str]]:
    """Splits the YAML around the block scalar of its `value: |` key (the plugin JSON)."""
    lines = yaml_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "value: |") + 1
    key_indent = len(lines[start - 1]) - len(lines[start - 1].lstrip())
    end = start
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > key_indent):
        end += 1
    return lines[:start], lines[start:end], lines[end:]


def _split_listeners(envoy_yaml: str, lds_path: Path) -> tuple[str, str]:
    """A rendered bootstrap split in two: the bootstrap without its listeners, reading them from
    the watched LDS file `lds_path`, and that file's content."""
    lines = envoy_yaml.splitlines()
    start, end = lines.index("  listeners:"), lines.index("  clusters:")
    listeners = [line[2:] for line in lines[start + 1:end]]
    first = listeners[0].replace("- ", '- "@type": type.googleapis.com/envoy.config.listener.v3.Listener\n  ', 1)
    lds = "\n".join(["resources:", first, *listeners[1:]]) + "\n"
    bootstrap = "\n".join([*lines[:start], *lines[end:], "node: { id: acp, cluster: acp }",
                           "dynamic_resources:",
                           f"  lds_config: {{ resource_api_version: V3, path_config_source: {{ path: {lds_path} }} }}"])
    return bootstrap + "\n", lds


def _issuer(ports: Ports) -> str:
    return f"http://127.0.0.1:{ports.idp}"


# ---- Processes ----------------------------------------------------------------------------


class Child:
    """One child process in its own session, output appended to `log`."""

    def __init__(self, argv: list[str], log: Path):
        self._log_file: IO[bytes] = log.open("ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})

    def exited(self) -> int | None:
        """The exit status, or None while running."""
        return self.proc.poll()

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float) -> None:
        """Waits up to `timeout` for the child to exit, then kills its process group."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait()
        self._signal(signal.SIGKILL)  # anything the child left behind in its group
        self._log_file.close()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


def _require(*paths: Path) -> None:
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    if missing:
        raise StackError(f"missing {', '.join(missing)}: run `make build`")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _tcp_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _port_in_use(port: int) -> bool:
    # SO_REUSEADDR like the servers themselves: only a live listener makes the bind fail.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return False
        except OSError:
            return True


# ---- The stack ----------------------------------------------------------------------------


class Stack:
    """The demo stack on `ports`, run from `run_dir` (logs, rendered Envoy config, audit DB).

    `wasm_filter=False` runs plain Envoy (no ACP filter); `collector=False` leaves the collector
    stopped until `start_collector()`. `filter_config` replaces the plugin configuration: a
    mapping is used as is, a callable gets a copy of the default (`default_filter_config`) and
    returns the one to use. With a remote JWKS, `start()` also waits until every Wasm VM (one
    per worker, one on the main thread) has loaded the keys, unless `wait_for_jwks=False`.
    `upstream` replaces the demo MCP server with another command listening on `ports.mcp`
    (`{port}` in its arguments is replaced), `idp_command` the demo IdP likewise on `ports.idp`;
    `idp=False` leaves the IdP stopped until `start_idp()`. `http_filters_before` is Envoy YAML
    of HTTP filters placed before the ACP filter (e.g. `jwt_authn`); `envoy_cpu` pins Envoy to
    one CPU (benchmarks). `lds=True` serves the listener from a watched LDS file
    (`reload_listeners`); `drain_seconds` sets Envoy's `--drain-time-s` (how long a replaced
    listener or filter chain drains). `connection_manager` adds settings to Envoy's HTTP
    connection manager (e.g. `{"use_remote_address": True}`). Envoy writes its access log to
    `access_log_path` (unless the class's `ACCESS_LOG` is false).
    """

    ACCESS_LOG = True

    def __init__(self, run_dir: str | os.PathLike[str], ports: Ports | None = None, *,
                 tenant: str = DEMO_TENANT, ingest_token: str = DEMO_INGEST_TOKEN,
                 wasm_filter: bool = True, filter_config: FilterConfig | None = None,
                 collector: bool = True, concurrency: int = 2, envoy_log_level: str = "info",
                 wait_for_jwks: bool = True, startup_timeout: float = 60.0, stop_timeout: float = 10.0,
                 upstream: list[str] | None = None, envoy_cpu: int | None = None, lds: bool = False,
                 drain_seconds: int | None = None, idp: bool = True, idp_command: list[str] | None = None,
                 http_filters_before: str = "", connection_manager: Mapping[str, Any] | None = None):
        self.run_dir = Path(run_dir).resolve()
        self.ports = ports or Ports.free()
        self.tenant = tenant
        self.ingest_token = ingest_token
        self.wasm_filter = wasm_filter
        self.concurrency = concurrency
        self.envoy_log_level = envoy_log_level
        self.wait_for_jwks = wait_for_jwks
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.api_key: str | None = None
        self._filter_override = filter_config
        self._upstream = upstream
        self._envoy_cpu = envoy_cpu
        self._with_collector = collector
        self.lds = lds
        self._drain_seconds = drain_seconds
        self._with_idp = idp
        self._idp_command = idp_command
        self._http_filters_before = http_filters_before
        self._connection_manager = dict(connection_manager or {})
        self._children: dict[str, Child] = {}

    # -- addresses

    @property
    def envoy_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.envoy}"

    @property
    def mcp_url(self) -> str:
        """MCP through Envoy, JSON responses."""
        return f"{self.envoy_url}/mcp"

    @property
    def mcp_sse_url(self) -> str:
        """MCP through Envoy, SSE responses."""
        return f"{self.envoy_url}/mcp/sse"

    @property
    def upstream_mcp_url(self) -> str:
        """The demo MCP server directly, bypassing Envoy."""
        return f"http://127.0.0.1:{self.ports.mcp}/mcp"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.admin}"

    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.collector}"

    @property
    def export_url(self) -> str:
        return export_url(self.collector_url, self.tenant)

    @property
    def issuer(self) -> str:
        """The demo IdP's issuer (and base URL)."""
        return _issuer(self.ports)

    @property
    def audience(self) -> str:
        return AUDIENCE

    @property
    def lds_path(self) -> Path:
        """The LDS file Envoy watches (with `lds=True`)."""
        return self.run_dir / "lds.yaml"

    @property
    def db_path(self) -> Path:
        return self.run_dir / "audit.db"

    @property
    def access_log_path(self) -> Path:
        """Envoy's access log: one JSON line per request (`ACCESS_LOG_FORMAT`)."""
        return self.run_dir / "access.log"

    def log_path(self, name: str) -> Path:
        """Log of child `name`: `collector`, `idp`, `mcp` or `envoy`."""
        return self.run_dir / f"{name}.log"

    # -- configuration

    def default_filter_config(self) -> dict[str, Any]:
        return default_filter_config(self.ports, self.tenant, self.ingest_token)

    def filter_config(self) -> dict[str, Any]:
        """The plugin configuration this stack gives the ACP filter."""
        override = self._filter_override
        if override is None:
            return self.default_filter_config()
        if callable(override):
            return dict(override(copy.deepcopy(self.default_filter_config())))
        return dict(override)

    def envoy_config(self) -> str:
        """The rendered Envoy bootstrap YAML."""
        acp_filter = (render_filter(self.ports, self.tenant, self.ingest_token, self.filter_config())
                      if self.wasm_filter else "")
        return render_envoy(self.ports, self._http_filters_before + acp_filter,
                            access_log=self.access_log_path if self.ACCESS_LOG else None,
                            connection_manager=self._connection_manager)

    # -- lifecycle

    def start(self) -> Stack:
        """Starts every component and waits until each is ready; on failure stops them all."""
        _require(ENVOY_BIN, PYTHON, *([WASM_PATH] if self.wasm_filter else []))
        for name in ("envoy", "admin", "idp", "mcp"):
            self._check_port(name, getattr(self.ports, name))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self._with_collector:
                self.start_collector()
            # The IdP, the MCP server and Envoy start side by side (Envoy compiling the filter
            # takes longest); the filter fetches its keys once the IdP answers.
            if self._with_idp:
                self._spawn_idp()
            upstream = self._upstream or [str(PYTHON), str(MCP_SCRIPT), "--port", "{port}"]
            self._spawn("mcp", [arg.replace("{port}", str(self.ports.mcp)) for arg in upstream])
            config = self.run_dir / "envoy.yaml"
            bootstrap = self.envoy_config()
            if self.lds:
                bootstrap, listeners = _split_listeners(bootstrap, self.lds_path)
                self._write_lds(listeners)
            config.write_text(bootstrap)
            pin = [] if self._envoy_cpu is None else ["taskset", "-c", str(self._envoy_cpu)]
            drain = [] if self._drain_seconds is None else ["--drain-time-s", str(self._drain_seconds)]
            self._spawn("envoy", [*pin, str(ENVOY_BIN), "-c", str(config), "--concurrency", str(self.concurrency),
                                  "--disable-hot-restart", "-l", self.envoy_log_level, *drain])
            if self._with_idp:
                self._wait_idp()
            self._wait("mcp", lambda: _tcp_open(self.ports.mcp))
            self._wait("envoy", lambda: _http_ok(f"{self.admin_url}/ready"))
            fetched = {"remote", "discovery"} & set(self.filter_config()["identity"]["jwks"])
            if self.wasm_filter and self.wait_for_jwks and fetched:
                self.wait_for_stat(JWKS_FETCHED_STAT, self.concurrency + 1)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops every child: SIGTERM to all, then SIGKILL whatever outlives `stop_timeout`."""
        children = list(self._children.values())
        self._children.clear()
        for child in children:
            child.terminate()
        deadline = time.monotonic() + self.stop_timeout
        for child in children:
            child.wait(max(0.0, deadline - time.monotonic()))

    def start_collector(self) -> None:
        """Starts the collector on its port and DB (creating the tenant's API key the first
        time) and waits for `/healthz`."""
        if "collector" in self._children:
            raise StackError("the collector is already running")
        _require(COLLECTOR_BIN)
        self._check_port("collector", self.ports.collector)
        if self.api_key is None:
            self.api_key = self._create_api_key()
            (self.run_dir / "api-key").write_text(self.api_key + "\n")
        self._spawn("collector", [str(COLLECTOR_BIN), "serve", "--listen", f"127.0.0.1:{self.ports.collector}",
                                  "--db", str(self.db_path), "--ingest-token", self.ingest_token])
        self._wait("collector", lambda: _http_ok(f"{self.collector_url}/healthz"))

    def stop_collector(self) -> None:
        """Stops the collector alone (SIGTERM, then SIGKILL after `stop_timeout`)."""
        self._stop_child("collector")

    def kill_collector(self) -> None:
        """Kills the collector with SIGKILL, whatever it is doing, and reaps it."""
        self._stop_child("collector", kill=True)

    def reload_listeners(self, filter_config: FilterConfig | None = None) -> None:
        """With `lds=True`: rewrites the watched LDS file, with `filter_config` (as in the
        constructor) as the ACP filter's new configuration when given, and waits until Envoy has
        accepted the update. The replaced filter chain drains for `drain_seconds`."""
        if not self.lds:
            raise StackError("reload_listeners needs Stack(..., lds=True)")
        if filter_config is not None:
            self._filter_override = filter_config
        accepted = "listener_manager.lds.update_success"
        before = self.stats(accepted).get(accepted, 0)
        self._write_lds(_split_listeners(self.envoy_config(), self.lds_path)[1])
        self.wait_for_stat(accepted, before + 1)

    def _write_lds(self, content: str) -> None:
        # Envoy sees a watched file change when another file is moved onto it.
        staged = self.lds_path.with_suffix(".staged")
        staged.write_text(content)
        os.replace(staged, self.lds_path)

    def start_idp(self, command: list[str] | None = None) -> None:
        """Starts the IdP (the demo IdP, `idp_command`, or `command`, which then replaces it)
        and waits until its port accepts connections."""
        if command is not None:
            self._idp_command = command
        if "idp" in self._children:
            raise StackError("the IdP is already running")
        self._spawn_idp()
        self._wait_idp()

    def _spawn_idp(self) -> None:
        self._check_port("idp", self.ports.idp)
        argv = self._idp_command or [str(PYTHON), str(IDP_SCRIPT), "serve", "--port", "{port}"]
        self._spawn("idp", [arg.replace("{port}", str(self.ports.idp)) for arg in argv])

    def _wait_idp(self) -> None:
        self._wait("idp", lambda: _tcp_open(self.ports.idp))

    def stop_idp(self) -> None:
        """Stops the IdP alone (SIGTERM, then SIGKILL after `stop_timeout`)."""
        self._stop_child("idp")

    def stats(self, prefix: str = "") -> dict[str, int]:
        """Envoy's counters and gauges whose name starts with `prefix` (the filter's are
        `wasmcustom.acp.*`)."""
        url = f"{self.admin_url}/stats?format=json&filter={urllib.parse.quote('^' + re.escape(prefix))}"
        with urllib.request.urlopen(url, timeout=5) as response:
            stats = json.load(response)["stats"]
        return {s["name"]: s["value"] for s in stats if "value" in s}

    def wait_for_stat(self, name: str, at_least: int, timeout: float | None = None) -> int:
        """Waits until Envoy's stat `name` reaches `at_least`; returns its value."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        while (value := self.stats(name).get(name, 0)) < at_least:
            if time.monotonic() > deadline:
                raise StackError(f"{name} is {value}, not {at_least}, after waiting; "
                                 f"{self.log_path('envoy')}:\n{self.tail('envoy')}")
            time.sleep(0.05)
        return value

    def pid(self, name: str) -> int:
        """Process id of child `name` (e.g. to read its CPU time)."""
        return self._children[name].proc.pid

    def failed(self) -> tuple[str, int] | None:
        """(name, exit status) of a child that has exited although it was not stopped."""
        for name, child in self._children.items():
            status = child.exited()
            if status is not None:
                return name, status
        return None

    def tail(self, name: str, lines: int = 30) -> str:
        """The last lines of child `name`'s log."""
        path = self.log_path(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- internals

    @staticmethod
    def _check_port(name: str, port: int) -> None:
        if _port_in_use(port):
            raise StackError(f"port {port} ({name}) is already in use")

    def _create_api_key(self) -> str:
        argv = [str(COLLECTOR_BIN), "apikey", "create", "--db", str(self.db_path), "--tenant", self.tenant]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)
        key = done.stdout.strip()
        if done.returncode != 0 or not key.startswith("gsk_"):
            raise StackError(f"`{' '.join(argv)}` failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        return key

    def _stop_child(self, name: str, kill: bool = False) -> None:
        child = self._children.pop(name, None)
        if child is None:
            raise StackError(f"the {name} is not running")
        if kill:
            child.kill()
        else:
            child.terminate()
        child.wait(self.stop_timeout)

    def _spawn(self, name: str, argv: list[str]) -> None:
        self._children[name] = Child(argv, self.log_path(name))

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        child = self._children[name]
        deadline = time.monotonic() + self.startup_timeout
        while not ready():
            status = child.exited()
            if status is not None:
                raise StackError(f"{name} exited with status {status} while starting; "
                                 f"{self.log_path(name)}:\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise StackError(f"{name} not ready after {self.startup_timeout:.0f}s; "
                                 f"{self.log_path(name)}:\n{self.tail(name)}")
            time.sleep(0.05)


# ---- make demo ----------------------------------------------------------------------------


def _banner(stack: Stack) -> str:
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "salesforce.query", "arguments": {"query": "SELECT Name FROM Opportunity"}}})
    return f"""
ACP demo is running (logs in {stack.run_dir.relative_to(ROOT)}/, Envoy's access log in {stack.access_log_path.relative_to(ROOT)}).
Ctrl-C stops it.

  MCP through ACP   {stack.mcp_url}   (SSE responses: {stack.mcp_sse_url})
  Collector         {stack.collector_url}
  Demo IdP          {stack.issuer}   (JWKS: {stack.issuer}/.well-known/jwks.json)
  Tenant            {stack.tenant}
  API key           {stack.api_key}   (also in {stack.run_dir.relative_to(ROOT)}/api-key)
  Logs dashboard    {stack.collector_url}/dashboard   (sign in with the tenant and the API key)

Mint a token:
  TOKEN=$(make -s token SUB=alice EMAIL=alice@acme.com TENANT={stack.tenant} SCOPES="salesforce:read")

Call a tool through ACP:
  curl -s {stack.mcp_url} -H "Authorization: Bearer $TOKEN" \\
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\
    -d '{call}'

Export the audit trail (JSON; add &format=csv for CSV):
  curl -s -H "Authorization: Bearer {stack.api_key}" "{stack.export_url}?from=$(date -u +%F)"

Replay the reference scenario:  make demo-calls
"""


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stopped(*_args: object) -> None:
    raise _Stopped


def demo() -> int:
    """`make demo`: the stack on the demo ports with a fresh DB, until Ctrl-C or SIGTERM."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: it may be inherited as ignored
        signal.signal(sig, _raise_stopped)
    busy = [port for port in dataclasses.astuple(DEMO_PORTS) if _port_in_use(port)]
    if busy:
        print(f"The demo could not start: port(s) {busy} already in use (is a demo running?)", file=sys.stderr)
        return 1
    shutil.rmtree(DEMO_RUN_DIR, ignore_errors=True)
    stack = Stack(DEMO_RUN_DIR, DEMO_PORTS)
    try:
        stack.start()
        print(_banner(stack), flush=True)
        while (failure := stack.failed()) is None:
            time.sleep(0.5)
        name, status = failure
        print(f"\n{name} exited unexpectedly with status {status}; {stack.log_path(name)}:\n"
              f"{stack.tail(name)}\nStopping the demo.", file=sys.stderr)
        return 1
    except _Stopped:
        print("\nStopping the demo.", file=sys.stderr)
        return 0
    except StackError as err:
        print(f"The demo could not start: {err}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()


if __name__ == "__main__":
    if sys.argv[1:] != ["demo"]:
        sys.exit(f"usage: {sys.argv[0]} demo")
    sys.exit(demo())
