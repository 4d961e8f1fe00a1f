// Drives the dashboard in headless Chromium for test_dashboard.py, one step at a time.
//
//   node dashboard_probe.mjs URL SCREENSHOT WORKERS
//
// Talks JSON lines: on stdout it prints {"step": "tiles", "pids": [...]} once the page shows
// WORKERS worker tiles (after taking SCREENSHOT), then waits for a line "killed PID" on
// stdin, waits until the tiles no longer show PID but WORKERS running ones again, and
// prints {"step": "changed", ...} with what the page saw meanwhile: console errors, page
// errors, CSP violations, requests to other origins, and whether it ever navigated.
// Any failure prints {"step": "error", "message": ...} and exits 1. The browser is always
// closed; the whole run is bounded by DEADLINE_MS.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [url, shot, workersArg] = process.argv.slice(2);
const WORKERS = Number(workersArg || 2);
const DEADLINE_MS = 60000;
const STEP_MS = 15000;

const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fail = (message) => { say({ step: "error", message }); process.exitCode = 1; };

const lines = createInterface({ input: process.stdin });
const pending = [];
const waiters = [];
lines.on("line", (l) => (waiters.length ? waiters.shift()(l) : pending.push(l)));
function nextLine(ms, what) {
  if (pending.length) return Promise.resolve(pending.shift());
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no "${what}" line on stdin within ${ms} ms`)), ms);
    waiters.push((l) => { clearTimeout(t); resolve(l); });
  });
}

// The pids the tiles show, as numbers, sorted; and their states.
const tiles = (page) => page.$$eval(".worker[data-pid]", (ts) =>
  ts.map((t) => ({ id: Number(t.dataset.workerId), pid: Number(t.dataset.pid), state: t.dataset.state })));

async function run(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const seen = { console: [], pageerrors: [], csp: [], foreign: [], navigations: 0, phase: "load" };
  const origin = new URL(url).origin;
  page.on("console", (m) => {
    if (m.type() === "error") seen.console.push({ phase: seen.phase, text: m.text() });
  });
  page.on("pageerror", (e) => seen.pageerrors.push(String(e)));
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith("data:") && new URL(u).origin !== origin) seen.foreign.push(u);
  });
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) seen.navigations++; });
  // Runs through the DevTools protocol, so the page's CSP does not apply to it.
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`));
  });

  const resp = await page.goto(url, { waitUntil: "load", timeout: STEP_MS });
  if (!resp || resp.status() !== 200) throw new Error(`GET ${url} answered ${resp && resp.status()}`);
  await page.evaluate(() => { window.__probe = "same page"; });

  await page.waitForFunction((n) => document.querySelectorAll(".worker[data-pid]").length === n,
    WORKERS, { timeout: STEP_MS, polling: 100 })
    .catch(() => { throw new Error(`the page did not show ${WORKERS} worker tiles within ${STEP_MS} ms`); });
  // A few polls more, so that the rate and the charts have something to draw.
  await page.waitForFunction(() => /\d/.test(document.getElementById("rps").textContent),
    null, { timeout: STEP_MS, polling: 100 })
    .catch(() => { throw new Error("#rps never showed a figure"); });
  await page.waitForTimeout(2500);
  await page.screenshot({ path: shot, fullPage: true });
  const before = await tiles(page);
  say({ step: "tiles", pids: before.map((t) => t.pid).sort((a, b) => a - b), tiles: before,
        status: await page.textContent("#status"), rps: await page.textContent("#rps") });

  const line = await nextLine(STEP_MS, "killed PID");
  const m = /^killed (\d+)$/.exec(line.trim());
  if (!m) throw new Error(`expected "killed PID" on stdin, got ${JSON.stringify(line)}`);
  const killed = Number(m[1]);
  seen.phase = "after kill";
  await page.waitForFunction(([gone, n]) => {
    const ts = [...document.querySelectorAll(".worker[data-pid]")];
    return ts.length === n && ts.every((t) => t.dataset.state === "running" && Number(t.dataset.pid) !== gone);
  }, [killed, WORKERS], { timeout: STEP_MS, polling: 100 })
    .catch(async () => {
      throw new Error(`within ${STEP_MS} ms the tiles did not drop pid ${killed} for a new running worker ` +
        `(they show ${JSON.stringify(await tiles(page))})`);
    });
  const after = await tiles(page);
  seen.csp.push(...await page.evaluate(() => window.__csp));
  say({ step: "changed", pids: after.map((t) => t.pid).sort((a, b) => a - b), tiles: after,
        same_page: await page.evaluate(() => window.__probe === "same page"),
        navigations: seen.navigations, console_errors: seen.console, page_errors: seen.pageerrors,
        csp_violations: seen.csp, foreign_requests: seen.foreign,
        link: await page.textContent("#link") });
}

let browser;
const deadline = setTimeout(() => {
  fail(`the probe ran past ${DEADLINE_MS} ms`);
  setTimeout(() => process.exit(1), 3000).unref();
  (browser ? browser.close() : Promise.resolve()).catch(() => {}).finally(() => process.exit(1));
}, DEADLINE_MS);
try {
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-dev-shm-usage"],
                                    timeout: STEP_MS });
  await run(browser);
} catch (e) {
  fail(e && e.message ? e.message : String(e));
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(deadline);
  lines.close();
}
