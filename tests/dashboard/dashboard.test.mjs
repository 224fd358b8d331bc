// The Logs dashboard in Debian's headless Chromium (driven by playwright-core) against the real
// collector binary: a known set of records is ingested over HTTP, then read through the page.
// Run: `make test-dashboard` (after `make build`). The screenshot lands in .run/dashboard/.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { PNG } from "pngjs";

import { RUN_DIR, VIEWPORT, openDashboard as open, settled, signIn, signedIn as signedInAs, startStack }
  from "./support.mjs";

const ACME = "org_acme_corp";
const GLOBEX = "org_globex";
const XSS = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;

/** A valid record; `fields` override the defaults. */
function record(id, timestamp, fields = {}) {
  return {
    id, event: "tool.call", timestamp, sub: "auth0|alice", email: "alice@acme.com",
    tool: "salesforce.query", input: { query: "SELECT Name FROM Opportunity" }, inputSummary: null,
    scopes: ["salesforce:read"], scopeRequired: ["salesforce:read"], scopeResult: "pass",
    contentScan: null, result: "success", reason: null, latencyMs: 12.5, tenantId: ACME,
    clientType: "claude-desktop", clientId: "claude-desktop-app", delegationChain: null,
    // The correlation fields, null as the collector stores them when a filter sends none.
    sessionId: null, requestId: null, traceId: null, spanId: null, sourceAddress: null, userAgent: null,
    protocolVersion: null,
    ...fields,
  };
}

const bob = { sub: "auth0|bob", email: "bob@acme.com" };
const ACME_RECORDS = [
  record("r01", "2026-03-10T09:00:00.000Z"),
  record("r02", "2026-03-10T09:30:00.000Z", {
    event: "tool.denied", tool: "salesforce.update", scopeRequired: ["salesforce:write"],
    scopeResult: "fail", result: "denied", reason: "insufficient_scope",
  }),
  record("r03", "2026-03-10T10:15:00.000Z", {
    ...bob, tool: "github.create_issue", scopes: ["github:write"], scopeRequired: ["github:write"],
    delegationChain: [{ sub: "agent-7", client_id: "ci-bot" }, { sub: "orchestrator-1" }],
  }),
  record("r04", "2026-03-11T08:00:00.000Z", {
    ...bob, event: "tool.denied", tool: "files.read", input: { url: "http://169.254.169.254/latest" },
    result: "blocked", reason: "blocked_ssrf",
    contentScan: {
      piiDetected: false, riskScore: 0.9, inputScanned: true, outputScanned: false,
      findings: [{ type: "ssrf", location: "input", path: "$.url", action: "block" }],
    },
  }),
  record("r05", "2026-03-11T12:00:00.000Z", {
    event: "auth.failed", sub: null, email: null, tool: null, input: null, scopes: [],
    scopeRequired: null, scopeResult: null, result: "auth_failed", reason: "expired",
  }),
  record("r06", "2026-03-12T07:00:00.000Z", {
    sub: "auth0|carol", email: "carol@acme.com", input: { query: XSS },
  }),
  record("r07", "2026-03-12T08:00:00.000Z", { result: "error", reason: "jsonrpc_error_-32603" }),
  // 30 more calls of Alice on 2026-03-13, one a minute: two pages of 25 rows.
  ...Array.from({ length: 30 }, (_, i) =>
    record(`r${String(i + 10).padStart(2, "0")}`, `2026-03-13T10:${String(i).padStart(2, "0")}:00.000Z`)),
];
const GLOBEX_RECORDS = ["g1", "g2", "g3"].map((id, i) => record(id, `2026-03-10T0${i}:00:00.000Z`, {
  tenantId: GLOBEX, sub: "mallory", email: "mallory@globex.com", tool: "globex.secret",
}));

let stack, base, acmeKey, globexKey, runDir;

