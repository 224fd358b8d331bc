// The ACP Logs dashboard. Every value shown comes from audit records, which hold
// caller-controlled strings: the page only ever sets textContent and attributes, never HTML.
"use strict";

const RESULTS = ["success", "error", "denied", "blocked", "rate_limited", "auth_failed"];
const FILTERS = {
  from: "f-from", to: "f-to", user: "f-user", tool: "f-tool", session: "f-session", trace: "f-trace",
  result: "f-result",
};
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG_NS, tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

/** An API answer that is not 2xx: its status and the collector's `error` message. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const session = {
  get tenant() { return sessionStorage.getItem("acp.tenant"); },
  get key() { return sessionStorage.getItem("acp.key"); },
  save(tenant, key) {
    sessionStorage.setItem("acp.tenant", tenant);
    sessionStorage.setItem("acp.key", key);
  },
  clear() { sessionStorage.removeItem("acp.tenant"); sessionStorage.removeItem("acp.key"); },
};

/** The tenant API `path` (under /{tenant}/api/v1/) with `params`, or an absolute path. */
function apiUrl(path, params = {}) {
  const base = path.startsWith("/") ? path : `/${encodeURIComponent(session.tenant)}/api/v1/${path}`;
  const query = new URLSearchParams(params).toString();
  return query ? `${base}${base.includes("?") ? "&" : "?"}${query}` : base;
}

async function api(path, params) {
  const response = await fetch(apiUrl(path, params), {
    headers: { Authorization: `Bearer ${session.key}` },
    cache: "no-store",
    credentials: "omit",
  });
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = (await response.json()).error || message; } catch { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  return response;
}

function authMessage(err) {
  if (err.status === 401) return "This API key is unknown or revoked.";
  if (err.status === 403) return `This API key is not valid for tenant "${session.tenant}".`;
  return `The collector refused the request: ${err.message}`;
}

// ---- sign in / out

async function signIn(tenant, key) {
  session.save(tenant, key);
  try {
    await api("audit", { limit: 1 });
  } catch (err) {
    signOut(err instanceof ApiError ? authMessage(err) : `Cannot reach the collector: ${err.message}`);
    return;
  }
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = `tenant ${tenant}`;
  refresh();
}

/** Forgets the key and every record shown. */
function signOut(message = "") {
  session.clear();
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("who").textContent = "";
  $("sign-in-error").textContent = message;
  for (const id of ["timeline", "legend", "top-users", "top-tools", "top-denials", "webhooks-body",
    "policies-body", "policy-diff", "delegation", "detail-summary", "session-title", "session-summary"]) {
    $(id).replaceChildren();
  }
  $("records").tBodies[0].replaceChildren();
  $("session-calls").tBodies[0].replaceChildren();
  $("detail").hidden = true;
  $("session").hidden = true;
}

/** Shows `err`; an authentication failure signs out. */
function fail(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) signOut(authMessage(err));
  else $("error").textContent = err.message;
}

// ---- filters and the table

function filterParams() {
  const params = {};
  for (const [name, id] of Object.entries(FILTERS)) {
    const value = $(id).value.trim();
    if (value) params[name] = value;
  }
  return params;
}

/** URLs of the pages seen so far (the cursor chain), and the one shown. */
const pager = { urls: [], index: 0, next: null };

function refresh() {
  $("error").textContent = "";
  $("detail").hidden = true;
  $("session").hidden = true;
  pager.urls = [apiUrl("audit", { ...filterParams(), limit: $("f-limit").value })];
  pager.index = 0;
  showPage().catch(fail);
  loadCharts().catch(fail);
  loadWebhooks().catch(fail);
  loadPolicies().catch(fail);
}

/** Runs `load` with `id` marked busy (`aria-busy`) until it is done. */
async function busy(id, load) {
  $(id).setAttribute("aria-busy", "true");
  try {
    await load();
  } finally {
    $(id).removeAttribute("aria-busy");
  }
}

