'use strict';
// Peer server for scripts/bench: a Node.js cluster (node:cluster + node:http) answering
// GET /api/health (alias /health) with a small JSON body shaped like sessiond's health.
//
//   node scripts/bench-peers/node-cluster.js PORT [WORKERS]
//
// Listens on 127.0.0.1:PORT with WORKERS (default 2) worker processes and the default
// scheduling of node:cluster (round-robin by the primary on Linux). Keep-alive is on.
// The primary prints "ready" on stdout once every worker listens, and stops its workers
// and exits on SIGTERM or SIGINT.

const cluster = require('node:cluster');
const { runPrimary } = require('./cluster-primary.js');
const http = require('node:http');

const port = Number(process.argv[2]);
const nworkers = Number(process.argv[3] || 2);
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(nworkers) || nworkers <= 0) {
  console.error('usage: node node-cluster.js PORT [WORKERS]');
  process.exit(2);
}

if (cluster.isPrimary) {
  runPrimary(nworkers);
} else {
  const id = Number(process.env.BENCH_WORKER_ID || 0);
  const started = Date.now();
  let requests = 0;
  let connections = 0;
  let rss = process.memoryUsage.rss();
  setInterval(() => { rss = process.memoryUsage.rss(); }, 1000).unref();

  const health = () => JSON.stringify({
    status: 'ok',
    version: '1.0.0',
    uptime_s: Math.floor((Date.now() - started) / 1000),
    instance: 'node-cluster',
    sessions: { active: 0, max: 100000 },
    connections: { http: connections, websocket: 0, limit: 10000, utilization: connections / 10000 },
    workers: {
      count: nworkers, alive: nworkers, restarts: 0,
      list: [{ id, pid: process.pid, state: 'running', uptime_s: Math.floor((Date.now() - started) / 1000),
               connections, requests, rss_bytes: rss, load: 0 }],
    },
    store: { backend: 'none', healthy: true, circuit: 'closed' },
    memory: { rss_bytes: rss },
  });

  const server = http.createServer((req, res) => {
    requests++;
    if (req.method === 'GET' && (req.url === '/api/health' || req.url === '/health')) {
      const body = health();
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    } else {
      const body = '{"error":"not_found"}';
      res.writeHead(404, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    }
  });
  server.on('connection', (sock) => {
    connections++;
    sock.on('close', () => { connections--; });
  });
  server.keepAliveTimeout = 75000; // like sessiond's keepalive_timeout default
  server.headersTimeout = 76000;
  server.listen(port, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}
