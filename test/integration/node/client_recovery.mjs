// 200 clients of the library (web/client.js as served) on one channel with history, while
// this script publishes through the API at 50 messages/s, and the test kills a worker and
// reloads the server under them. Driven by test_client.py:
//   node client_recovery.mjs CONFIG_JSON   ({"base", "tokens": [...], "channel", "seconds"})
// It prints {"event": "kill"} and {"event": "hup"} for the test to act on (and waits for a
// line back), then one {"result": ...}: what each client's application was handed.
import WebSocket from 'ws';
import readline from 'node:readline';
import { result, servedClient, sleep } from './harness.mjs';

const cfg = JSON.parse(process.argv[2]);
const { out, finish } = result({}, 60000);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const ask = async (event) => {
  console.log(JSON.stringify({ event }));
  await lines.next();
};

try {
  const { lib } = await servedClient(cfg.base);
  const clients = cfg.tokens.map((token) => {
    const c = lib.connect(cfg.base.replace(/^http/, 'ws') + '/ws',
      { token, WebSocket, backoffBase: 50, backoffCap: 400 });
    c.got = [];
    c.lostEvents = 0;
    c.recoveredEvents = 0;
    c.on('message', (m) => { if (m.channel === cfg.channel) c.got.push(m.offset); });
    c.on('lost', () => { c.lostEvents++; });
    c.on('recovered', () => { c.recoveredEvents++; });
    return c;
  });
  await Promise.all(clients.map((c) => c.subscribe(cfg.channel)));
  let top = 0, failed = 0;
  const publishes = cfg.seconds * 50;
  for (let i = 0; i < publishes; i++) {
    const t0 = Date.now();
    if (i === Math.floor(publishes / 3)) await ask('kill');
    if (i === Math.floor((2 * publishes) / 3)) await ask('hup');
    const r = await fetch(`${cfg.base}/api/channels/${cfg.channel}/publish`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ data: i }),
    }).catch(() => null);
    if (r && r.status === 202) top = Math.max(top, (await r.json()).offset);
    else failed++;
    await sleep(Math.max(0, 20 - (Date.now() - t0)));
  }
  // A publish in flight on the killed worker fails, yet may have been kept before the
  // kill: what counts is what the channel holds.
  const h = await (await fetch(`${cfg.base}/api/channels/${cfg.channel}/history?limit=1`)).json();
  top = h.offset;
  const end = Date.now() + 15000;
  while (clients.some((c) => c.got[c.got.length - 1] !== top) && Date.now() < end) await sleep(50);
  const want = Array.from({ length: top }, (_, k) => k + 1);
  let exact = 0;
  const bad = [];
  for (const [i, c] of clients.entries()) {
    // what was delivered before the subscribe's ok gave the starting offset is none:
    // every client subscribed before the first publish
    if (c.got.length === want.length && c.got.every((o, k) => o === want[k])) exact++;
    else if (bad.length < 3) bad.push({ client: i, n: c.got.length, first: c.got.slice(0, 5), last: c.got.slice(-5) });
  }
  out.clients = clients.length;
  out.top = top;
  out.publishFailures = failed;
  out.exact = exact;
  out.bad = bad;
  out.lost = clients.reduce((n, c) => n + c.lostEvents, 0);
  out.recovered = clients.reduce((n, c) => n + c.recoveredEvents, 0);
  for (const c of clients) c.close();
  finish();
} catch (e) {
  finish(e);
}