const showPage = () => busy("records", async () => {
  const page = await (await api(pager.urls[pager.index])).json();
  pager.next = page.next;
  const rows = page.records.map((record) => {
    const row = el("tr", { "data-id": record.id, tabindex: 0 },
      el("td", {}, record.timestamp),
      el("td", {}, record.event),
      el("td", {}, record.email || record.sub || "—"),
      el("td", {}, record.tool ?? "—"),
      el("td", {}, el("span", { class: `badge result-${record.result}` }, record.result)),
      el("td", {}, record.reason ?? ""),
      el("td", { class: "num" }, record.latencyMs.toFixed(1)));
    row.addEventListener("click", () => showDetail(record));
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") showDetail(record); });
    return row;
  });
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No records match.")));
  $("records").tBodies[0].replaceChildren(...rows);
  $("page-info").textContent = `page ${pager.index + 1}`;
  $("prev").disabled = pager.index === 0;
  $("next").disabled = !pager.next;
});

function turnPage(step) {
  if (step > 0 && pager.index === pager.urls.length - 1) pager.urls.push(pager.next);
  pager.index += step;
  showPage().catch(fail);
}

// ---- a record's detail

function showDetail(record) {
  $("detail-id").textContent = record.id;
  $("detail-summary").replaceChildren(...[
    ["user", [record.sub, record.email].filter(Boolean).join(" · ") || "—"],
    ["client", [record.clientType, record.clientId].filter(Boolean).join(" · ") || "—"],
    ["scopes", record.scopes.join(" ") || "—"],
    ["scopes required", (record.scopeRequired ?? []).join(" ") || "—"],
    ["scope check", record.scopeResult ?? "not evaluated"],
    ["session", record.sessionId ?? "—"],
    ["trace", [record.traceId, record.spanId && `span ${record.spanId}`].filter(Boolean).join(" · ") || "—"],
    ["request", record.requestId ?? "—"],
    ["source", record.sourceAddress ?? "—"],
    ["user agent", record.userAgent ?? "—"],
    ["MCP version", record.protocolVersion ?? "—"],
  ].flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));

  const chain = record.delegationChain ?? [];
  $("delegation").replaceChildren(...(chain.length
    ? chain.map((actor, i) => el("li", { class: "actor" },
      el("strong", {}, actor.sub ?? "(no sub)"),
      ` ${i === 0 ? "(current actor)" : "(earlier actor)"} `,
      el("code", {}, JSON.stringify(actor))))
    : [el("li", { class: "none" }, "Not delegated.")]));

  const scan = record.contentScan;
  $("scan-summary").textContent = scan
    ? `input scanned: ${scan.inputScanned}, output scanned: ${scan.outputScanned}, ` +
      `PII detected: ${scan.piiDetected}, risk score: ${scan.riskScore}`
    : "No content was inspected.";
  const findings = scan?.findings ?? [];
  $("findings").tBodies[0].replaceChildren(...(findings.length
    ? findings.map((f) => el("tr", { class: "finding" },
      el("td", {}, f.type), el("td", {}, f.location), el("td", {}, f.path), el("td", {}, f.action)))
    : [el("tr", {}, el("td", { colspan: 4, class: "empty" }, "No findings."))]));

  $("detail-json").textContent = JSON.stringify(record, null, 2);
  const related = relatedBy(record);
  $("detail-session").disabled = !related;
  $("detail-session").textContent = related?.param === "trace" ? "This trace" : "This session";
  $("detail-session").title = related ? "" : "This record carries no session or trace id.";
  $("detail-session").onclick = () => related && showSession(related).catch(fail);
  $("detail").hidden = false;
  $("detail").scrollIntoView({ block: "nearest" });
}

// ---- a session: every call of the record's session (or trace) in order

/** What ties `record` to its other calls: its session, else its trace; `null` with neither
 * (a record from before these fields, or a client that sent none). */
function relatedBy(record) {
  if (record.sessionId) return { param: "session", id: record.sessionId };
  if (record.traceId) return { param: "trace", id: record.traceId };
  return null;
}

const actorNames = (chain) => (chain ?? []).map((actor) => actor.sub ?? "(no sub)").join(" → ");

