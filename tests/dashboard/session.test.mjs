// The session view of the Logs dashboard against the real collector binary: records carrying
// session and trace ids (and earlier records without the keys) are ingested over HTTP; from a
// record, "This session" lists every call of its session (or its trace) in order, and the
// filters take a session or trace id, the same records the export API returns for them.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { settled, signedIn, startStack } from "./support.mjs";

const ACME = "org_acme_corp";
const SESSION = "mcp-session-7f3a";
const OTHER_SESSION = "mcp-session-0b1c";
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

/** A valid record; `fields` override the defaults. Without `fields` for them, the correlation
 * keys are absent altogether, as in records stored before they existed. */
function record(id, timestamp, fields = {}) {
  return {
    id, event: "tool.call", timestamp, sub: "auth0|alice", email: "alice@acme.com",
    tool: "salesforce.query", input: null, scopes: ["salesforce:read"],
    scopeRequired: ["salesforce:read"], scopeResult: "pass", contentScan: null, result: "success",
    reason: null, latencyMs: 3.5, tenantId: ACME, clientType: "claude-desktop",
    clientId: "claude-desktop-app", delegationChain: null, ...fields,
  };
}

const inSession = (n) => ({
  sessionId: SESSION, requestId: `req-${n}`, traceId: null, spanId: null,
  sourceAddress: "10.0.0.7:51234", userAgent: "claude-desktop/0.9", protocolVersion: "2025-06-18",
});
const chain = [{ sub: "agent-7", client_id: "ci-bot" }, { sub: "orchestrator-1" }];
const RECORDS = [
  // The session's calls, ingested out of order: the view orders them by time.
  record("s3", "2026-03-10T09:02:00.000Z", {
    ...inSession(3), event: "tool.denied", tool: "salesforce.update", scopeRequired: ["salesforce:write"],
    scopeResult: "fail", result: "denied", reason: "insufficient_scope", delegationChain: chain,
  }),
  record("s1", "2026-03-10T09:00:00.000Z", { ...inSession(1) }),
  record("s2", "2026-03-10T09:01:00.000Z", { ...inSession(2), delegationChain: chain }),
  record("s4", "2026-03-10T09:03:00.000Z", { ...inSession(4), result: "error", reason: "jsonrpc_error_-32603" }),
  // Another session of the same user, between them in time.
  record("o1", "2026-03-10T09:01:30.000Z", { sessionId: OTHER_SESSION }),
  // No session, a trace: calls of one trace.
  record("t1", "2026-03-10T10:00:00.000Z", { sessionId: null, traceId: TRACE, spanId: "00f067aa0ba902b7" }),
  record("t2", "2026-03-10T10:00:01.000Z", {
    traceId: TRACE, spanId: "00f067aa0ba902b8", event: "tool.denied", result: "blocked", reason: "blocked_ssrf",
  }),
  // An earlier record: none of the keys.
  record("e1", "2026-03-10T08:00:00.000Z"),
];

let stack;

before(async () => {
  stack = await startStack({ tenants: [ACME] });
  const answer = await stack.ingest("/v1/records", { records: RECORDS });
  assert.deepEqual(await answer.json(), { accepted: RECORDS.length, duplicates: 0 });
});

after(() => stack?.stop());

const rowIds = (page, table) => page.$$eval(`#${table} tbody tr[data-id]`, (rows) => rows.map((r) => r.dataset.id));

async function openDetail(page, id) {
  await page.click(`#records tbody tr[data-id="${id}"]`);
  await page.waitForFunction((want) => document.getElementById("detail-id").textContent === want, id);
}

/** The ids the export API returns for `filters`. */
async function exportedIds(filters) {
  const answer = await stack.api(ACME, `audit?${new URLSearchParams({ ...filters, format: "ndjson" })}`);
  assert.equal(answer.status, 200);
  return (await answer.text()).split("\n").filter(Boolean).map((line) => JSON.parse(line).id);
}

