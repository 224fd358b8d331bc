// What the dashboard tests share: the real collector binary on a free port with a fresh
// database, Debian's headless Chromium (playwright-core), and the page's sign-in steps.

import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";

import { chromium } from "playwright-core";

const ROOT = resolve(import.meta.dirname, "../..");
const BIN = join(ROOT, "target/release/acp-collector");
export const RUN_DIR = join(ROOT, ".run/dashboard");
export const INGEST_TOKEN = "dashboard-ingest-token";
export const VIEWPORT = { width: 1280, height: 1000 };

export function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    }).on("error", fail);
  });
}

/** Calls `probe` every 50 ms until it returns a truthy value, which it returns; `what` names
 * the awaited state in the error after 20 s. */
export async function waitFor(what, probe) {
  for (let i = 0; i < 400; i++) {
    const value = await probe();
    if (value) return value;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Starts the collector (`serve` with `serveArgs`) on a fresh database with one API key per
 * tenant of `tenants`, and a browser with a fresh profile. `keys` maps each tenant to its key.
 */
export async function startStack({ tenants, serveArgs = [] }) {
  mkdirSync(RUN_DIR, { recursive: true });
  const runDir = mkdtempSync(join(RUN_DIR, "run-"));
  const db = join(runDir, "audit.db");
  const keys = Object.fromEntries(tenants.map((tenant) => [tenant,
    execFileSync(BIN, ["--db", db, "apikey", "create", "--tenant", tenant], { encoding: "utf8" }).trim()]));
  const base = `http://127.0.0.1:${await freePort()}`;
  const log = join(runDir, "collector.log");
  writeFileSync(log, "");
  const collector = spawn(BIN, ["--db", db, "serve", "--listen", base.slice(7), "--ingest-token", INGEST_TOKEN,
    "--retention-days", "0", ...serveArgs], { stdio: ["ignore", "ignore", "pipe"] });
  collector.stderr.on("data", (chunk) => writeFileSync(log, chunk, { flag: "a" }));
  const exited = new Promise((ok) => collector.on("exit", ok));
  await waitFor(`the collector to start (see ${log})`, async () => {
    try {
      return (await fetch(`${base}/healthz`)).ok;
    } catch {
      return false; // not listening yet
    }
  });
  // A fresh profile directory (playwright passes it as --user-data-dir).
  const browser = await chromium.launchPersistentContext(mkdtempSync(join(runDir, "chromium-")), {
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: VIEWPORT,
    acceptDownloads: true,
  });
  return {
    base, runDir, keys, browser,
    /** POSTs `body` as JSON to the ingest `path` with the ingest token. */
    ingest: (path, body) => fetch(`${base}${path}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${INGEST_TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }),
    /** `tenant`'s API at `path` (under /{tenant}/api/v1/) with `key` (the tenant's own by default). */
    api: (tenant, path, init = {}, key = keys[tenant]) => fetch(`${base}/${tenant}/api/v1/${path}`, {
      ...init, headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json", ...init.headers },
    }),
    async stop() {
      await browser.close();
      collector.kill("SIGTERM");
      await exited;
    },
  };
}

/** Waits until every part the page marks `aria-busy` has been drawn. */
export const settled = (page) => page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'));

/** A new tab (so its own sessionStorage) on the dashboard, recording its requests and errors. */
export async function openDashboard(stack) {
  const page = await stack.browser.newPage();
  page.requests = [];
  page.errors = [];
  page.on("request", (r) => page.requests.push(r.url()));
  page.on("pageerror", (e) => page.errors.push(e.message));
  // HTTP errors are asserted where they are expected (a wrong key, the optional panels' 404).
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) page.errors.push(m.text());
  });
  await page.goto(`${stack.base}/dashboard`);
  return page;
}

export async function signIn(page, tenant, key) {
  await page.fill("#tenant", tenant);
  await page.fill("#api-key", key);
  await page.click("#sign-in-form button[type=submit]");
}

/** Signed in as `tenant`, with the first page of records, the charts and the panels drawn. */
export async function signedIn(stack, tenant) {
  const page = await openDashboard(stack);
  await signIn(page, tenant, stack.keys[tenant]);
  await page.waitForSelector("#records tbody tr[data-id]");
  await page.waitForSelector("#legend li");
  await settled(page);
  return page;
}