before(async () => {
  stack = await startStack({ tenants: [ACME, GLOBEX] });
  ({ base, runDir } = stack);
  ({ [ACME]: acmeKey, [GLOBEX]: globexKey } = stack.keys);
  const answer = await stack.ingest("/v1/records", { records: [...ACME_RECORDS, ...GLOBEX_RECORDS] });
  assert.deepEqual(await answer.json(), { accepted: 40, duplicates: 0 });
});

after(() => stack?.stop());

const openDashboard = () => open(stack);
const signedIn = (tenant = ACME) => signedInAs(stack, tenant);

const shownIds = (page) => page.$$eval("#records tbody tr[data-id]", (rows) => rows.map((r) => r.dataset.id));

/** Sets the filters (unset ones cleared) and waits for the table and charts to be redrawn. */
async function applyFilters(page, filters) {
  for (const name of ["from", "to", "user", "tool"]) await page.fill(`#f-${name}`, filters[name] ?? "");
  await page.selectOption("#f-result", filters.result ?? "");
  await page.click("#filters button[type=submit]");
  await settled(page);
}

/** Every row id of the filtered view, following the Next button to the last page. */
async function allShownIds(page) {
  const ids = [...await shownIds(page)];
  while (!await page.isDisabled("#next")) {
    await page.click("#next");
    await settled(page);
    ids.push(...await shownIds(page));
  }
  return ids;
}

const idsOf = (records) => records.map((r) => r.id);
const ordered = (records) => [...records].sort((a, b) => a.timestamp.localeCompare(b.timestamp));

/** The records of Acme the export API returns for `filters`, all pages. */
async function exported(filters) {
  const answer = await stack.api(ACME, `audit?${new URLSearchParams({ ...filters, format: "ndjson" })}`);
  assert.equal(answer.status, 200);
  return (await answer.text()).split("\n").filter(Boolean).map((line) => JSON.parse(line));
}

test("the page and the APIs carry the security headers", async () => {
  const page = await fetch(`${base}/dashboard`);
  assert.equal(page.status, 200);
  const csp = page.headers.get("content-security-policy");
  assert.match(csp, /script-src 'self';/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
  assert.equal(page.headers.get("x-frame-options"), "DENY");
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  const html = await page.text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc="\/dashboard\/app\.js")/, "no inline script");
  assert.doesNotMatch(html, /\bon[a-z]+=|https?:\/\//, "no inline handlers, no external URLs");
  const apiAnswer = await fetch(`${base}/${ACME}/api/v1/stats`, { headers: { Authorization: `Bearer ${acmeKey}` } });
  assert.equal(apiAnswer.headers.get("cache-control"), "no-store");
});

test("nothing is shown or fetched until a valid key is entered", async () => {
  const page = await openDashboard();
  assert.ok(await page.isVisible("#sign-in-form"));
  assert.ok(await page.isHidden("#app"));
  assert.equal(await page.$$eval("#records tbody tr", (rows) => rows.length), 0);
  assert.deepEqual(page.requests.filter((u) => u.includes("/api/")), []);

  await signIn(page, ACME, "gsk_not_a_real_key");
  await page.waitForFunction(() => document.getElementById("sign-in-error").textContent !== "");
  assert.equal(await page.textContent("#sign-in-error"), "This API key is unknown or revoked.");
  assert.ok(await page.isHidden("#app"));
  assert.equal(await page.evaluate(() => sessionStorage.getItem("acp.key")), null);

  await signIn(page, ACME, acmeKey);
  await page.waitForSelector("#records tbody tr[data-id]");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("acp.key")), acmeKey);
  await page.click("#sign-out");
  assert.ok(await page.isVisible("#sign-in-form"));
  assert.equal(await page.$$eval("#records tbody tr", (rows) => rows.length), 0);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("acp.key")), null);
  assert.ok(page.requests.every((u) => u.startsWith(base)), "only the collector is contacted");
  assert.deepEqual(page.errors, []);
});

