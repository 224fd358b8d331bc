// The in-VM profile of the built filter: runs MCP tool calls through
// target/wasm32-wasip1/wasm/acp_filter.wasm in Node's V8 (tests/vmprof/host.mjs plays Envoy) and
// prints, per scenario and callback, the host calls the filter made (by function) and the
// callback's wall time (median and p99 over the iterations), then the audit records it sent.
//
//   node tests/vmprof/profile.mjs [--check] [--iterations N] [--only TEXT] [--wasm PATH]
//
// --check exits 1 when a scenario's outcome is not the expected one (local reply status or
// forwarded, records queued, the records sent to the collector), when the filter logs an error,
// or when an allowed cached-token 1 KiB tools/call makes more host calls than HOST_CALL_BUDGET.

import { generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Action, ProxyWasmHost } from "./host.mjs";

// Host calls of one allowed `tools/call` with a cached token and a 1 KiB body, from context
// creation to deletion (every import counted, WASI's too), at most. Counted on the module as
// built when this was set; where they come from:
//   request headers (2): get_current_time_nanoseconds (start), get_header_map_pairs (the map,
//     read once);
//   request body (3): get_buffer_bytes, get_shared_data + set_shared_data (the rate-limit
//     bucket, compare-and-swap; its clock is the start time read at the headers);
//   response headers (1): get_header_map_pairs (the headers are held with the answer, which
//     is scanned: its content-length is set only if the answer is rewritten);
//   response body (1): get_buffer_bytes;
//   log (2-3): get_current_time_nanoseconds (latency, and the time of the record's UUIDv7),
//     get_property (source.address, the record's sourceAddress: the one value of a record
//     Envoy holds outside the header map the filter already read); the UUID's random bits come
//     from the VM's ChaCha generator, whose one random_get, to reseed after every 64 KiB of
//     output (about 6,500 records), can fall in any call.
// Counters are summed in the VM and reach Envoy on the tick, not per request. Context
// creation, done and delete make none. Raise it only with a reason; a cut lowers it.
const HOST_CALL_BUDGET = 10;

// The downstream address Envoy resolved, as its `source.address` property holds it.
const SOURCE_ADDRESS = "203.0.113.7:51234";
const ISSUER = "https://idp.acme.test/";
const AUDIENCE = "acp-demo";
const TENANT = "org_acme_corp";
const KID = "vmprof-key-1";
const SSN = "536-22-1987";
// The order Envoy calls a stream's callbacks in (host.mjs `request`).
const CALLBACKS = ["context_create", "request_headers", "request_body", "response_headers",
  "response_body", "log", "done", "delete"];

const here = dirname(fileURLToPath(import.meta.url));
const { values: opts } = parseArgs({
  options: {
    check: { type: "boolean", default: false },
    iterations: { type: "string", default: "200" },
    // Runs only the scenarios whose name contains this text (to profile one with --cpu-prof).
    only: { type: "string", default: "" },
    wasm: { type: "string", default: join(here, "../../target/wasm32-wasip1/wasm/acp_filter.wasm") },
  },
});
const iterations = Number(opts.iterations);
if (!Number.isInteger(iterations) || iterations < 1) {
  throw new Error("--iterations must be a positive integer");
}
// Untimed runs first, so that V8 has tiered the hot functions up as in a long-running Envoy.
const warmup = Math.min(100, iterations);
// Requests between the ticks that send their records (untimed): as many as one batch holds
// (audit.batchSize), so that 64 KiB records never fill the 16 MiB outbox.
const TICK_EVERY = 100;

// --- Identity: an RS256 key whose public JWK the host serves as the remote JWKS ---

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const JWKS = JSON.stringify({
  keys: [{ ...publicKey.export({ format: "jwk" }), kid: KID, alg: "RS256", use: "sig" }],
});
const b64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

