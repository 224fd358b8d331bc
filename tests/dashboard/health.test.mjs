// The dashboard's webhook health and policy history panels with real data, in headless Chromium
// against the real collector binary: the tenant's webhooks deliver to a receiver on loopback
// (one endpoint answers 200, one 500, one 410), and policy versions are posted the way the
// filter posts them. Run: `make test-dashboard`. The panels' screenshot lands in .run/dashboard/.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { PNG } from "pngjs";

import { RUN_DIR, settled, signedIn, startStack, waitFor } from "./support.mjs";

const INITECH = "org_initech";
const UMBRELLA = "org_umbrella";
const EVENTS = ["tool.call", "tool.denied", "auth.failed"];

/** A valid record of `tenant` with `result`. */
function record(id, tenant, result, fields = {}) {
  return {
    id, event: result === "success" ? "tool.call" : "tool.denied", timestamp: "2026-04-02T09:00:00.000Z",
    sub: "auth0|peter", email: "peter@initech.com", tool: "tps.report", input: { cover: true },
    scopes: ["tps:write"], scopeRequired: ["tps:write"], scopeResult: "pass", contentScan: null,
    result, reason: null, latencyMs: 4, tenantId: tenant, clientType: "cursor", clientId: "cursor-app",
    delegationChain: null, ...fields,
  };
}

const INITECH_RECORDS = [
  record("i1", INITECH, "success"),
  record("i2", INITECH, "denied", { scopeResult: "fail", scopeRequired: ["tps:admin"], reason: "insufficient_scope" }),
  record("i3", INITECH, "auth_failed", {
    event: "auth.failed", sub: null, email: null, tool: null, input: null, scopes: [], scopeRequired: null,
    scopeResult: null, reason: "expired",
  }),
];
const UMBRELLA_RECORDS = [record("u1", UMBRELLA, "success", { email: "alice@umbrella.com" })];

/**
 * A policy document in the shape the filter's `policy_snapshot` sends: the configuration's
 * reviewable sections beside the effective values it enforces.
 */
function policyDocument(tenant, { tools, rateLimits = null }) {
  const actions = (ssn, card) => ({ ssn, payment_card: card, email: "log", phone: "log", iban: "log",
    secret: "block", ssrf: "block" });
  return {
    tenants: [tenant], tenantsByHost: null, tools, defaultScopes: null, rateLimits,
    scanning: { input: actions("block", "block"), output: actions("redact", "redact"), ssrfAllowHosts: null,
      maxScanBytes: 1048576, oversized: "reject" },
    identity: {
      issuer: "https://idp.example", audiences: ["acp"],
      keySource: { kind: "remote", cluster: "idp", uri: "http://idp.example:9000/jwks.json" }, preset: null,
      claims: { subject: ["sub"], email: ["email"], tenant: ["org_id"], scopes: ["scope"], roles: [],
        clientId: ["azp"] },
      roleScopes: null, clientTypes: null, clockSkewSeconds: 60, resourceMetadataUrl: null,
    },
    immutableRules: [["ssn", "US Social Security numbers"], ["payment_card", "payment card numbers"],
      ["ssrf", "URLs and hosts that reach internal addresses (SSRF)"]]
      .map(([detector, description]) => ({ detector, input: "block", description })),
    auditFailureMode: "open", filterToolsList: true, forwardIdentityHeaders: false,
    maxResponseCaptureBytes: 65536, protectedResource: null, audit: { cluster: "collector" },
  };
}

/** The value with its object keys sorted (serde_json's order, which the hash is taken over). */
const sorted = (v) => (Array.isArray(v) ? v.map(sorted) : v && typeof v === "object"
  ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])])) : v);
/** What the filter posts for a document: `sha256:` + the SHA-256 of its compact sorted JSON. */
const policyMessage = (policy) => ({
  hash: `sha256:${createHash("sha256").update(JSON.stringify(sorted(policy))).digest("hex")}`, policy,
});

const TOOLS = { "tps.report": ["tps:write"], "salesforce.query": ["salesforce:read"] };
const RATE_LIMITS = { requestsPerMinute: 60, burst: 10, perTool: false };
const INITECH_POLICIES = [
  policyDocument(INITECH, { tools: TOOLS }),
  // A changed tool scope, then an added rate limit.
  policyDocument(INITECH, { tools: { ...TOOLS, "salesforce.query": ["salesforce:read", "salesforce:export"] } }),
  policyDocument(INITECH, {
    tools: { ...TOOLS, "salesforce.query": ["salesforce:read", "salesforce:export"] }, rateLimits: RATE_LIMITS,
  }),
].map(policyMessage);
const UMBRELLA_POLICY = policyMessage(policyDocument(UMBRELLA, { tools: { "lab.sample": ["lab:read"] } }));

