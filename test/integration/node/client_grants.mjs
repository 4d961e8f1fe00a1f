// The client library against a real sessiond with the built-in channel rules: a session
// granted room:1 and subscribed by the server to user:alice. Driven by test_client.py:
//   node client_grants.mjs CONFIG_JSON   ({"base": "http://127.0.0.1:PORT", "token", "id"})
// Its one line is {"result": {...}}: the facts, asserted by the test.
import WebSocket from 'ws';
import { result, servedClient, until } from './harness.mjs';

const cfg = JSON.parse(process.argv[2]);
const { out, finish } = result({}, 20000);

try {
  const { lib } = await servedClient(cfg.base);
  const c = lib.connect(cfg.base.replace(/^http/, 'ws') + '/ws', { token: cfg.token, WebSocket });
  const seen = { subscribed: [], unsubscribed: [] };
  c.on('subscribed', (e) => seen.subscribed.push(e));
  c.on('unsubscribed', (e) => seen.unsubscribed.push(e));
  await until(() => seen.subscribed.length > 0, 'the server-side subscription');
  out.subscribed = seen.subscribed;
  out.granted = (await c.subscribe('room:1')).op;
  try {
    await c.subscribe('room:2');
    out.refused = 'no refusal';
  } catch (e) {
    out.refused = { name: e.name, code: e.code };
  }
  out.channelsBefore = [...c.channels].sort();
  const t0 = Date.now();
  const r = await fetch(`${cfg.base}/api/sessions/${cfg.id}`, {
    method: 'PATCH', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ channels: [] }),
  });
  out.patch = r.status;
  await until(() => seen.unsubscribed.length > 0, 'the revoked grant');
  out.unsubscribedMs = Date.now() - t0;
  out.unsubscribed = seen.unsubscribed;
  out.channelsAfter = [...c.channels].sort();
  out.again = await c.subscribe('room:1').then(() => 'ok', (e) => e.code);
  c.close();
  finish();
} catch (e) {
  finish(e);
}
