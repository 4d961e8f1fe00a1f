'use strict';
// The primary process of the Node.js cluster peers (node-cluster.js, node-sessions.js):
// forks the workers, prints "ready" once every worker listens, and on SIGTERM or SIGINT
// stops its workers and exits.

const cluster = require('node:cluster');

function runPrimary(nworkers) {
  let listening = 0;
  let stopping = false;
  for (let i = 0; i < nworkers; i++) cluster.fork({ BENCH_WORKER_ID: String(i) });
  cluster.on('listening', () => {
    if (++listening === nworkers) console.log('ready');
  });
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) console.error(`worker ${worker.process.pid} exited (${signal || code})`);
    if (stopping && Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const left = Object.values(cluster.workers);
    if (left.length === 0) process.exit(0);
    for (const w of left) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

module.exports = { runPrimary };
