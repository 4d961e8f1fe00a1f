'use strict';
// Peer server for scripts/bench ws: a Node.js cluster (node:cluster + node:http + the `ws`
// package from npm) speaking the JSON protocol of sessiond's GET /ws, minimally:
//
//   {"op": "subscribe" | "unsubscribe", "channel": C, "id": N}  -> {"op": "ok", "id": N}
//   {"op": "publish", "channel": C, "data": ..., "id": N}       -> {"op": "ok", "id": N}
//   {"op": "ping", "id": N}                                     -> {"op": "pong", "id": N}
//   to every subscriber of C: {"op": "message", "channel": C, "data": ..., "from": "node"}
//
//   node scripts/bench-peers/node-ws.js PORT [WORKERS]
//
// WS_DEFLATE=1 turns permessage-deflate on as sessiond negotiates it: no context takeover
// either way, so that an idle connection keeps no zlib state and messages under 1 KiB
// (ws's threshold) go uncompressed. WS_DEFLATE=takeover is ws's own default
// (perMessageDeflate: true): with context takeover ws compresses every message, however
// small, and keeps a zlib stream per connection from its first message on.
//
// What it leaves out, and so what makes it cheaper than sessiond:
// - The token in ?token= is accepted without any lookup: no session store, no per-user
//   connection limit, no presence, no rate limit, no pings of idle clients.
// - A publish reaches the subscribers of the worker that received it only. node:cluster
//   deals connections round-robin over the workers and nothing carries a message from
//   one worker to another: that is what a Node.js cluster gives without an adapter
//   (Socket.IO's Redis adapter, say). The bench counts what arrives against all
//   subscribers.
//
// GET /api/health answers 200 {"status": "ok"} for the bench's readiness check. Every
// 250 ms each worker writes {"pid", "connections", "subscribers", "published",
// "sent"} to bench-ws-<pid>.json in the current directory. The primary prints "ready"
// once every worker listens, and stops its workers and exits on SIGTERM or SIGINT.

const cluster = require('node:cluster');
const { runPrimary } = require('./cluster-primary.js');
const fs = require('node:fs');
const http = require('node:http');

const port = Number(process.argv[2]);
const nworkers = Number(process.argv[3] || process.env.WORKERS || 2);
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(nworkers) || nworkers <= 0) {
  console.error('usage: node node-ws.js PORT [WORKERS]');
  process.exit(2);
}

if (cluster.isPrimary) {
  runPrimary(nworkers);
} else {
  const { WebSocketServer } = require('ws');
  const channels = new Map(); // channel -> Set of sockets, in this worker only
  let connections = 0;
  let subscribers = 0;
  let published = 0;
  let sent = 0;

  const statsFile = `bench-ws-${process.pid}.json`;
  setInterval(() => {
    try {
      fs.writeFileSync(statsFile, JSON.stringify({ pid: process.pid, connections, subscribers,
                                                   published, sent }));
    } catch (e) { /* the directory may be going away at exit */ }
  }, 250).unref();

  const reply = (ws, obj) => ws.send(JSON.stringify(obj));
  const error = (ws, id, code, message) => reply(ws, { op: 'error', id, error: { code, message } });

  const subscribe = (ws, channel) => {
    if (ws.channels.has(channel)) return;
    let set = channels.get(channel);
    if (!set) channels.set(channel, (set = new Set()));
    set.add(ws);
    ws.channels.add(channel);
    subscribers++;
  };

  const unsubscribe = (ws, channel) => {
    const set = channels.get(channel);
    if (!set || !set.delete(ws)) return;
    if (set.size === 0) channels.delete(channel);
    ws.channels.delete(channel);
    subscribers--;
  };

  const publish = (channel, data) => {
    const set = channels.get(channel);
    published++;
    if (!set) return;
    // Serialized once, sent to every subscriber, as sessiond does.
    const text = JSON.stringify({ op: 'message', channel, data, from: 'node' });
    for (const peer of set) {
      peer.send(text);
      sent++;
    }
  };

  const onMessage = (ws, raw) => {
    let m;
    try {
      m = JSON.parse(raw);
    } catch (e) {
      return error(ws, undefined, 'bad_json', 'The message is not JSON.');
    }
    const id = m.id;
    const channel = typeof m.channel === 'string' ? m.channel : null;
    switch (m.op) {
      case 'subscribe':
      case 'unsubscribe':
      case 'publish':
        if (!channel) return error(ws, id, 'bad_channel', 'A channel is needed.');
        if (m.op === 'subscribe') subscribe(ws, channel);
        else if (m.op === 'unsubscribe') unsubscribe(ws, channel);
        else publish(channel, m.data);
        return reply(ws, { op: 'ok', id });
      case 'ping':
        return reply(ws, { op: 'pong', id });
      default:
        return error(ws, id, 'bad_op', 'Unknown op.');
    }
  };

  const deflate = {
    1: { serverNoContextTakeover: true, clientNoContextTakeover: true },
    takeover: true,
  }[process.env.WS_DEFLATE] || false;
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: deflate });
  wss.on('connection', (ws) => {
    connections++;
    ws.channels = new Set();
    ws.on('message', (raw) => onMessage(ws, raw));
    ws.on('close', () => {
      connections--;
      for (const c of [...ws.channels]) unsubscribe(ws, c);
    });
    ws.on('error', () => {});
  });

  const server = http.createServer((req, res) => {
    const found = req.url === '/api/health' || req.url === '/health';
    res.writeHead(found ? 200 : 404, { 'Content-Type': 'application/json' });
    res.end(found ? '{"status":"ok"}' : '{"error":"not_found"}');
  });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname !== '/ws' || !url.searchParams.get('token')) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  server.listen({ port, host: '127.0.0.1', backlog: 4096 });
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}
