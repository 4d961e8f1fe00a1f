// The client library in headless Chromium: an application's page, served by this driver on
// another loopback port (about:blank is not a secure context, and Chromium's Private
// Network Access then refuses loopback fetches), imports /client.js from the server (another
// origin, so through its CORS header), connects with a session token, subscribes, and receives a publish made
// over HTTP by this driver. Driven by test_client.py:
//   node client_browser.mjs http://127.0.0.1:PORT TOKEN
// Its one line of output is {"result": {...}}; page errors are collected in it.
import { chromium } from 'playwright-core';
import http from 'node:http';

const [base, token] = process.argv.slice(2);
const out = { pageErrors: [], consoleErrors: [] };
let browser;
const app = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html' });
  res.end('<!doctype html><title>app</title><p>chat</p>');
});
const finish = async (err) => {
  if (err) out.error = String(err && err.stack ? err.stack : err);
  if (browser) await browser.close().catch(() => {});
  app.close();
  console.log(JSON.stringify({ result: out }));
  process.exit(0);
};
setTimeout(() => finish('browser driver timed out'), 40000).unref();

try {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  const page = await browser.newPage();
  page.on('pageerror', (e) => out.pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') out.consoleErrors.push(m.text()); });
  await new Promise((resolve) => app.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${app.address().port}`;
  await page.goto(origin + '/');

  out.page = await page.evaluate(async ({ base, token }) => {
    const lib = await import(base + '/client.js');
    const c = lib.connect(base.replace(/^http/, 'ws') + '/ws', { token });
    window.client = c;
    window.got = new Promise((resolve) => c.on('message', resolve));
    await c.ready();
    const sub = await c.subscribe('room:browser');
    return { exports: Object.keys(lib).sort(), sub, connected: c.connected, origin: location.origin,
      nativeWebSocket: c.WebSocket === window.WebSocket };
  }, { base, token });

  const r = await fetch(`${base}/api/channels/room:browser/publish`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ data: { text: 'hello, browser' } }),
  });
  out.publish = { status: r.status, body: await r.json() };

  out.received = await page.evaluate(() => Promise.race([
    window.got,
    new Promise((resolve) => setTimeout(() => resolve('nothing within 5 s'), 5000)),
  ]));
  out.members = await page.evaluate(() => window.client.presence('room:browser'));
  await page.evaluate(() => window.client.close());
  await finish();
} catch (e) {
  await finish(e);
}