test("filters change the table to exactly the expected rows, page by page", async () => {
  const page = await signedIn();
  assert.deepEqual(await allShownIds(page), idsOf(ordered(ACME_RECORDS)));
  const cases = [
    [{ user: "bob@acme.com" }, ["r03", "r04"]],
    [{ user: "auth0|bob" }, ["r03", "r04"]],
    [{ tool: "salesforce.query", result: "success", from: "2026-03-10", to: "2026-03-12" }, ["r01", "r06"]],
    [{ result: "denied" }, ["r02"]],
    [{ result: "auth_failed" }, ["r05"]],
    [{ from: "2026-03-11", to: "2026-03-11" }, ["r04", "r05"]],
    [{ user: "alice@acme.com", from: "2026-03-13" }, ACME_RECORDS.slice(7).map((r) => r.id)],
    [{ user: "nobody" }, []],
  ];
  for (const [filters, want] of cases) {
    await applyFilters(page, filters);
    assert.deepEqual(await allShownIds(page), want, JSON.stringify(filters));
  }
  await applyFilters(page, {});
  await page.click("#next");
  await settled(page);
  assert.equal(await page.textContent("#page-info"), "page 2");
  await page.click("#prev");
  await settled(page);
  assert.equal(await page.textContent("#page-info"), "page 1");
  assert.deepEqual(await shownIds(page), idsOf(ordered(ACME_RECORDS)).slice(0, 25));
});

test("a record's detail shows its delegation chain and scan findings", async () => {
  const page = await signedIn();
  await page.click('#records tr[data-id="r03"]');
  assert.ok(await page.isVisible("#detail"));
  assert.equal(await page.textContent("#detail-id"), "r03");
  const actors = await page.$$eval("#delegation li.actor strong", (items) => items.map((i) => i.textContent));
  assert.deepEqual(actors, ["agent-7", "orchestrator-1"]);
  assert.match(await page.textContent("#delegation"), /"client_id":"ci-bot"/);
  assert.deepEqual(JSON.parse(await page.textContent("#detail-json")), ACME_RECORDS[2]);

  await page.click('#records tr[data-id="r04"]');
  await page.waitForFunction(() => document.getElementById("detail-id").textContent === "r04");
  const findings = await page.$$eval("#findings tr.finding", (rows) =>
    rows.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.deepEqual(findings, [["ssrf", "input", "$.url", "block"]]);
  assert.match(await page.textContent("#scan-summary"), /risk score: 0\.9/);
  assert.equal(await page.textContent("#delegation"), "Not delegated.");
});

test("exported CSV and JSON hold exactly the filtered view", async () => {
  const page = await signedIn();
  const filters = { user: "alice@acme.com", from: "2026-03-10", to: "2026-03-13" };
  await applyFilters(page, filters);
  const shown = await allShownIds(page);
  assert.equal(shown.length, 33);

  const save = async (button) => {
    const [download] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
    const path = join(runDir, download.suggestedFilename());
    await download.saveAs(path);
    return readFileSync(path, "utf8");
  };
  const json = JSON.parse(await save("#export-json"));
  assert.deepEqual(idsOf(json), shown);
  assert.deepEqual(json, await exported(filters));
  assert.deepEqual(json, ordered(ACME_RECORDS).filter((r) => shown.includes(r.id)));

  const csv = (await save("#export-csv")).trimEnd().split("\r\n");
  assert.match(csv[0], /^id,timestamp,event,tenantId,sub,email,tool,result,/);
  assert.deepEqual(csv.slice(1).map((line) => line.split(",")[0]), shown);
});

test("charts show the expected counts", async () => {
  const page = await signedIn();
  const legend = () => page.$$eval("#legend li", (items) =>
    Object.fromEntries(items.map((i) => [i.dataset.result, Number(i.dataset.count)])));
  const bars = () => page.$$eval("#timeline rect.bar", (rects) => {
    const sums = {};
    for (const r of rects) sums[r.dataset.result] = (sums[r.dataset.result] ?? 0) + Number(r.dataset.count);
    return sums;
  });
  const top = (id) => page.$$eval(`#${id} li[data-name]`, (items) =>
    items.map((i) => [i.dataset.name, Number(i.dataset.count)]));
  const all = { success: 33, error: 1, denied: 1, blocked: 1, auth_failed: 1 };
  assert.deepEqual(await legend(), all);
  assert.deepEqual(await bars(), all);
  assert.deepEqual(await top("top-users"), [["alice@acme.com", 33], ["bob@acme.com", 2], ["carol@acme.com", 1]]);
  assert.deepEqual(await top("top-tools"),
    [["salesforce.query", 33], ["files.read", 1], ["github.create_issue", 1], ["salesforce.update", 1]]);
  assert.deepEqual(await top("top-denials"), [["blocked_ssrf", 1], ["expired", 1], ["insufficient_scope", 1]]);
  // The four days 2026-03-10 to 2026-03-13 in buckets of 3 h (the smallest giving at most 60).
  assert.match(await page.textContent("#bucket-info"), /\(37 records, buckets of 3 h\)/);
  const slots = await page.$$eval("#timeline rect.bar", (rects) => new Set(rects.map((r) => r.dataset.start)).size);
  assert.equal(slots, 5);

  await applyFilters(page, { user: "bob@acme.com" });
  assert.deepEqual(await legend(), { success: 1, blocked: 1 });
  assert.deepEqual(await bars(), { success: 1, blocked: 1 });
  assert.deepEqual(await top("top-users"), [["bob@acme.com", 2]]);
});

test("a tenant key never sees another tenant's data", async () => {
  const page = await openDashboard();
  await signIn(page, ACME, globexKey);
  await page.waitForFunction(() => document.getElementById("sign-in-error").textContent !== "");
  assert.equal(await page.textContent("#sign-in-error"), `This API key is not valid for tenant "${ACME}".`);
  assert.ok(await page.isHidden("#app"));

  const globex = await signedIn(GLOBEX);
  assert.deepEqual(await allShownIds(globex), ["g1", "g2", "g3"]);
  assert.deepEqual(await globex.$$eval("#legend li", (items) => items.map((i) => i.textContent)), ["success: 3"]);
  const text = await globex.textContent("body");
  assert.doesNotMatch(text, /acme\.com|salesforce/);
});

test("an XSS payload in a tool input renders as inert text", async () => {
  const page = await signedIn();
  await page.click('#records tr[data-id="r06"]');
  await page.waitForFunction(() => document.getElementById("detail-id").textContent === "r06");
  assert.equal(JSON.parse(await page.textContent("#detail-json")).input.query, XSS);
  assert.ok((await page.textContent("#detail-json")).includes("<script>window.__xss=2</script>"));
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.$$eval("main img, main script", (nodes) => nodes.length), 0);
  assert.deepEqual(page.errors, [], "no script error, no Content-Security-Policy violation");
});

