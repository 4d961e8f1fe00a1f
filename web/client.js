/**
 * sessiond-client: sessiond's WebSocket client, served at /client.js. An ES module for
 * browsers and Node.js, without dependencies. It reconnects with full-jitter exponential
 * backoff, rejoins its channels after every reconnect, and stops for good once the
 * server says the session is over (4001). A subscribe the server refuses (e.g. "forbidden":
 * the session has no grant for the channel) rejects with the server's code and is not
 * retried; the server's own subscriptions (the session's `subscribe`) and its revocations
 * arrive as "subscribed" and "unsubscribed" events.
 *
 * Recovery: in a namespace with history, each message carries an `offset` (1, 2, 3, ... per
 * channel) and each channel an `epoch`. The client keeps the position of each channel (the
 * last offset handed to the application, and the epoch), resubscribes after every reconnect
 * with `since` that position, and never hands over a message twice or out of order. When the
 * server cannot send what was missed (its history no longer holds it, or the epoch changed:
 * the history itself was lost), the client emits "lost" ({channel, epoch, offset}): the
 * messages in between are gone for good, only the application's backend has the state they
 * made, so the application must reload it; messages after `offset` follow. The name says what
 * happened to the messages, not what to do about it (Centrifugo's `recovered: false`,
 * Socket.IO's `socket.recovered === false`). A recovery that worked emits "recovered"
 * ({channel, epoch, offset, since}) and the missed messages arrive as ordinary "message"s.
 * Channels without history carry no offsets, and none of this applies to them.
 *
 *   const c = connect('wss://example.com/ws', { token });
 *   c.on('message', (m) => console.log(m.channel, m.from, m.data));
 *   c.on('lost', (e) => reloadFromBackend(e.channel));
 *   await c.subscribe('room:lobby', { since: JSON.parse(localStorage.pos || 'null') });
 *   addEventListener('pagehide', () => { localStorage.pos = JSON.stringify(c.position('room:lobby')); });
 * @module sessiond-client
 */

export const version = 1;

/** The close code that means the session was revoked or expired: never reconnect. */
export const CLOSE_SESSION_ENDED = 4001;

/**
 * An Error with a machine-readable `code`: "timeout", "disconnected", "closed",
 * "unauthorized", or the server's own error code ("bad_request", "forbidden", ...).
 */
export class SessiondError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = 'SessiondError';
    this.code = code;
  }
}

/** The errors that are a server's reply to a request (not a timeout or a drop). */
const refusals = new WeakSet();

/**
 * @typedef {object} Options
 * @property {string} token the session token (from POST /api/sessions, via your backend)
 * @property {Function} [WebSocket] a WebSocket class; default globalThis.WebSocket
 *   (in Node 18/20 pass the `ws` package's WebSocket)
 * @property {number} [timeout=10000] default per-request timeout, ms
 * @property {number} [backoffBase=500] first reconnect delay bound, ms
 * @property {number} [backoffCap=30000] largest reconnect delay bound, ms
 * @property {number} [stableAfter=10000] ms a connection must last to reset the backoff
 */