/** Every record with the same `param` (`session` or `trace`) as the export API orders them. */
const showSession = ({ param, id }) => busy("session", async () => {
  const records = [];
  let url = apiUrl("audit", { [param]: id, limit: 1000 });
  while (url) {
    const page = await (await api(url)).json();
    records.push(...page.records);
    url = page.next;
  }
  $("session-title").replaceChildren(`${param === "session" ? "Session" : "Trace"} `, el("code", {}, id));
  const counts = {};
  for (const r of records) counts[r.result] = (counts[r.result] ?? 0) + 1;
  $("session-summary").textContent = `${records.length} calls: ` +
    RESULTS.filter((r) => counts[r]).map((r) => `${counts[r]} ${r}`).join(", ");
  $("session-calls").tBodies[0].replaceChildren(...records.map((record, i) => {
    const row = el("tr", { "data-id": record.id, class: `call call-${record.result}`, tabindex: 0 },
      el("td", { class: "num" }, i + 1),
      el("td", {}, record.timestamp),
      el("td", {}, record.email || record.sub || "—"),
      el("td", {}, record.tool ?? "—"),
      el("td", {}, el("span", { class: `badge result-${record.result}` }, record.result)),
      el("td", {}, record.reason ?? ""),
      el("td", {}, (record.scopeRequired ?? []).join(" ")),
      el("td", { class: "chain" }, actorNames(record.delegationChain) || "—"));
    row.addEventListener("click", () => showDetail(record));
    return row;
  }));
  $("session").hidden = false;
  $("session").scrollIntoView({ block: "nearest" });
});

// ---- export: the export API with the table's filters, the whole range

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function exportAs(format) {
  $("error").textContent = "";
  const name = `acp-audit-${session.tenant}`;
  if (format === "csv") {
    const text = await (await api("audit", { ...filterParams(), format: "csv" })).text();
    download(`${name}.csv`, "text/csv", text);
  } else {
    // NDJSON streams the whole range; its lines are the stored records, joined into an array.
    const text = await (await api("audit", { ...filterParams(), format: "ndjson" })).text();
    const lines = text.split("\n").filter((line) => line.length > 0);
    download(`${name}.json`, "application/json", `[${lines.join(",\n")}]\n`);
  }
}

// ---- charts

const loadCharts = () => busy("charts", async () => {
  const stats = await (await api("stats", filterParams())).json();
  $("bucket-info").textContent = `(${stats.total} records, buckets of ${humanSeconds(stats.bucketSeconds)})`;
  drawTimeline(stats.timeline);
  $("legend").replaceChildren(...RESULTS.filter((r) => stats.byResult[r]).map((r) =>
    el("li", { "data-result": r, "data-count": stats.byResult[r] },
      el("span", { class: `swatch result-${r}` }), `${r}: `, el("b", {}, stats.byResult[r]))));
  drawTop("top-users", stats.topUsers);
  drawTop("top-tools", stats.topTools);
  drawTop("top-denials", stats.topDenials);
});

function humanSeconds(s) {
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (s % size === 0) return `${s / size} ${unit}`;
  }
  return `${s} s`;
}

