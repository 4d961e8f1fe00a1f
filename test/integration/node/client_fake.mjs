// The client library (web/client.js, imported from the tree) against a fake sessiond: a
// `ws` server on loopback that speaks just enough of the realtime protocol to play channel
// permissions (a subscribe answered "ok" or refused "forbidden", or never answered; the
// server's own "subscribed" and "unsubscribed" pushes; a close that makes the client
// reconnect), and history and recovery (offsets on messages, a subscribe's offset and epoch,
// `since` answered recovered or not, the missed messages replayed). Driven by test_client.py:
//   node client_fake.mjs SCENARIO
// Its last line is {"result": {...}}: facts for the test to assert on, nothing asserted here
// beyond what is needed to go on. What each connection asked for is in result.asked: one
// list of subscribed channels per connection, in the order they arrived; result.sinces, the
// same lists of each subscribe's `since` (null when it had none).
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
 * history: channel -> {epoch, messages: [{offset, data}], recover}: a channel with history,
 * whose subscribe's ok names its newest offset and epoch; a `since` in the same epoch is
 * answered recovered (unless recover is false) and the messages after it are sent, from
 * `overlap` messages earlier (a replay that repeats what was delivered, which the client
 * must drop).
 */
async function fakeServer({ decide = () => 'ok', serverSide = [] } = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  const srv = { conns: [], decide, serverSide, history: {}, overlap: 0,
    url: `ws://127.0.0.1:${wss.address().port}/ws` };
  wss.on('connection', (ws) => {
    const conn = { ws, n: srv.conns.length, subscribes: [], sinces: [], frames: [] };
    srv.conns.push(conn);
    for (const channel of srv.serverSide) ws.send(JSON.stringify({ op: 'subscribed', channel }));
    ws.on('message', (raw) => {
      const m = JSON.parse(String(raw));
      const reply = (o) => ws.send(JSON.stringify(m.id === undefined ? o : { ...o, id: m.id }));
      if (m.op === 'ping') return reply({ op: 'pong' });
      if (m.op !== 'subscribe') return reply({ op: 'ok' });
      conn.subscribes.push(m.channel);
      conn.sinces.push(m.since ?? null);
      conn.frames.push(m);
      const how = srv.decide(m.channel, conn);
      const h = srv.history[m.channel];
      if (how === 'ok' && !h) reply({ op: 'ok' });
      else if (how === 'ok') {
        const top = srv.top(m.channel);
        if (!m.since) return reply({ op: 'ok', offset: top, epoch: h.epoch });
        const recovered = h.recover !== false && m.since.epoch === h.epoch && m.since.offset <= top;
        reply({ op: 'ok', recovered, offset: top, epoch: h.epoch });
        if (!recovered) return;
        for (const x of h.messages) {
          if (x.offset > m.since.offset - srv.overlap) ws.send(JSON.stringify(srv.message(m.channel, x)));
        }
      } else if (how === 'forbidden') {
        reply({ op: 'error', error: { code: 'forbidden', message: `This session may not subscribe to ${m.channel}.` } });
      }
    });
  });
  srv.last = () => srv.conns.at(-1);
  srv.push = (msg) => srv.last().ws.send(JSON.stringify(msg));
  srv.top = (channel) => srv.history[channel].messages.at(-1)?.offset ?? 0;
  srv.message = (channel, x) => ({ op: 'message', channel, data: x.data, offset: x.offset });
  /** Add a message to channel's history (not sent: as if the client missed it). */
  srv.append = (channel, data) => {
    const x = { offset: srv.top(channel) + 1, data };
    srv.history[channel].messages.push(x);
    return x;
  };
  /** Add a message to channel's history and send it to the latest connection. */
  srv.publish = (channel, data) => srv.push(srv.message(channel, srv.append(channel, data)));
  srv.asked = () => srv.conns.map((c) => c.subscribes);
  srv.sinces = () => srv.conns.map((c) => c.sinces);
  srv.close = () => new Promise((r) => {
    for (const c of srv.conns) c.ws.terminate();
    wss.close(r);
  });
  return srv;
}