/** A webhook receiver on loopback: `/ok` answers 200, `/fail` 500, `/gone` 410; keeps every request. */
function startReceiver() {
  const status = { "/ok": 200, "/fail": 500, "/gone": 410 };
  const received = { "/ok": [], "/fail": [], "/gone": [] };
  const server = createServer((request, response) => {
    const chunks = [];
    request.on("data", (c) => chunks.push(c));
    request.on("end", () => {
      received[request.url]?.push({ id: request.headers["webhook-id"], body: JSON.parse(Buffer.concat(chunks)) });
      response.writeHead(status[request.url] ?? 404).end();
    });
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () =>
    ok({ server, received, url: (path) => `http://127.0.0.1:${server.address().port}${path}` })));
}

let stack, receiver;
const hooks = {};

before(async () => {
  receiver = await startReceiver();
  // Loopback receivers allowed; failed deliveries retried within a fraction of a second.
  stack = await startStack({ tenants: [INITECH, UMBRELLA], serveArgs: ["--webhook-allow-cidrs", "127.0.0.0/8",
    "--webhook-retry-initial-ms", "50", "--webhook-retry-max-ms", "500"] });
  for (const name of ["ok", "fail", "gone"]) {
    const answer = await stack.api(INITECH, "webhooks", { method: "POST", body: JSON.stringify({
      url: receiver.url(`/${name}`), events: EVENTS, batch: { maxEvents: 10, maxWaitMs: 0 },
    }) });
    assert.equal(answer.status, 201, await answer.clone().text());
    hooks[name] = (await answer.json()).id;
  }
  const answer = await stack.ingest("/v1/records", { records: [...INITECH_RECORDS, ...UMBRELLA_RECORDS] });
  assert.deepEqual(await answer.json(), { accepted: 4, duplicates: 0 });
  // One version per post, as each filter VM sends it; a second VM's copy is no new version.
  for (const message of [...INITECH_POLICIES, INITECH_POLICIES[2], UMBRELLA_POLICY]) {
    const posted = await stack.ingest("/v1/policies", { records: [message] });
    assert.equal(posted.status, 200, await posted.clone().text());
  }
});

after(async () => {
  await stack?.stop();
  receiver?.server.close();
});

/** The JSON answer of `tenant`'s API at `path`. */
async function apiJson(tenant, path) {
  const answer = await stack.api(tenant, path);
  assert.equal(answer.status, 200, path);
  return answer.json();
}

/** The webhooks of Initech by name (ok, fail, gone) once each has reached the state `ready` accepts. */
async function webhooksWhen(ready) {
  return waitFor("the webhooks' states", async () => {
    const { webhooks } = await apiJson(INITECH, "webhooks");
    const byName = Object.fromEntries(Object.entries(hooks).map(([name, id]) => [name, webhooks.find((w) => w.id === id)]));
    return ready(byName) && byName;
  });
}

/** The cells' text of each row of `selector`, keyed by the row's `data-` attribute `key`. */
const rowsBy = (page, selector, key) => page.$$eval(selector, (rows, key) => Object.fromEntries(rows.map((r) =>
  [r.dataset[key], [...r.cells].map((c) => c.textContent)])), key);

test("webhook health shows each endpoint's real state: delivered, failing and retrying, disabled", async () => {
  const api = await webhooksWhen(({ ok, fail, gone }) => ok.lastSuccessAt && ok.lag === 0 &&
    fail.consecutiveFailures >= 2 && !gone.enabled);
  const page = await signedIn(stack, INITECH);
  const rows = await rowsBy(page, "#webhooks-body tr.webhook", "id");
  const events = EVENTS.join(" ");
  assert.deepEqual(rows[hooks.ok],
    [receiver.url("/ok"), events, "healthy", "0", api.ok.lastSuccessAt, ""]);

  const [url, shownEvents, failing, lag, lastSuccess, lastError] = rows[hooks.fail];
  assert.deepEqual([url, shownEvents, lag, lastSuccess, lastError],
    [receiver.url("/fail"), events, "3", "never", "the receiver answered 500 Internal Server Error"]);
  const inARow = Number(failing.match(/^failing, retrying \((\d+) in a row\)$/)?.[1]);
  assert.ok(inARow >= 2 && inARow <= receiver.received["/fail"].length, failing);

  assert.match(api.gone.disabledReason, /^the receiver answered 410 Gone at /);
  assert.deepEqual(rows[hooks.gone],
    [receiver.url("/gone"), events, "disabled", "3", "never", api.gone.disabledReason]);
  const badges = await page.$$eval("#webhooks-body tr.webhook .badge", (b) => b.map((x) => [x.closest("tr").dataset.id, x.className]));
  assert.deepEqual(Object.fromEntries(badges), { [hooks.ok]: "badge health-healthy",
    [hooks.fail]: "badge health-failing", [hooks.gone]: "badge health-disabled" });
  assert.deepEqual(page.errors, []);

  // What the receiver got: every record once at the healthy endpoint; the failing one the
  // same delivery again and again; the disabled one a single attempt.
  const ids = (path) => receiver.received[path].flatMap((r) => r.body.events.map((e) => e.id));
  assert.deepEqual(new Set(ids("/ok")), new Set(["i1", "i2", "i3"]));
  assert.equal(new Set(receiver.received["/fail"].map((r) => r.id)).size, 1);
  assert.equal(receiver.received["/gone"].length, 1);
});