test("webhook health and policy history say none configured without their endpoints", async () => {
  const page = await signedIn();
  await page.waitForSelector("#webhooks-body .none");
  await page.waitForSelector("#policies-body .none");
  assert.equal(await page.textContent("#webhooks-body"), "none configured");
  assert.equal(await page.textContent("#policies-body"), "none configured");
});

test("the page renders: a screenshot is neither blank nor uniform", async () => {
  const page = await signedIn();
  await page.click('#records tr[data-id="r04"]');
  await page.evaluate(() => window.scrollTo(0, 0));
  const path = join(RUN_DIR, "dashboard.png");
  const png = PNG.sync.read(await page.screenshot({ path }));
  assert.deepEqual([png.width, png.height], [VIEWPORT.width, VIEWPORT.height]);
  const colours = new Map();
  for (let i = 0; i < png.data.length; i += 4) {
    const rgb = png.data.readUIntBE(i, 3);
    colours.set(rgb, (colours.get(rgb) ?? 0) + 1);
  }
  const commonest = Math.max(...colours.values());
  assert.ok(colours.size > 50, `only ${colours.size} colours`);
  assert.ok(commonest < 0.9 * png.width * png.height, "one colour covers 90% of the page");
  // The result colours of the chart are on screen: success green and denied red.
  assert.ok(colours.has(0x2e8b57) && colours.has(0xc0392b), "chart colours missing");
});