/** A client of srv with every event it emits recorded in log. */
function client(srv) {
  const c = lib.connect(srv.url, { token: 't'.repeat(43), WebSocket, backoffBase: 20, backoffCap: 40, timeout: 2000 });
  c.log = { open: [], subscribed: [], unsubscribed: [], close: [], error: [], message: [], lost: [], recovered: [] };
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

/** The messages the application was handed, as [offset, data] pairs (offset: none when absent). */
const seen = (c) => c.log.message.map((m) => ['offset' in m ? m.offset : 'none', m.data]);

/** Wait until every push sent so far has reached the client (they precede the ping's pong). */
const flushed = (c) => c.ping();

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

  // Offsets, a reconnect, and a recovery whose replay repeats a message already delivered
  // (3): the application gets 1..6 once each, in order.
  async recovery(srv) {
    srv.history['room:h'] = { epoch: 'e1', messages: [] };
    srv.overlap = 1;
    const c = client(srv);
    out.firstOk = (await settle(c.subscribe('room:h'))).ok;
    out.positionAtFirst = c.position('room:h');
    for (const n of [1, 2, 3]) srv.publish('room:h', { n });
    await flushed(c);
    out.positionBefore = c.position('room:h');
    srv.append('room:h', { n: 4 }); // published while the client is away
    srv.append('room:h', { n: 5 });
    await reconnect(srv, c);
    srv.publish('room:h', { n: 6 });
    await flushed(c);
    out.seen = seen(c);
    out.position = c.position('room:h');
    out.lost = c.log.lost;
    out.recovered = c.log.recovered;
    return c;
  },

  // The history no longer holds what was missed: "lost", then new messages flow.
  async lost(srv) {
    srv.history['room:h'] = { epoch: 'e1', messages: [] };
    const c = client(srv);
    await c.subscribe('room:h');
    for (const n of [1, 2]) srv.publish('room:h', { n });
    await flushed(c);
    srv.append('room:h', { n: 3 });
    srv.history['room:h'].recover = false; // trimmed: 3 is gone from it
    await reconnect(srv, c);
    out.lostThen = [...c.log.lost];
    srv.publish('room:h', { n: 4 });
    await flushed(c);
    out.seen = seen(c);
    out.position = c.position('room:h');
    out.recovered = c.log.recovered;
    return c;
  },

  // A live duplicate and an older live message are dropped; the next one goes through.
  async dropped(srv) {
    srv.history['room:h'] = { epoch: 'e1', messages: [] };
    const c = client(srv);
    await c.subscribe('room:h');
    for (const n of [1, 2, 3]) srv.publish('room:h', { n });
    srv.push(srv.message('room:h', { offset: 3, data: { n: 'dup' } }));
    srv.push(srv.message('room:h', { offset: 2, data: { n: 'old' } }));
    srv.publish('room:h', { n: 4 });
    await flushed(c);
    out.seen = seen(c);
    out.position = c.position('room:h');
    return c;
  },

  // The channel's history was lost while the client was away (a new epoch, counting from 1
  // again): "lost" with the new epoch, and its messages, offsets below the old position
  // included, go through. Then a message naming yet another epoch does the same.
  async epoch(srv) {
    srv.history['room:h'] = { epoch: 'e1', messages: [] };
    const c = client(srv);
    await c.subscribe('room:h');
    for (const n of [1, 2, 3]) srv.publish('room:h', { n });
    await flushed(c);
    srv.history['room:h'] = { epoch: 'e2', messages: [] };
    srv.append('room:h', { n: 'e2-1' });
    await reconnect(srv, c);
    out.lostAfterReconnect = [...c.log.lost];
    srv.publish('room:h', { n: 'e2-2' });
    await flushed(c);
    out.positionE2 = c.position('room:h');
    srv.push({ ...srv.message('room:h', { offset: 1, data: { n: 'e3-1' } }), epoch: 'e3' });
    await flushed(c);
    out.seen = seen(c);
    out.lost = c.log.lost;
    out.position = c.position('room:h');
    return c;
  },

  // A channel without history: no offsets, no since, no dropping, as before recovery was.
  async plain(srv) {
    const c = client(srv);
    await c.subscribe('room:p');
    srv.push({ op: 'message', channel: 'room:p', data: { n: 1 } });
    srv.push({ op: 'message', channel: 'room:p', data: { n: 1 } });
    await flushed(c);
    await reconnect(srv, c);
    srv.push({ op: 'message', channel: 'room:p', data: { n: 2 }, from: 'bob' });
    await flushed(c);
    out.seen = seen(c);
    out.keys = c.log.message.map((m) => Object.keys(m));
    out.frames = srv.conns.map((conn) => conn.frames.map((m) => Object.keys(m).sort()));
    out.position = c.position('room:p') ?? null;
    out.lost = c.log.lost;
    out.recovered = c.log.recovered;
    return c;
  },

  // subscribe(channel, {since}) with a position the application kept: sent on the first
  // subscribe; the messages after it arrive. A kept position of another epoch: "lost".
  async since(srv) {
    srv.history['room:h'] = { epoch: 'e1', messages: [] };
    srv.history['room:old'] = { epoch: 'e9', messages: [] };
    for (const n of [1, 2, 3, 4]) srv.append('room:h', { n });
    srv.append('room:old', { n: 1 });
    const c = client(srv);
    out.ok = (await settle(c.subscribe('room:h', { since: { offset: 2, epoch: 'e1' } }))).ok;
    out.stale = (await settle(c.subscribe('room:old', { since: { offset: 7, epoch: 'e8' } }))).ok;
    out.bad = await settle(c.subscribe('room:x', { since: { offset: 'two' } }));
    out.channelsAfter = [...c.channels].sort();
    await flushed(c);
    out.seen = seen(c);
    out.recovered = c.log.recovered;
    out.lost = c.log.lost;
    out.positions = [c.position('room:h'), c.position('room:old')];
    return c;
  },
};

let srv;
try {
  if (!scenarios[scenario]) throw new Error(`no scenario ${scenario}`);
  srv = await fakeServer();
  const c = await scenarios[scenario](srv);
  out.asked = srv.asked();
  out.sinces = srv.sinces();
  out.connections = srv.conns.length;
  c.close();
  await srv.close();
  finish();
} catch (e) {
  if (srv) out.asked = srv.asked();
  finish(e);
}
