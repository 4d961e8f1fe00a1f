// The client library (web/client.js, imported from the tree) against a fake sessiond: a
// `ws` server on loopback that speaks just enough of the realtime protocol to play channel
// permissions (a subscribe answered "ok" or refused "forbidden", or never answered; the
// server's own "subscribed" and "unsubscribed" pushes; a close that makes the client
// reconnect). Driven by test_client.py:
//   node client_fake.mjs SCENARIO
// Its last line is {"result": {...}}: facts for the test to assert on, nothing asserted here
// beyond what is needed to go on. What each connection asked for is in result.asked: one
// list of subscribed channels per connection, in the order they arrived.
import { WebSocketServer, WebSocket } from 'ws';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const lib = await import(path.join(here, '..', '..', '..', 'web', 'client.js'));

const scenario = process.argv[2];
const out = { scenario };
const finish = (err) => {
  if (err) out.error = String(err && err.stack ? err.stack : err);
  console.log(JSON.stringify({ result: out }));
  process.exit(0);
};
setTimeout(() => finish('node script timed out'), 15000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(pred, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function settle(p) {
  try {
    return { ok: await p };
  } catch (e) {
    return { code: e.code, name: e.name, message: e.message };
  }
}

/**
 * The fake server. decide(channel, conn) says how to answer a subscribe: "ok", "forbidden"
 * or "silent" (no answer). serverSide: channels it subscribes every socket to on connect,
 * announced by a "subscribed" push, as the real server does for a session's `subscribe`.
 */
async function fakeServer({ decide = () => 'ok', serverSide = [] } = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  const srv = { conns: [], decide, serverSide, url: `ws://127.0.0.1:${wss.address().port}/ws` };
  wss.on('connection', (ws) => {
    const conn = { ws, n: srv.conns.length, subscribes: [] };
    srv.conns.push(conn);
    for (const channel of srv.serverSide) ws.send(JSON.stringify({ op: 'subscribed', channel }));
    ws.on('message', (raw) => {
      const m = JSON.parse(String(raw));
      const reply = (o) => ws.send(JSON.stringify(m.id === undefined ? o : { ...o, id: m.id }));
      if (m.op === 'ping') return reply({ op: 'pong' });
      if (m.op !== 'subscribe') return reply({ op: 'ok' });
      conn.subscribes.push(m.channel);
      const how = srv.decide(m.channel, conn);
      if (how === 'ok') reply({ op: 'ok' });
      else if (how === 'forbidden') {
        reply({ op: 'error', error: { code: 'forbidden', message: `This session may not subscribe to ${m.channel}.` } });
      }
    });
  });
  srv.last = () => srv.conns.at(-1);
  srv.push = (msg) => srv.last().ws.send(JSON.stringify(msg));
  srv.asked = () => srv.conns.map((c) => c.subscribes);
  srv.close = () => new Promise((r) => {
    for (const c of srv.conns) c.ws.terminate();
    wss.close(r);
  });
  return srv;
}

/** A client of srv with every event it emits recorded in log. */
function client(srv) {
  const c = lib.connect(srv.url, { token: 't'.repeat(43), WebSocket, backoffBase: 20, backoffCap: 40, timeout: 2000 });
  c.log = { open: [], subscribed: [], unsubscribed: [], close: [], error: [] };
  for (const type of Object.keys(c.log)) {
    c.on(type, (e) => c.log[type].push(e instanceof Error ? { code: e.code, message: e.message } : e));
  }
  return c;
}

/**
 * The server drops the connection (1012, "service restart": the client reconnects); wait
 * until the client is back and everything it asked for on connecting has been answered:
 * replies come in order, so once a ping sent after the open is answered, they all were.
 */
async function reconnect(srv, c) {
  const before = srv.conns.length;
  srv.last().ws.close(1012, 'restart');
  await until(() => srv.conns.length > before && c.connected, 'the client reconnecting');
  await c.ping();
}

const scenarios = {
  // The server's own subscriptions arrive as "subscribed" on every connect, and a grant the
  // server takes away as "unsubscribed"; neither is something the client asks for again.
  async events(srv) {
    srv.serverSide = ['user:alice', 'feed:news'];
    const c = client(srv);
    await c.ready();
    await c.ping();
    out.subscribedOnConnect = [...c.log.subscribed];
    out.channelsAfterPush = [...c.channels];
    srv.serverSide = ['user:alice']; // a PATCH took feed:news out of the session's subscribe
    srv.push({ op: 'unsubscribed', channel: 'feed:news' });
    await until(() => c.log.unsubscribed.length > 0, 'the unsubscribed event');
    out.unsubscribed = [...c.log.unsubscribed];
    await reconnect(srv, c);
    out.subscribedAfterReconnect = [...c.log.subscribed];
    return c;
  },

  // A refused subscribe rejects with the server's code, and is not asked for again after a
  // reconnect; a granted one is.
  async refused(srv) {
    srv.decide = (ch) => (ch === 'room:secret' ? 'forbidden' : 'ok');
    const c = client(srv);
    await c.ready();
    out.granted = await settle(c.subscribe('room:lobby'));
    out.refused = await settle(c.subscribe('room:secret'));
    out.channelsAfter = [...c.channels].sort();
    await reconnect(srv, c);
    out.errors = [...c.log.error];
    return c;
  },

  // A channel the server took away ("unsubscribed": its grant was revoked by a PATCH) is
  // not asked for again after a reconnect; the others are.
  async revoked(srv) {
    const c = client(srv);
    await c.ready();
    out.subs = [await settle(c.subscribe('room:a')), await settle(c.subscribe('room:b'))];
    srv.decide = (ch) => (ch === 'room:b' ? 'forbidden' : 'ok'); // as the real server would now
    srv.push({ op: 'unsubscribed', channel: 'room:b' });
    await until(() => c.log.unsubscribed.length > 0, 'the unsubscribed event');
    out.unsubscribed = [...c.log.unsubscribed];
    out.channelsAfter = [...c.channels].sort();
    await reconnect(srv, c);
    out.errors = [...c.log.error];
    return c;
  },

  // A grant revoked while the client was away (no push reaches it): its resubscribe is
  // refused, reported as an "error" event, and not tried on the connection after.
  async revokedOffline(srv) {
    const c = client(srv);
    await c.ready();
    out.subs = [await settle(c.subscribe('room:a')), await settle(c.subscribe('room:b'))];
    srv.decide = (ch) => (ch === 'room:b' ? 'forbidden' : 'ok');
    await reconnect(srv, c);
    out.errors = [...c.log.error];
    out.channelsAfter = [...c.channels].sort();
    await reconnect(srv, c);
    return c;
  },

  // A subscribe that timed out may yet have been made: the channel is kept and asked for
  // again after a reconnect.
  async timedOut(srv) {
    srv.decide = (ch, conn) => (conn.n === 0 ? 'silent' : 'ok');
    const c = client(srv);
    await c.ready();
    out.timedOut = await settle(c.subscribe('room:slow', { timeout: 100 }));
    out.channelsAfter = [...c.channels];
    await reconnect(srv, c);
    out.errors = [...c.log.error];
    return c;
  },

  // Two subscribes to one channel in flight, the first refused and the second granted (a
  // grant arrived in between): the late refusal does not undo the later success.
  async race(srv) {
    srv.decide = (ch, conn) => (conn.n === 0 && conn.subscribes.length === 1 ? 'forbidden' : 'ok');
    const c = client(srv);
    await c.ready();
    const first = c.subscribe('room:r');
    const second = c.subscribe('room:r');
    out.results = [await settle(first), await settle(second)];
    out.channelsAfter = [...c.channels];
    await reconnect(srv, c);
    return c;
  },
};

let srv;
try {
  if (!scenarios[scenario]) throw new Error(`no scenario ${scenario}`);
  srv = await fakeServer();
  const c = await scenarios[scenario](srv);
  out.asked = srv.asked();
  out.connections = srv.conns.length;
  c.close();
  await srv.close();
  finish();
} catch (e) {
  if (srv) out.asked = srv.asked();
  finish(e);
}