test("from any record of a session, This session lists its calls in order", async () => {
  const page = await signedIn(stack, ACME);
  await openDetail(page, "s2");
  assert.equal(await page.textContent("#detail-session"), "This session");
  await page.click("#detail-session");
  await page.waitForSelector("#session:not([hidden])");
  await settled(page);
  assert.equal(await page.textContent("#session-title"), `Session ${SESSION}`);
  assert.deepEqual(await rowIds(page, "session-calls"), ["s1", "s2", "s3", "s4"]);
  const rows = await page.$$eval("#session-calls tbody tr", (trs) =>
    trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  assert.deepEqual(rows.map((r) => [r[0], r[3], r[4], r[5], r[6]]), [
    ["1", "salesforce.query", "success", "", "salesforce:read"],
    ["2", "salesforce.query", "success", "", "salesforce:read"],
    ["3", "salesforce.update", "denied", "insufficient_scope", "salesforce:write"],
    ["4", "salesforce.query", "error", "jsonrpc_error_-32603", "salesforce:read"],
  ]);
  assert.deepEqual(rows.map((r) => r[7]), ["—", "agent-7 → orchestrator-1", "agent-7 → orchestrator-1", "—"]);
  assert.equal(await page.textContent("#session-summary"), "4 calls: 2 success, 1 error, 1 denied");
  assert.ok(await page.$eval('#session-calls tr[data-id="s3"]', (tr) => tr.classList.contains("call-denied")));
  assert.deepEqual(await exportedIds({ session: SESSION }), ["s1", "s2", "s3", "s4"]);

  // The detail names the correlation fields; a row of the session opens its own detail.
  await page.click('#session-calls tr[data-id="s3"]');
  await page.waitForFunction(() => document.getElementById("detail-id").textContent === "s3");
  const summary = await page.textContent("#detail-summary");
  for (const shown of [SESSION, "req-3", "10.0.0.7:51234", "claude-desktop/0.9", "2025-06-18"]) {
    assert.ok(summary.includes(shown), `${shown} in ${summary}`);
  }
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("a record without a session goes by its trace; an earlier record has neither", async () => {
  const page = await signedIn(stack, ACME);
  await openDetail(page, "t1");
  assert.equal(await page.textContent("#detail-session"), "This trace");
  await page.click("#detail-session");
  await page.waitForSelector("#session:not([hidden])");
  await settled(page);
  assert.equal(await page.textContent("#session-title"), `Trace ${TRACE}`);
  assert.deepEqual(await rowIds(page, "session-calls"), ["t1", "t2"]);
  assert.equal(await page.textContent("#session-summary"), "2 calls: 1 success, 1 blocked");

  await openDetail(page, "e1");
  assert.ok(await page.isDisabled("#detail-session"));
  assert.ok((await page.textContent("#detail-summary")).includes("session—"));
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("the filters take a session id or a trace id, for the table and the charts", async () => {
  const page = await signedIn(stack, ACME);
  assert.equal((await rowIds(page, "records")).length, RECORDS.length);
  for (const [filter, value, expected] of [
    ["session", OTHER_SESSION, ["o1"]],
    ["trace", TRACE, ["t1", "t2"]],
    ["session", "no-such-session", []],
  ]) {
    await page.fill("#f-session", filter === "session" ? value : "");
    await page.fill("#f-trace", filter === "trace" ? value : "");
    await page.click("#filters button[type=submit]");
    await settled(page);
    assert.deepEqual(await rowIds(page, "records"), expected, `${filter}=${value}`);
    assert.deepEqual(await exportedIds({ [filter]: value }), expected);
    const total = await page.$$eval("#legend li", (lis) => lis.reduce((n, li) => n + Number(li.dataset.count), 0));
    assert.equal(total, expected.length, `charts of ${filter}=${value}`);
  }
  // Combined with the other filters: the session's denials.
  await page.fill("#f-trace", "");
  await page.fill("#f-session", SESSION);
  await page.selectOption("#f-result", "denied");
  await page.click("#filters button[type=submit]");
  await settled(page);
  assert.deepEqual(await rowIds(page, "records"), ["s3"]);
  assert.deepEqual(page.errors, []);
  await page.close();
});
