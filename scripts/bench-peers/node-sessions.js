'use strict';
// Peer server for scripts/bench sessions: a Node.js cluster (node:cluster + node:http)
// with a small session API shaped like sessiond's:
//
//   POST /api/sessions       {"user": "u1", "data": {...}, "ttl": 3600}
//                            -> 201 {"id", "token", "user", "data", "created_at",
//                                    "expires_at", "ttl", "version"} with Location and ETag
//   GET  /api/sessions/:id   -> 200 the session (without the token), or 404
//   GET  /api/health         -> 200 {"status": "ok", "sessions": {"active": N}, ...}
//
//   node scripts/bench-peers/node-sessions.js PORT [WORKERS]
//
// Each worker keeps its sessions in its own Map: they are NOT shared between workers,
// and node:cluster hands each new connection to the next worker (round-robin by the
// primary on Linux), so a GET on a connection held by the other worker answers 404.
// That is the point of the comparison: a per-worker Map is not a session store.
// Like sessiond, ids are 128 random bits and tokens 256 random bits (crypto.randomBytes,
// base64url), and only the token's SHA-256 is kept.
//
// Every 250 ms each worker writes {"pid", "sessions", "statuses": {"200": n, ...}} to
// bench-stats-<pid>.json in the current directory, so scripts/bench can count responses
// by status without making wrk parse them. The primary prints "ready" once every worker
// listens, and stops its workers and exits on SIGTERM or SIGINT.

const cluster = require('node:cluster');
const { runPrimary } = require('./cluster-primary.js');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');

const port = Number(process.argv[2]);
const nworkers = Number(process.argv[3] || 2);
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(nworkers) || nworkers <= 0) {
  console.error('usage: node node-sessions.js PORT [WORKERS]');
  process.exit(2);
}

const SESSION_TTL = 3600;
const SESSION_MAX_TTL = 86400;
const SESSION_MAX_BYTES = 4096;
const MAX_BODY = 64 * 1024;
const USER_RE = /^[A-Za-z0-9_.@:-]{1,128}$/;

if (cluster.isPrimary) {
  runPrimary(nworkers);
} else {
  const id = Number(process.env.BENCH_WORKER_ID || 0);
  const started = Date.now();
  const sessions = new Map(); // id -> session; this worker's only
  const statuses = {};
  let requests = 0;
  let connections = 0;

  const statsFile = `bench-stats-${process.pid}.json`;
  const writeStats = () => {
    try {
      fs.writeFileSync(statsFile, JSON.stringify({ pid: process.pid, id, sessions: sessions.size, requests, statuses }));
    } catch (e) { /* the directory may be going away at exit */ }
  };
  setInterval(writeStats, 250).unref();

  const send = (res, status, obj, extra) => {
    const body = JSON.stringify(obj);
    const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
    if (extra) Object.assign(headers, extra);
    res.writeHead(status, headers);
    res.end(body);
    statuses[status] = (statuses[status] || 0) + 1;
  };
  const error = (res, status, code, message, extra) =>
    send(res, status, { error: { code, message } }, extra);

  const view = (s) => ({ id: s.id, user: s.user, data: s.data, created_at: s.created_at,
                         expires_at: s.expires_at, ttl: s.ttl, version: s.version });

  const create = (req, res) => {
    const ctype = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
    if (ctype !== 'application/json') {
      req.resume();
      return error(res, 415, 'unsupported_media_type', 'The body must be application/json.');
    }
    const chunks = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) tooBig = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (tooBig) return error(res, 413, 'payload_too_large', 'The body is too large.');
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        return error(res, 400, 'bad_request', `Malformed JSON: ${e.message}.`);
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body))
        return error(res, 400, 'bad_request', 'The body must be a JSON object.');
      const { user } = body;
      if (typeof user !== 'string' || !USER_RE.test(user))
        return error(res, 400, 'bad_request', '"user" must be 1-128 bytes of [A-Za-z0-9_.@:-].');
      const data = body.data === undefined ? {} : body.data;
      if (data === null || typeof data !== 'object' || Array.isArray(data))
        return error(res, 400, 'bad_request', '"data" must be an object.');
      if (Buffer.byteLength(JSON.stringify(data)) > SESSION_MAX_BYTES)
        return error(res, 413, 'payload_too_large', '"data" is too large.');
      let ttl = SESSION_TTL;
      if (body.ttl !== undefined) {
        if (!Number.isInteger(body.ttl) || body.ttl < 1)
          return error(res, 400, 'bad_request', '"ttl" must be a positive integer.');
        ttl = Math.min(body.ttl, SESSION_MAX_TTL);
      }
      const now = Math.floor(Date.now() / 1000);
      const sid = crypto.randomBytes(16).toString('base64url');
      const token = crypto.randomBytes(32).toString('base64url');
      const s = { id: sid, token_sha256: crypto.createHash('sha256').update(token).digest(),
                  user, data, created_at: now, expires_at: now + ttl, ttl, version: 1 };
      sessions.set(sid, s);
      const out = view(s);
      out.token = token;
      send(res, 201, out, { Location: `/api/sessions/${sid}`, ETag: '"1"' });
    });
  };

  const get = (res, sid) => {
    const s = sessions.get(sid);
    if (s && s.expires_at <= Math.floor(Date.now() / 1000)) sessions.delete(sid);
    else if (s) return send(res, 200, view(s), { ETag: `"${s.version}"` });
    error(res, 404, 'not_found', 'No such session.');
  };

  const health = (res) => send(res, 200, {
    status: 'ok',
    version: '1.0.0',
    uptime_s: Math.floor((Date.now() - started) / 1000),
    instance: 'node-sessions',
    // this worker's sessions only: the other worker's are invisible here
    sessions: { active: sessions.size, max: 0 },
    connections: { http: connections, websocket: 0, limit: 10000, utilization: connections / 10000 },
    workers: { count: nworkers, alive: nworkers, restarts: 0,
               list: [{ id, pid: process.pid, state: 'running', connections, requests }] },
    store: { backend: 'per-worker-map', healthy: true, circuit: 'closed' },
  });

  const PREFIX = '/api/sessions/';
  const server = http.createServer((req, res) => {
    requests++;
    const url = req.url;
    if (url.startsWith(PREFIX)) {
      const sid = url.slice(PREFIX.length);
      if (req.method === 'GET' && sid.length > 0 && !sid.includes('/')) return get(res, sid);
    } else if (url === '/api/sessions') {
      if (req.method === 'POST') return create(req, res);
      req.resume();
      return error(res, 405, 'method_not_allowed', 'Use POST.', { Allow: 'POST' });
    } else if (req.method === 'GET' && (url === '/api/health' || url === '/health')) {
      return health(res);
    }
    req.resume();
    error(res, 404, 'not_found', 'No such resource.');
  });
  server.on('connection', (sock) => {
    connections++;
    sock.on('close', () => { connections--; });
  });
  server.keepAliveTimeout = 75000; // like sessiond's keepalive_timeout default
  server.headersTimeout = 76000;
  server.listen(port, '127.0.0.1');
  const quit = () => { writeStats(); process.exit(0); };
  process.on('SIGTERM', quit);
  process.on('SIGINT', quit);
}