function mint(scopes, sub = "alice") {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64url({ alg: "RS256", typ: "JWT", kid: KID })}.${b64url({
    iss: ISSUER, aud: AUDIENCE, sub, email: `${sub}@acme.com`, org_id: TENANT, scope: scopes.join(" "),
    azp: "cursor-ide", iat: now, nbf: now, exp: now + 3600, jti: randomUUID(),
  })}`;
  return `${input}.${sign("sha256", Buffer.from(input), privateKey).toString("base64url")}`;
}

// The plugin configuration of envoy/acp-filter.template.yaml (remote JWKS, the demo tools and
// scopes), with rate limits high enough that the iterations are never limited: the bucket is
// still read and written through shared data on every call.
const CONFIG = JSON.stringify({
  tenant: TENANT,
  identity: {
    issuer: ISSUER,
    audiences: [AUDIENCE],
    jwks: { remote: { cluster: "acp_idp", uri: "https://idp.acme.test/.well-known/jwks.json" } },
    tenantClaim: "org_id",
    clientTypes: { "claude-desktop-app": "claude-desktop", "cursor-ide": "cursor" },
  },
  tools: {
    "salesforce.query": ["salesforce:read"],
    "salesforce.update": ["salesforce:write"],
    "github.create_issue": ["github:write"],
    "files.read": ["files:read"],
    "hr.employee_lookup": ["hr:read"],
  },
  rateLimits: { requestsPerMinute: 100000000, burst: 100000000 },
  audit: { cluster: "acp_collector", ingestToken: "vmprof-ingest-token" },
});

// --- Requests ---

const FILLER = "Quarterly pipeline review for the enterprise accounts in the western region. ";

/** A `tools/call` body of about `size` bytes: the arguments padded with plain text. */
function toolCall(id, tool, size, extra = {}) {
  const call = (note) => JSON.stringify({
    jsonrpc: "2.0", id, method: "tools/call",
    params: { name: tool, arguments: { query: "SELECT Id, Name FROM Account LIMIT 10", ...extra, note } },
  });
  const room = Math.max(0, size - call("").length);
  return call(FILLER.repeat(Math.ceil(room / FILLER.length)).slice(0, room));
}

/** The headers of an MCP POST as Envoy hands them to the filter. */
function headers(body, token) {
  return [
    [":authority", "mcp.acme.test"], [":path", "/mcp"], [":method", "POST"], [":scheme", "https"],
    ["content-type", "application/json"], ["accept", "application/json, text/event-stream"],
    ["mcp-protocol-version", "2025-11-25"], ["content-length", String(Buffer.byteLength(body))],
    ...(token ? [["authorization", `Bearer ${token}`]] : []),
    ["x-forwarded-proto", "https"], ["x-request-id", randomUUID()],
  ];
}

/** The MCP server's answer to a `tools/call`: a text result as long as the call's body. */
function upstream(requestBody) {
  const { id } = JSON.parse(requestBody);
  const text = FILLER.repeat(Math.ceil(requestBody.length / FILLER.length)).slice(0, requestBody.length);
  return {
    status: 200,
    headers: [["content-type", "application/json"]],
    body: JSON.stringify({ jsonrpc: "2.0", id, result: { content: [{ type: "text", text }], isError: false } }),
  };
}

const reader = mint(["salesforce:read"]);
// One token per iteration (and warm-up run), each the filter has not seen before.
const firstSeen = Array.from({ length: iterations + warmup },
  (_, i) => mint(["salesforce:read"], `user${i}`));

/** Each scenario: its request for iteration `i`, and the outcome it must have. */
const SCENARIOS = [
  {
    name: "allowed, cached token, 1 KiB", budgeted: true,
    request: (i) => toolCall(i, "salesforce.query", 1024), token: () => reader,
    expect: { outcome: "forwarded", record: "tool.call/success" },
  },
  {
    name: "allowed, cached token, 64 KiB",
    request: (i) => toolCall(i, "salesforce.query", 64 * 1024), token: () => reader,
    expect: { outcome: "forwarded", record: "tool.call/success" },
  },
  {
    name: "denied, missing scope",
    request: (i) => toolCall(i, "salesforce.update", 1024), token: () => reader,
    expect: { outcome: 403, record: "tool.denied/denied" },
  },
  {
    name: "blocked, SSN in arguments",
    request: (i) => toolCall(i, "salesforce.query", 1024, { ssn: SSN }), token: () => reader,
    expect: { outcome: 403, code: -32003, record: "tool.denied/blocked" },
  },
  {
    name: "unauthenticated",
    request: (i) => toolCall(i, "salesforce.query", 1024), token: () => null,
    expect: { outcome: 401, record: "auth.failed/auth_failed" },
  },
  {
    name: "first-seen token, 1 KiB",
    request: (i) => toolCall(i, "salesforce.query", 1024), token: (i) => firstSeen[i],
    expect: { outcome: "forwarded", record: "tool.call/success" },
  },
];

// --- The collector and the identity provider, as the host answers the filter's callouts ---

const sent = []; // every audit record posted, parsed
let policiesPosted = 0;

function answer(call) {
  const path = call.headers[":path"];
  if (call.cluster === "acp_idp" && path === "/.well-known/jwks.json") return { status: 200, body: JWKS };
  if (call.cluster === "acp_collector" && path === "/v1/records") {
    const { records } = JSON.parse(Buffer.from(call.body).toString());
    sent.push(...records);
    return { status: 200, body: JSON.stringify({ accepted: records.length, duplicates: 0 }) };
  }
  if (call.cluster === "acp_collector" && path === "/v1/policies") {
    policiesPosted += 1;
    return { status: 200, body: JSON.stringify({ accepted: 1, duplicates: 0 }) };
  }
  throw new Error(`unexpected HTTP call to ${call.cluster} ${path}`);
}

/** Ticks and answers every callout until no record waits in the filter's outbox and a tick
 *  has added everything the filter counted to its counters. */
// Sleeps the thread for `ms` (the filter's clock is the real one).
const pause = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function drain(host) {
  for (let round = 0; round < 1000; round++) {
    host.tick();
    if (host.pendingCalls.length === 0 && host.metric("acp.audit_records_buffered") === 0n) return;
    if (host.pendingCalls.length === 0) {
      // Fewer records than a small batch wait for the flush interval after the last batch.
      pause(5);
    }
    while (host.pendingCalls.length > 0) host.answerCall(answer);
  }
  throw new Error("the filter's audit outbox did not drain");
}

// --- Running ---

const failures = [];
const host = new ProxyWasmHost(opts.wasm, {
  pluginConfiguration: CONFIG,
  properties: new Map([["source\0address", Buffer.from(SOURCE_ADDRESS)]]),
});
const logged = () => host.logs.map(({ level, message }) => `${level}: ${message}`);
if (!host.start()) throw new Error(`the filter refused its configuration:\n${logged().join("\n")}`);
drain(host); // the first tick fetches the JWKS and posts the policy document
if (host.metric("acp.jwks_fetched") !== 1n) failures.push("the JWKS was not fetched and loaded");
if (host.tickPeriodMs !== 20) {
  failures.push(`tick period ${host.tickPeriodMs} ms, not 20 (small audit batches are looked for every 20 ms)`);
}
if (policiesPosted !== 1 || host.metric("acp.policy_versions_sent") !== 1n) {
  failures.push("the policy document was not sent");
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
const us = (ns) => (Number(ns) / 1000).toFixed(1);

let requests = 0;

/** One request of `scenario`; its outcome ("forwarded" or the local reply's status). */
function run(scenario, i) {
  if (++requests % TICK_EVERY === 0) drain(host);
  const body = scenario.request(i);
  const { stream, runs } = host.request({ headers: headers(body, scenario.token(i)), body, upstream });
  const reply = stream.localReply;
  return {
    runs,
    // Forwarded: the body callback let the request go on and no local reply was sent.
    outcome: reply ? reply.status : runs.request_body.result === Action.Continue ? "forwarded" : "held",
    code: reply ? JSON.parse(reply.body)?.error?.code : undefined,
  };
}

const results = [];
for (const scenario of SCENARIOS.filter((s) => s.name.includes(opts.only))) {
  const before = sent.length;
  // The filter counts in the VM and adds to Envoy's counters on the tick: drained, they are exact.
  drain(host);
  const queuedBefore = host.metric("acp.audit_records_queued");
  for (let i = 0; i < warmup; i++) run(scenario, iterations + i);
  const samples = [];
  for (let i = 0; i < iterations; i++) samples.push(run(scenario, i));
  drain(host);
  const queued = Number(host.metric("acp.audit_records_queued") - queuedBefore);
  const records = sent.slice(before);
  const callbacks = CALLBACKS.filter((cb) => samples[0].runs[cb]).map((cb) => {
    const times = samples.map((s) => s.runs[cb].ns).sort((a, b) => (a < b ? -1 : 1));
    const counts = samples.map((s) => [...s.runs[cb].calls.values()].reduce((a, b) => a + b, 0));
    return {
      name: cb,
      median: quantile(times, 0.5),
      p99: quantile(times, 0.99),
      calls: samples.at(-1).runs[cb].calls,
      allocations: samples.at(-1).runs[cb].allocations,
      total: counts.at(-1),
      varies: Math.min(...counts) !== Math.max(...counts) ? [Math.min(...counts), Math.max(...counts)] : null,
    };
  });
  const byTime = (a, b) => (a < b ? -1 : 1);
  const totals = samples.map((s) => Object.values(s.runs).reduce((n, r) => n + r.ns, 0n)).sort(byTime);
  // The module's own time: each callback's wall time less the time spent in the host's functions.
  const own = samples.map((s) => Object.values(s.runs).reduce((n, r) => n + r.ns - r.hostNs, 0n)).sort(byTime);
  const result = {
    scenario, callbacks, records, queued,
    outcome: samples.at(-1).outcome,
    code: samples.at(-1).code,
    // The most any iteration made (the UUID's random_get count depends on the clock).
    hostCalls: Math.max(...samples.map((s) => Object.values(s.runs)
      .reduce((n, r) => n + [...r.calls.values()].reduce((a, b) => a + b, 0), 0))),
    allocations: callbacks.reduce((n, c) => n + c.allocations, 0),
    median: quantile(totals, 0.5),
    p99: quantile(totals, 0.99),
    moduleMedian: quantile(own, 0.5),
    // The module's linear memory once the scenario has run (it only grows: the most so far).
    memoryMiB: host.exports.memory.buffer.byteLength / 2 ** 20,
  };
  results.push(result);

  const { expect } = scenario;
  for (const [i, s] of samples.entries()) {
    if (s.outcome !== expect.outcome || (expect.code !== undefined && s.code !== expect.code)) {
      failures.push(`${scenario.name}: iteration ${i}: ${s.outcome} (code ${s.code}); ` +
        `expected ${expect.outcome}${expect.code === undefined ? "" : ` (code ${expect.code})`}`);
      break;
    }
  }
  if (result.queued !== iterations + warmup) {
    failures.push(`${scenario.name}: ${result.queued} record(s) queued for ${iterations + warmup} requests; expected 1 each`);
  }
  const kinds = new Set(records.map((r) => `${r.event}/${r.result}`));
  if (records.length !== iterations + warmup || kinds.size !== 1 || !kinds.has(expect.record)) {
    failures.push(`${scenario.name}: the collector got ${records.length} record(s) (${[...kinds].join(", ")}); ` +
      `expected ${iterations + warmup} ${expect.record}`);
  }
  const unsourced = records.filter((r) => r.sourceAddress !== SOURCE_ADDRESS
    || r.protocolVersion !== "2025-11-25" || typeof r.requestId !== "string");
  if (unsourced.length) {
    failures.push(`${scenario.name}: ${unsourced.length} record(s) without the source address, protocol ` +
      `version or request id the host gave, e.g. ${JSON.stringify(unsourced[0])}`);
  }
  if (scenario.budgeted && result.hostCalls > HOST_CALL_BUDGET) {
    failures.push(`${scenario.name}: ${result.hostCalls} host calls per request, over the budget of ${HOST_CALL_BUDGET}`);
  }
}

// --- Report ---

const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);
console.log(`In-VM profile of ${relative(process.cwd(), opts.wasm)}`);
console.log(`Node ${process.version} (V8 ${process.versions.v8}); ` +
  `${iterations} timed iterations per scenario after ${warmup} untimed\n`);
console.log(`${pad("scenario", 32)} ${pad("outcome", 16)} ${lpad("records/req", 11)} ${lpad("host calls (max)", 16)} ${lpad("alloc", 5)} ${lpad("median us", 9)} ${lpad("p99 us", 9)} ${lpad("module us", 9)} ${lpad("memory MiB", 10)}`);
for (const r of results) {
  const outcome = r.outcome === "forwarded" ? "forwarded"
    : `local ${r.outcome}${r.scenario.expect.code === undefined ? "" : ` ${r.code}`}`;
  console.log(`${pad(r.scenario.name, 32)} ${pad(outcome, 16)} ${lpad(+(r.records.length / (iterations + warmup)).toFixed(2), 11)} ` +
    `${lpad(r.hostCalls, 16)} ${lpad(r.allocations, 5)} ${lpad(us(r.median), 9)} ${lpad(us(r.p99), 9)} ` +
    `${lpad(us(r.moduleMedian), 9)} ${lpad(r.memoryMiB.toFixed(1), 10)}`);
}
console.log("\nmodule us: the median of the module's own time per request, the callbacks' wall time less the time\n" +
  "spent in this host's functions (the module's allocator they call to return values counts as the module's)");
console.log("memory: the module's linear memory after the scenario (it never shrinks)");
console.log("\nPer callback: median and p99 wall time; of the last iteration, the host calls (n), the calls the\n" +
  "host made into the module's allocator to return values (alloc), and the host calls by function");
for (const r of results) {
  console.log(`\n${r.scenario.name}`);
  console.log(`  ${pad("callback", 17)} ${lpad("med us", 8)} ${lpad("p99 us", 8)} ${lpad("n", 3)} ${lpad("alloc", 5)}  host calls`);
  for (const c of r.callbacks) {
    const by = [...c.calls].map(([name, n]) => `${name.replace(/^proxy_/, "")}${n > 1 ? ` x${n}` : ""}`).join(", ");
    const varies = c.varies ? ` (varies ${c.varies[0]}-${c.varies[1]})` : "";
    console.log(`  ${pad(c.name, 17)} ${lpad(us(c.median), 8)} ${lpad(us(c.p99), 8)} ${lpad(c.total, 3)} ${lpad(c.allocations, 5)}  ${by}${varies}`.trimEnd());
  }
}
console.log(`\nAudit: ${sent.length} records sent to the collector and acknowledged ` +
  `(acp.audit_records_sent ${host.metric("acp.audit_records_sent")}, queued ${host.metric("acp.audit_records_queued")}, ` +
  `dropped ${host.metric("acp.audit_records_dropped")}); policy documents sent: ${policiesPosted}`);
const budgeted = results.find((r) => r.scenario.budgeted);
if (budgeted) {
  console.log(`Host-call budget of an allowed cached-token 1 KiB tools/call: ${budgeted.hostCalls} of ${HOST_CALL_BUDGET}`);
} else if (opts.check) {
  failures.push("--check needs the budgeted scenario (leave out --only)");
}

const serious = logged().filter((l) => l.startsWith("error") || l.startsWith("critical"));
if (serious.length > 0) failures.push(`the filter logged errors:\n  ${serious.slice(0, 5).join("\n  ")}`);
if (host.metric("acp.audit_records_sent") !== BigInt(sent.length)) failures.push("acp.audit_records_sent differs from the records the collector got");

if (failures.length > 0) {
  console.log(`\nFAILED:\n- ${failures.join("\n- ")}`);
  if (opts.check) process.exit(1);
} else if (opts.check) {
  console.log("\ncheck: every outcome as expected, host calls within budget");
}