/** A client: one WebSocket, replaced after every drop until close(). */
export class SessiondClient {
  /** @param {string} url ws(s):// or http(s):// URL of the server (path defaults to /ws)
   *  @param {Options} options */
  constructor(url, options) {
    const o = options || {};
    if (!o.token) throw new TypeError('sessiond-client: options.token is required');
    this.WebSocket = o.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) throw new TypeError('sessiond-client: no WebSocket: pass options.WebSocket');
    const u = new URL(url);
    u.protocol = u.protocol.replace(/^http/, 'ws');
    if (u.pathname === '/') u.pathname = '/ws';
    u.searchParams.set('token', o.token);
    this._url = u.toString(); // holds the token: not public
    this.timeout = o.timeout ?? 10000;
    this.backoffBase = o.backoffBase ?? 500;
    this.backoffCap = o.backoffCap ?? 30000;
    this.stableAfter = o.stableAfter ?? 10000;
    /**
     * Channels to be in, resubscribed after every reconnect: those subscribe() asked for,
     * less those the server refused or took away ("unsubscribed"). The server's own
     * subscriptions ("subscribed") are not in it: the server makes them again on connect.
     * @type {Set<string>}
     */
    this.channels = new Set();
    // channel -> a token of its latest subscribe: only the latest one's refusal drops the
    // channel, so that a refusal cannot undo a later subscribe that succeeded.
    this._subscribing = new Map();
    // channel -> {offset, epoch}: of a channel with history, the last offset handed to the
    // application and the epoch it counts in (undefined until a subscribe's ok names it).
    this._positions = new Map();
    this._handlers = {};
    this._pending = new Map(); // id -> {msg, resolve, reject, timer}: sent, awaiting a reply
    this._outbox = []; // the same, made while disconnected: sent on open
    this._nextId = 1;
    this._attempt = 0; // reconnects since the last stable connection
    this._opens = 0;
    this._ws = null;
    this._timer = null; // the reconnect or the stability timer
    this._stopped = false;
    this._why = null; // the SessiondError that stopped the client
    this._open();
  }

  /** Whether the socket is open now. */
  get connected() {
    return !!this._ws && this._ws.readyState === 1;
  }

  /**
   * Listen for an event: "open" ({reconnected}), "message" ({channel, data, from, offset};
   * from is absent when the API published it, offset when the channel has no history),
   * "join" / "leave" ({channel, user}), "subscribed" / "unsubscribed" ({channel}: the
   * server subscribed this socket by itself, or took a channel away, e.g. its grant was
   * revoked), "lost" ({channel, epoch, offset}: the messages a subscribe asked for with
   * `since` are gone from the server's history, or the channel's epoch changed; reload the
   * channel's state from the backend, as it stands at `offset` of `epoch`: the messages
   * after it follow), "recovered" ({channel, epoch, offset, since}: the messages after
   * `since` up to `offset` follow, as ordinary messages), "close" ({code, reason,
   * reconnect}), "reconnecting" ({attempt, delay}), "error" (SessiondError or Error).
   * @param {string} type @param {Function} fn @returns {Function} a function that removes it
   */
  on(type, fn) {
    (this._handlers[type] ||= []).push(fn);
    return () => this.off(type, fn);
  }

  /** Stop listening. @param {string} type @param {Function} fn */
  off(type, fn) {
    this._handlers[type] = (this._handlers[type] || []).filter((f) => f !== fn);
  }

  _emit(type, arg) {
    for (const fn of this._handlers[type] || []) {
      try { fn(arg); } catch (e) { if (type !== 'error') this._emit('error', e); }
    }
  }

  /**
   * Send one operation and wait for its reply ({op: "ok", ...} or {op: "pong"}).
   * Made while disconnected, it is sent once the connection is back.
   * Rejects with a SessiondError: the server's error, "timeout", "disconnected" (the
   * connection dropped before the reply) or "closed".
   * @param {object} msg e.g. {op: "presence", channel: "room1"}
   * @param {{timeout?: number}} [opts]
   * @returns {Promise<object>}
   */
  request(msg, opts) {
    return this._request(msg, opts);
  }

  // onReply(m), when given, sees an ok reply as it arrives, before any message after it
  // (a promise's then would run too late: Node's ws may emit several messages at once).
  _request(msg, opts, onReply) {
    if (this._stopped) return Promise.reject(this._why);
    return new Promise((resolve, reject) => {
      const entry = { msg: { ...msg, id: this._nextId++ }, resolve, reject, onReply };
      const ms = (opts && opts.timeout) ?? this.timeout;
      entry.timer = setTimeout(() => {
        this._pending.delete(entry.msg.id);
        this._outbox = this._outbox.filter((e) => e !== entry);
        reject(new SessiondError('timeout', `No reply to ${msg.op} within ${ms} ms.`));
      }, ms);
      if (this.connected) this._send(entry);
      else this._outbox.push(entry);
    });
  }

  _send(entry) {
    this._pending.set(entry.msg.id, entry);
    this._ws.send(JSON.stringify(entry.msg));
  }

  /**
   * Join a channel (and rejoin it after every reconnect). If the server refuses (its error,
   * e.g. "forbidden"), the promise rejects with that code and the channel is forgotten; after
   * a "timeout" or "disconnected" it is kept and asked for again on the next connection.
   * opts.since, a position kept from before (position(), e.g. stored in localStorage), asks
   * for the messages after it: the reply says `recovered: true` and they follow, or
   * `recovered: false` and "lost" is emitted. Without it, a position the client knows is used.
   * @param {string} channel
   * @param {{timeout?: number, since?: {offset: number, epoch: string}}} [opts]
   */
  subscribe(channel, opts) {
    const since = opts && opts.since;
    if (since && !(Number.isInteger(since.offset) && since.offset >= 0 && typeof since.epoch === 'string')) {
      return Promise.reject(new TypeError('sessiond-client: opts.since must be {offset, epoch}'));
    }
    this.channels.add(channel);
    return this._subscribe(channel, opts);
  }

  _subscribe(channel, opts) {
    const mine = {};
    this._subscribing.set(channel, mine);
    const latest = () => this._subscribing.get(channel) === mine;
    const known = this._positions.get(channel);
    let since = opts && opts.since;
    if (!since && known && known.epoch !== undefined) since = known;
    const msg = { op: 'subscribe', channel };
    if (since) msg.since = { offset: since.offset, epoch: since.epoch };
    return this._request(msg, opts, (r) => this._subscribed(channel, msg.since, r)).then((r) => {
      if (latest()) this._subscribing.delete(channel);
      return r;
    }, (err) => {
      if (refusals.has(err) && latest()) {
        this._subscribing.delete(channel);
        this.channels.delete(channel);
        this._positions.delete(channel);
      }
      throw err;
    });
  }

  // The ok of a subscribe: a channel with history names its newest offset and its epoch.
  _subscribed(channel, since, r) {
    if (r.offset === undefined || r.epoch === undefined) return; // no history
    const { offset, epoch } = r;
    const known = this._positions.get(channel);
    const same = known && known.epoch === epoch;
    if (since && r.recovered === true && since.epoch === epoch) {
      // What was missed follows: start from since, or from further on if already delivered.
      const from = same ? Math.max(known.offset, since.offset) : since.offset;
      this._positions.set(channel, { offset: from, epoch });
      this._emit('recovered', { channel, epoch, offset, since: since.offset });
    } else if (since) { // gone from the history, or the history itself (a new epoch)
      this._positions.set(channel, { offset, epoch });
      this._emit('lost', { channel, epoch, offset });
    } else { // a first subscribe: what is new starts after offset
      this._positions.set(channel, { offset: known ? Math.max(known.offset, offset) : offset, epoch });
    }
  }

  /**
   * Where the client stands in a channel with history: the offset of the last message it
   * handed to the application and the epoch it counts in, to keep (e.g. in localStorage) and
   * pass back as subscribe(channel, {since}) later; undefined for a channel without history.
   * @param {string} channel @returns {{offset: number, epoch: string} | undefined}
   */
  position(channel) {
    const p = this._positions.get(channel);
    return p && p.epoch !== undefined ? { offset: p.offset, epoch: p.epoch } : undefined;
  }

  // Whether a message of a channel with history is new: a duplicate or an older one (its
  // offset at most the last delivered, in the same epoch) is dropped. A message naming
  // another epoch starts the count again, and its channel's state is lost.
  _fresh(m) {
    const known = this._positions.get(m.channel);
    const epoch = m.epoch ?? (known && known.epoch);
    if (known && m.epoch !== undefined && known.epoch !== undefined && m.epoch !== known.epoch) {
      this._positions.set(m.channel, { offset: m.offset, epoch });
      this._emit('lost', { channel: m.channel, epoch, offset: m.offset - 1 });
      return true;
    }
    if (known && m.offset <= known.offset) return false;
    this._positions.set(m.channel, { offset: m.offset, epoch });
    return true;
  }

  /** Leave a channel. @param {string} channel */
  unsubscribe(channel, opts) {
    this.channels.delete(channel);
    this._subscribing.delete(channel);
    this._positions.delete(channel); // a later subscribe starts afresh, or with its own since
    if (!this.connected) { // the next connection will simply not join it
      this._outbox = this._outbox.filter((e) => {
        const drop = e.msg.channel === channel && /subscribe/.test(e.msg.op);
        if (drop) { clearTimeout(e.timer); e.resolve({ op: 'ok' }); }
        return !drop;
      });
      return Promise.resolve({ op: 'ok' });
    }
    return this.request({ op: 'unsubscribe', channel }, opts);
  }

  /** Send data (any JSON) to every subscriber of channel. @param {string} channel @param {*} data */
  publish(channel, data, opts) {
    return this.request({ op: 'publish', channel, data }, opts);
  }

  /** Who is in channel. @param {string} channel
   *  @returns {Promise<Array<{user: string, session: string, conn: string}>>} */
  presence(channel, opts) {
    return this.request({ op: 'presence', channel }, opts).then((r) => r.members);
  }

  /** Round trip to the server. @returns {Promise<number>} the round-trip time in ms */
  ping(opts) {
    const t0 = Date.now();
    return this.request({ op: 'ping' }, opts).then(() => Date.now() - t0);
  }

  /** Resolves once the client is connected (at once if it is). @returns {Promise<void>} */
  ready() {
    if (this.connected) return Promise.resolve();
    if (this._stopped) return Promise.reject(this._why);
    return new Promise((resolve, reject) => {
      const offs = [this.on('open', () => done()), this.on('close', (e) => e.reconnect || done(e))];
      const done = (e) => {
        offs.forEach((off) => off());
        if (e) reject(this._why);
        else resolve();
      };
    });
  }

  /** Close the connection for good: no reconnect; waiting requests reject with "closed". */
  close() {
    if (this._stopped) return;
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {}; // Node's ws reports closing a socket that was still connecting
      ws.close(1000);
    }
    this._stop(1000, 'client closed', new SessiondError('closed', 'The client is closed.'));
  }

  _stop(code, reason, why) {
    this._stopped = true;
    this._why = why;
    clearTimeout(this._timer);
    this._failAll(why);
    this._emit('close', { code, reason, reconnect: false });
  }

  _failAll(err) {
    for (const e of [...this._pending.values(), ...this._outbox]) {
      clearTimeout(e.timer);
      e.reject(err);
    }
    this._pending.clear();
    this._outbox = [];
  }

  _open() {
    let ws;
    let error = null;
    try {
      ws = this._ws = new this.WebSocket(this._url);
    } catch (e) {
      this._emit('error', e);
      return this._retry();
    }
    ws.onopen = () => {
      const reconnected = this._opens++ > 0;
      this._timer = setTimeout(() => { this._attempt = 0; }, this.stableAfter);
      const queued = this._outbox;
      this._outbox = [];
      const again = new Set(this.channels);
      for (const e of queued) if (e.msg.op === 'subscribe') again.delete(e.msg.channel);
      for (const channel of again) {
        this._subscribe(channel).catch((err) => this._emit('error', err));
      }
      for (const e of queued) this._send(e);
      this._emit('open', { reconnected });
    };
    ws.onerror = (ev) => {
      error = ev && (ev.error || ev.message) ? ev.error || new Error(ev.message) : null;
    };
    ws.onmessage = (ev) => this._message(typeof ev.data === 'string' ? ev.data : String(ev.data));
    ws.onclose = (ev) => {
      if (ws !== this._ws) return;
      this._ws = null;
      clearTimeout(this._timer);
      this._failAll(new SessiondError('disconnected', `The connection closed (${ev.code}).`));
      // 4001: the session was revoked or expired. A 401 before the upgrade says the same,
      // but only Node's ws lets us see it ("Unexpected server response: 401").
      if (ev.code === CLOSE_SESSION_ENDED || /\b401\b/.test(String(error && error.message))) {
        const why = new SessiondError('unauthorized', 'The session token is invalid, revoked or expired.');
        this._emit('error', why);
        return this._stop(ev.code, ev.reason || 'unauthorized', why);
      }
      this._emit('close', { code: ev.code, reason: ev.reason, reconnect: true });
      this._retry();
    };
  }

  _retry() {
    if (this._stopped) return;
    // Full jitter: uniform in [0, min(cap, base * 2^attempt)), so that thousands of clients
    // dropped at once by a restart come back spread out, not in waves.
    const bound = Math.min(this.backoffCap, this.backoffBase * 2 ** this._attempt);
    const delay = Math.floor(Math.random() * bound);
    this._attempt++;
    this._emit('reconnecting', { attempt: this._attempt, delay });
    this._timer = setTimeout(() => this._open(), delay);
  }

  _message(text) {
    let m;
    try { m = JSON.parse(text); } catch (e) { return this._emit('error', e); }
    const entry = m.id !== undefined && this._pending.get(m.id);
    if (entry) {
      this._pending.delete(m.id);
      clearTimeout(entry.timer);
      if (m.op === 'error') {
        const err = new SessiondError(m.error.code, m.error.message);
        refusals.add(err);
        entry.reject(err);
      } else {
        if (entry.onReply) entry.onReply(m);
        entry.resolve(m);
      }
    } else if (m.op === 'message') {
      if (typeof m.offset === 'number' && !this._fresh(m)) return;
      const e = { channel: m.channel, data: m.data, from: m.from };
      if (typeof m.offset === 'number') e.offset = m.offset;
      this._emit('message', e);
    } else if (m.op === 'join' || m.op === 'leave') {
      this._emit(m.op, { channel: m.channel, user: m.user });
    } else if (m.op === 'subscribed' || m.op === 'unsubscribed') {
      if (m.op === 'unsubscribed') { // not ours any more: asking again would be refused
        this.channels.delete(m.channel);
        this._subscribing.delete(m.channel);
        this._positions.delete(m.channel);
      }
      this._emit(m.op, { channel: m.channel });
    } else if (m.op === 'error') { // not a reply to a request: e.g. rate_limited
      this._emit('error', new SessiondError(m.error.code, m.error.message));
    }
  }
}

/**
 * Create a client and start connecting.
 * @param {string} url e.g. "wss://example.com/ws" (or the server's http(s) URL)
 * @param {Options} options
 * @returns {SessiondClient}
 */
export function connect(url, options) {
  return new SessiondClient(url, options);
}
