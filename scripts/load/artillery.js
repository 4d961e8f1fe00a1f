// Artillery processor for artillery.yml: names a user per virtual user, adds the API key
// to admin calls when one is set, makes the session a WebSocket connects with, and counts
// what sessiond answers on the socket.
'use strict';

const crypto = require('crypto');

const API_KEY = process.env.SESSIOND_API_KEY || '';

// Users are distinct per virtual user: max_sessions_per_user and max_connections_per_user
// limit one user, and this scenario measures many.
function userName() {
  return `load-${crypto.randomBytes(6).toString('hex')}`;
}

function newUser(context, events, done) {
  context.vars.user = userName();
  return done();
}

function adminAuth(requestParams, context, events, done) {
  // Without a key the server admits loopback clients; an empty Bearer would be refused.
  if (API_KEY) {
    requestParams.headers = requestParams.headers || {};
    requestParams.headers.Authorization = `Bearer ${API_KEY}`;
  }
  return done();
}

// The ws engine connects before any step runs, so the session the token comes from is made
// here, and the token rides in the query string as sessiond's /ws expects of browsers.
async function makeSession(base) {
  const headers = { 'Content-Type': 'application/json' };
  if (API_KEY)
    headers.Authorization = `Bearer ${API_KEY}`;
  const res = await fetch(new URL('/api/sessions', base), {
    method: 'POST',
    headers,
    // granted the scenario's rooms: the default namespace lets a session in only where
    // its channels say
    body: JSON.stringify({ user: userName(), data: { source: 'artillery' }, ttl: 600,
                           channels: ['room-*'] }),
    signal: AbortSignal.timeout(10000)
  });
  const body = await res.json().catch(() => ({}));
  if (res.status !== 201 || typeof body.token !== 'string')
    throw new Error(`POST /api/sessions answered ${res.status}`);
  return body.token;
}

function connectWithSession(wsArgs, context, done) {
  const base = wsArgs.target;
  makeSession(base)
    .then((token) => {
      const url = new URL('/ws', base);
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      url.searchParams.set('token', token);
      wsArgs.target = url.toString();
      done();
    })
    .catch(done);
}

// The engine's own send steps do not read replies; a listener of our own (not onmessage,
// which the engine resets between steps) counts each reply and push by its op.
function countFrames(context, events, done) {
  context.ws.on('message', (data) => {
    let op = 'unparsed';
    try {
      op = JSON.parse(data).op;
    } catch (e) {
      // counted as unparsed
    }
    const name = op === 'pong' ? 'ok' : op;
    if (['ok', 'error', 'message', 'join', 'leave', 'unparsed'].includes(name))
      events.emit('counter', `sessiond.ws.${name}`, 1);
  });
  context.ws.on('close', (code) => {
    // 1000/1005 are ours (the engine closes at the end); anything else is the server's
    // word: 1008 rate or slow reader, 4001 session ended, 1001 draining.
    if (code !== 1000 && code !== 1005)
      events.emit('counter', `sessiond.ws.closed_${code}`, 1);
  });
  return done();
}

module.exports = { newUser, adminAuth, connectWithSession, countFrames };