test("another tenant's key sees none of the webhooks", async () => {
  const page = await signedIn(stack, UMBRELLA);
  assert.equal(await page.textContent("#webhooks-body"), "none configured");
  assert.equal((await stack.api(INITECH, "webhooks", {}, stack.keys[UMBRELLA])).status, 403);
  assert.equal((await stack.api(UMBRELLA, `webhooks/${hooks.ok}`)).status, 404);
});

test("policy history lists the versions newest first and shows each one's diff", async () => {
  const { policies } = await apiJson(INITECH, "policies");
  assert.deepEqual(policies.map((p) => [p.version, p.hash]),
    [[3, INITECH_POLICIES[2].hash], [2, INITECH_POLICIES[1].hash], [1, INITECH_POLICIES[0].hash]]);
  const page = await signedIn(stack, INITECH);
  const rows = await rowsBy(page, "#policies-body tr.policy", "version");
  const hashes = await page.$$eval("#policies-body tr.policy code", (codes) => codes.map((c) => c.title));
  assert.deepEqual(hashes, policies.map((p) => p.hash));
  assert.deepEqual(await page.$$eval("#policies-body tr.policy", (r) => r.map((x) => x.dataset.version)), ["3", "2", "1"]);
  for (const p of policies) {
    const [version, received, hash, button] = rows[p.version];
    assert.deepEqual([version, received], [String(p.version), p.receivedAt]);
    assert.equal(hash, `${p.hash.slice(0, 19)}…`);
    assert.equal(button, p.version > 1 ? `diff against ${p.version - 1}` : "diff against ");
  }
  assert.ok(await page.isHidden('#policies-body tr[data-version="1"] button'), "version 1 has nothing to diff against");

  const shownDiff = async (version) => {
    await page.click(`#policies-body tr[data-version="${version}"] button`);
    await page.waitForFunction((v) => document.querySelector("#policy-diff h3")?.textContent ===
      `Version ${v} against ${v - 1}`, version);
    await settled(page);
    return page.$$eval("#policy-diff tr.change", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  };
  const apiDiff = async (version) => (await apiJson(INITECH, `policies/${version}/diff?against=${version - 1}`))
    .changes.map((c) => [c.path, JSON.stringify(c.before), JSON.stringify(c.after)]);
  const scope = ['tools["salesforce.query"]', '["salesforce:read"]', '["salesforce:read","salesforce:export"]'];
  assert.deepEqual(await apiDiff(2), [scope]);
  assert.deepEqual(await shownDiff(2), [scope]);
  const limit = ["rateLimits", "null", JSON.stringify(sorted(RATE_LIMITS))];
  assert.deepEqual(await apiDiff(3), [limit]);
  assert.deepEqual(await shownDiff(3), [limit]);
  assert.deepEqual(page.errors, []);
});

test("a tenant sees only its own policy versions", async () => {
  const page = await signedIn(stack, UMBRELLA);
  const rows = await rowsBy(page, "#policies-body tr.policy", "version");
  assert.deepEqual(Object.keys(rows), ["1"]);
  assert.equal(await page.$eval("#policies-body code", (c) => c.title), UMBRELLA_POLICY.hash);
  assert.equal((await stack.api(INITECH, "policies", {}, stack.keys[UMBRELLA])).status, 403);
  assert.equal((await stack.api(UMBRELLA, "policies/2")).status, 404);
});

test("the panels render with real data: a screenshot shows each health colour", async () => {
  const page = await signedIn(stack, INITECH);
  await page.click('#policies-body tr[data-version="3"] button');
  await page.waitForSelector("#policy-diff tr.change");
  const png = PNG.sync.read(await page.locator("#health").screenshot({ path: join(RUN_DIR, "health.png") }));
  const colours = new Set();
  for (let i = 0; i < png.data.length; i += 4) colours.add(png.data.readUIntBE(i, 3));
  // healthy green, failing amber, disabled red
  for (const colour of [0x2e8b57, 0xd98a00, 0xc0392b]) assert.ok(colours.has(colour), colour.toString(16));
});
