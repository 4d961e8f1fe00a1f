// A WebSocket client on Node's `ws`, as a browser-like peer that compresses: it offers
// permessage-deflate, compresses everything it sends (threshold 0), subscribes,
// publishes a large message, and reports what it negotiated and received as one JSON
// line. Usage: node deflate_client.js URL
'use strict';
const WebSocket = require('ws');

const url = process.argv[2];
const big = { text: 'all work and no play '.repeat(500) };
const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
const out = { extensions: '', replies: [], message: null };
const done = (err) => {
  if (err) out.error = String(err);
  console.log(JSON.stringify(out));
  process.exit(err ? 1 : 0);
};
setTimeout(() => done('timeout'), 5000);
ws.on('error', done);
ws.on('open', () => {
  out.extensions = ws.extensions;
  ws.send(JSON.stringify({ op: 'subscribe', channel: 'z', id: 1 }));
  ws.send(JSON.stringify({ op: 'publish', channel: 'z', data: big, id: 2 }));
});
ws.on('message', (raw) => {
  const m = JSON.parse(raw.toString());
  if (m.op === 'message') {
    out.message = { same: JSON.stringify(m.data) === JSON.stringify(big), from: m.from };
    ws.close(1000);
  } else if (m.op !== 'join') {
    out.replies.push(m);
  }
});
ws.on('close', () => done());
