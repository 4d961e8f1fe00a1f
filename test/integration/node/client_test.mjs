// The client library (web/client.js as the server serves it at /client.js) in Node, on
// the `ws` package's WebSocket, against a real sessiond. Driven by test_client.py:
//   node client_test.mjs CONFIG_JSON
// CONFIG_JSON: {"base": "http://127.0.0.1:PORT", "a": {"token", "id"}, "b": ..., "c": ...}.
// It prints {"event": "restart"} when it wants the server restarted and waits for a line
// on stdin saying it was; its last line is {"result": {...}} for the test to assert on.
// Nothing is asserted here beyond what is needed to go on: the results are facts.
import WebSocket from 'ws';
import readline from 'node:readline';
import { result, servedClient, sleep, until } from './harness.mjs';

const cfg = JSON.parse(process.argv[2]);
const { out, finish } = result({ steps: [] }, 40000);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** What a request's promise settled to: {ok: reply} or {code, message, ms}. */
async function settle(p) {
  const t0 = Date.now();
  try {
    return { ok: await p, ms: Date.now() - t0 };
  } catch (e) {
    return { code: e.code, name: e.name, message: e.message, ms: Date.now() - t0 };
  }
}

async function api(method, path, body) {
  const r = await fetch(cfg.base + path, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, body: r.status === 204 ? null : await r.json() };
}

const BACKOFF = { backoffBase: 100, backoffCap: 800, stableAfter: 5000 };

/** A client with every event it emits recorded in log. */
function client(lib, token, opts) {
  const c = lib.connect(cfg.base.replace(/^http/, 'ws') + '/ws', { token, WebSocket, ...BACKOFF, ...opts });
  c.log = { open: [], message: [], join: [], leave: [], close: [], reconnecting: [], error: [] };
  for (const type of Object.keys(c.log)) {
    c.on(type, (e) => c.log[type].push(e instanceof Error ? { code: e.code, message: e.message } : e));
  }
  return c;
}

try {
  // What is tested is what the server serves.
  const { lib, res, src } = await servedClient(cfg.base);
  out.served = { status: res.status, type: res.headers.get('content-type'), bytes: src.length };
  out.exports = Object.keys(lib).sort();

  const a = client(lib, cfg.a.token);
  const b = client(lib, cfg.b.token);
  await Promise.all([a.ready(), b.ready()]);
  out.steps.push('connected');

  // Channels, publish between clients, presence and its events.
  out.subA = await settle(a.subscribe('room:t'));
  out.subB = await settle(b.subscribe('room:t'));
  await until(() => a.log.join.some((j) => j.user === 'bob'), 'bob joining');
  out.presence = (await a.presence('room:t')).map((m) => m.user).sort();
  out.pubB = await settle(b.publish('room:t', { n: 1 }));
  await until(() => a.log.message.length >= 1, 'the message reaching alice');
  out.firstMessage = a.log.message[0];
  out.unsubB = await settle(b.unsubscribe('room:t'));
  await until(() => a.log.leave.some((l) => l.user === 'bob'), 'bob leaving');
  out.joins = a.log.join;
  out.leaves = a.log.leave;
  out.badChannel = await settle(a.subscribe('no spaces allowed'));
  out.channelsAfterRefusal = [...a.channels]; // a refused subscribe is not kept
  out.ping = await settle(a.ping());
  out.steps.push('channels');

  // A request the server never answers: stop the worker holding alice's connection (the
  // test build says which it is: connection ids are opaque), ask, continue it.
  const pid = (await a.request({ op: 'test_worker_pid' })).worker_pid;
  if (!(pid > 1)) throw new Error(`no worker pid: ${pid}`);
  process.kill(pid, 'SIGSTOP');
  try {
    out.timeout = await settle(a.ping({ timeout: 300 }));
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  out.afterTimeout = await settle(a.ping()); // the late pong of the timed-out ping is ignored
  // A request in flight when the connection drops rejects at once, and the client reconnects.
  const inflight = b.ping({ timeout: 5000 });
  b._ws.terminate();
  out.dropped = await settle(inflight);
  await until(() => b.connected, 'b reconnecting after the drop');
  out.steps.push('timeouts');

  // The server restarts: the client comes back by itself, jittered, resubscribed.
  const before = a.log.reconnecting.length;
  const opensBefore = a.log.open.length;
  console.log(JSON.stringify({ event: 'restart' }));
  const answer = await lines.next();
  if (answer.value !== 'restarted') throw new Error(`driver said ${answer.value}`);
  await until(() => a.log.open.length > opensBefore && a.connected, 'alice reconnecting', 15000);
  out.reopened = a.log.open.at(-1);
  out.delays = a.log.reconnecting.slice(before);
  out.closeCodes = a.log.close.map((c) => c.code);
  await a.ping(); // replies come in order: the resubscription sent on open is done
  out.httpPublish = await api('POST', '/api/channels/room:t/publish', { data: { n: 2 } });
  await until(() => a.log.message.some((m) => m.data && m.data.n === 2), 'the publish after the restart');
  out.afterRestart = a.log.message.find((m) => m.data && m.data.n === 2);
  out.steps.push('restart');

  // A revoked session: closed with 4001, an error, and no reconnect loop.
  const c = client(lib, cfg.c.token);
  await c.ready();
  out.revoke = await api('DELETE', `/api/sessions/${cfg.c.id}`);
  await until(() => c.log.close.length > 0, 'the revoked client closing');
  await sleep(1500);
  out.revoked = { close: c.log.close, errors: c.log.error, reconnecting: c.log.reconnecting.length,
    connected: c.connected, ready: await settle(c.ready()), ping: await settle(c.ping()) };
  // A token that never was: the handshake's 401 stops the client the same way.
  const d = client(lib, 'x'.repeat(43));
  await until(() => d.log.close.length > 0, 'the bad token closing');
  await sleep(1000);
  out.badToken = { close: d.log.close, errors: d.log.error, reconnecting: d.log.reconnecting.length };
  out.steps.push('revoked');

  // close() stops reconnecting and fails what waits.
  const pending = b.presence('room:t');
  b.close();
  a.close();
  out.closedPending = await settle(pending);
  const counts = [a.log.reconnecting.length, b.log.reconnecting.length];
  await sleep(500);
  out.closed = { a: a.connected, b: b.connected, reconnectingAfterClose:
    a.log.reconnecting.length - counts[0] + b.log.reconnecting.length - counts[1],
    lastClose: a.log.close.at(-1) };
  out.steps.push('closed');
  finish();
} catch (e) {
  finish(e);
}