/** Stacked bars, one per bucket, one segment per result; each segment carries its count. */
function drawTimeline(timeline) {
  if (timeline.length === 0) {
    $("timeline").replaceChildren(el("p", { class: "empty" }, "No records match."));
    return;
  }
  const width = 720, height = 180, left = 36, bottom = 20;
  const totals = timeline.map((b) => Object.values(b.counts).reduce((a, n) => a + n, 0));
  const max = Math.max(1, ...totals);
  const slot = (width - left) / timeline.length;
  const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height + bottom}`, role: "img",
    "aria-label": "calls over time by result", class: "timeline" });
  svg.append(
    el("svg:line", { x1: left, y1: height, x2: width, y2: height, class: "axis" }),
    el("svg:text", { x: left - 4, y: 10, class: "label end" }, max),
    el("svg:text", { x: left - 4, y: height, class: "label end" }, 0),
    el("svg:text", { x: left, y: height + 15, class: "label" }, timeline[0].start),
    el("svg:text", { x: width, y: height + 15, class: "label end" }, timeline[timeline.length - 1].start));
  timeline.forEach((bucket, i) => {
    let y = height;
    for (const result of RESULTS) {
      const count = bucket.counts[result];
      if (!count) continue;
      const h = (count / max) * (height - 12);
      y -= h;
      svg.append(el("svg:rect", {
        x: left + i * slot + slot * 0.1, y, width: Math.max(1, slot * 0.8), height: h,
        class: `bar result-${result}`, "data-result": result, "data-count": count, "data-start": bucket.start,
      }, el("svg:title", {}, `${bucket.start}: ${count} ${result}`)));
    }
  });
  $("timeline").replaceChildren(svg);
}

function drawTop(id, entries) {
  const max = Math.max(1, ...entries.map((e) => e.count));
  $(id).replaceChildren(...(entries.length
    ? entries.map((e) => {
      const bar = el("span", { class: "meter" });
      bar.style.width = `${(100 * e.count) / max}%`;
      return el("li", { "data-name": e.name, "data-count": e.count },
        el("span", { class: "name" }, e.name), el("span", { class: "count" }, e.count), bar);
    })
    : [el("li", { class: "none" }, "none")]));
}

// ---- webhook health and policy history (their APIs may not be configured: 404 or empty)

/** The list under `key` of `path`'s answer; an empty list when the endpoint does not exist. */
async function optionalList(path, key) {
  try {
    return (await (await api(path)).json())[key] ?? [];
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return [];
    throw err;
  }
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function webhookHealth(w) {
  if (!w.enabled) return ["disabled", "disabled"];
  if (w.consecutiveFailures > 0) return ["failing", `failing, retrying (${w.consecutiveFailures} in a row)`];
  return ["healthy", "healthy"];
}

const loadWebhooks = () => busy("webhooks-body", async () => {
  const hooks = await optionalList("webhooks", "webhooks");
  $("webhooks-body").replaceChildren(hooks.length
    ? table(["Endpoint", "Events", "Status", "Lag", "Last success", "Last error"], hooks.map((w) => {
      const [state, text] = webhookHealth(w);
      return el("tr", { class: "webhook", "data-id": w.id },
        el("td", {}, w.url), el("td", {}, (w.events ?? []).join(" ")),
        el("td", {}, el("span", { class: `badge health-${state}` }, text)),
        el("td", { class: "num" }, w.lag ?? ""), el("td", { class: "time" }, w.lastSuccessAt ?? "never"),
        // A disabled endpoint's reason is its last error (the 410 answer).
        el("td", {}, w.lastError ?? w.disabledReason ?? ""));
    }))
    : el("p", { class: "none" }, "none configured"));
});

const loadPolicies = () => busy("policies-body", async () => {
  const policies = await optionalList("policies", "policies");
  $("policy-diff").replaceChildren();
  $("policies-body").replaceChildren(policies.length
    ? table(["Version", "Received", "Hash", ""], policies.map((p, i) => {
      const older = policies[i + 1];
      const button = el("button", { type: "button" }, `diff against ${older?.version ?? ""}`);
      button.hidden = !older;
      button.addEventListener("click", () => showDiff(p.version, older.version).catch(fail));
      return el("tr", { class: "policy", "data-version": p.version },
        el("td", {}, p.version), el("td", { class: "time" }, p.receivedAt ?? ""),
        el("td", {}, el("code", { title: p.hash }, shortHash(p.hash))), el("td", {}, button));
    }))
    : el("p", { class: "none" }, "none configured"));
});

/** `sha256:` and the first 12 hex digits (the whole hash is the element's title). */
const shortHash = (hash) => hash.replace(/^(sha256:[0-9a-f]{12})[0-9a-f]+$/, "$1…");

const showDiff = (version, against) => busy("policy-diff", async () => {
  const path = `policies/${encodeURIComponent(version)}/diff`;
  const { changes } = await (await api(path, { against })).json();
  const value = (v) => (v === undefined ? "" : JSON.stringify(v));
  $("policy-diff").replaceChildren(
    el("h3", {}, `Version ${version} against ${against}`),
    changes.length
      ? table(["Path", "Before", "After"], changes.map((c) => el("tr", { class: "change" },
        el("td", {}, c.path), el("td", {}, el("code", {}, value(c.before))),
        el("td", {}, el("code", {}, value(c.after))))))
      : el("p", { class: "none" }, "no changes"));
});

// ---- wiring

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    $("sign-in-error").textContent = "";
    signIn($("tenant").value.trim(), $("api-key").value.trim());
    $("api-key").value = "";
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  $("filters").addEventListener("reset", () => setTimeout(refresh));
  $("prev").addEventListener("click", () => turnPage(-1));
  $("next").addEventListener("click", () => turnPage(1));
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
  $("session-close").addEventListener("click", () => { $("session").hidden = true; });
  $("export-csv").addEventListener("click", () => exportAs("csv").catch(fail));
  $("export-json").addEventListener("click", () => exportAs("json").catch(fail));
  if (session.tenant && session.key) signIn(session.tenant, session.key);
});
