// corecast.js: the corecast JavaScript client, one ES module, no build step,
// no dependencies. It speaks the wire protocol of docs/PROTOCOL.md over
// WebSocket (binary messages, one or more frames each) or, where WebSocket
// is blocked, over the HTTP fallback (Server-Sent Events down, POST up).
//
//   import { CorecastClient } from "/corecast.js";
//   const client = new CorecastClient({ url: "ws://host:7101/ws", token });
//   client.addEventListener("push", (e) => console.log(e.detail.from, e.detail.text()));
//   await client.connect();
//   await client.join("lobby");
//   client.publish("lobby", "hello");
//
// Events (CustomEvent, data in `detail`): `auth` (AUTH_OK: connId, user,
// heartbeatMs; again after every reconnect), `push` (kind, conv, from, seq,
// tsMs, payload, text()), `presence` (room, user, joined, tsMs: a user's
// first connection joined or last one left a room with join/leave events),
// `recovered` (room, recovered, replayed, position: after a reconnect, in a
// room with history), `close` (code, reason, reconnectAfterMs), `error`,
// `reconnecting` (attempt, delayMs). The client reconnects by itself after
// an unexpected close: it waits for the server's hint (or the backoff hints
// of a dispatch answer), asks `dispatchUrl` for a node when given, connects,
// authenticates and joins every room it was in. In a room with history it
// joins from the position of the last message it got, so the server replays
// what it missed (or says it cannot), then emits `recovered`.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Operation codes (PROTOCOL.md §4). */
export const OP = Object.freeze({
  AUTH: 0x01, PING: 0x02, JOIN: 0x03, LEAVE: 0x04, PUBLISH: 0x05, SEND: 0x06, SYNC: 0x07, ACK: 0x08, UNREAD: 0x09,
  HISTORY: 0x0a, PRESENCE: 0x0b,
  AUTH_OK: 0x81, PONG: 0x82, OK: 0x83, JOINED: 0x84, HISTORY_END: 0x85, SENT: 0x86, SYNC_END: 0x87,
  PRESENCE_LIST: 0x88, UNREAD_LIST: 0x89, PUSH: 0x90, CLOSE: 0x9f, ERROR: 0xfe,
});
/** PUBLISH flags: no OK reply, do not deliver to the publisher. */
export const PUBLISH_NO_REPLY = 1;
export const PUBLISH_EXCLUDE_SELF = 2;
const PUSH_KINDS = { 1: "room", 2: "direct", 3: "group", 4: "broadcast", 5: "presence" };
const SEND_KINDS = { direct: 2, group: 3 };
const HEADER_LEN = 12;
const MAX_FRAME = 16 << 20;

function bytesOf(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return encoder.encode(value);
  throw new TypeError("payload must be a string or a Uint8Array");
}

/** Builds a frame body field by field. */
class BodyWriter {
  constructor() { this.parts = []; this.length = 0; }
  push(bytes) { this.parts.push(bytes); this.length += bytes.length; return this; }
  u8(v) { return this.push(Uint8Array.of(v)); }
  u16(v) { const b = new Uint8Array(2); new DataView(b.buffer).setUint16(0, v); return this.push(b); }
  u64(v) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v)); return this.push(b); }
  str(s) {
    const bytes = encoder.encode(s);
    if (bytes.length > 0xffff) throw new RangeError("string field longer than 65535 bytes");
    return this.u16(bytes.length).push(bytes);
  }
  bytes() {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const part of this.parts) { out.set(part, at); at += part.length; }
    return out;
  }
}

/** Encodes one client frame: 12-byte header (len, ver 1, op, flags, rid) then `body`. */
export function encodeFrame(op, rid, flags, body = new Uint8Array(0)) {
  const frame = new Uint8Array(HEADER_LEN + body.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, frame.length);
  view.setUint8(4, 1);
  view.setUint8(5, op);
  view.setUint16(6, flags);
  view.setUint32(8, rid);
  frame.set(body, HEADER_LEN);
  return frame;
}

/** Encoders of every client request; each returns a whole frame. */
export const encode = {
  auth: (rid, token, device = "") => {
    const body = new BodyWriter().str(token);
    if (device) body.str(device); // an empty device is malformed: omit it
    return encodeFrame(OP.AUTH, rid, 0, body.bytes());
  },
  ping: (rid) => encodeFrame(OP.PING, rid, 0),
  /** `since` (a stream position, BigInt) is sent only when not 0: the protocol forbids a 0. */
  join: (rid, room, since = 0n) => {
    const body = new BodyWriter().str(room);
    if (since) body.u64(since);
    return encodeFrame(OP.JOIN, rid, 0, body.bytes());
  },
  leave: (rid, room) => encodeFrame(OP.LEAVE, rid, 0, new BodyWriter().str(room).bytes()),
  publish: (rid, room, payload, flags = 0) =>
    encodeFrame(OP.PUBLISH, rid, flags, new BodyWriter().str(room).push(bytesOf(payload)).bytes()),
  send: (rid, kind, to, clientMsgId, payload) =>
    encodeFrame(OP.SEND, rid, 0, new BodyWriter().u8(kind).str(to).u64(clientMsgId).push(bytesOf(payload)).bytes()),
  sync: (rid, conv, afterSeq, limit) =>
    encodeFrame(OP.SYNC, rid, 0, new BodyWriter().str(conv).u64(afterSeq).u16(limit).bytes()),
  ack: (rid, conv, seq) => encodeFrame(OP.ACK, rid, 0, new BodyWriter().str(conv).u64(seq).bytes()),
  unread: (rid) => encodeFrame(OP.UNREAD, rid, 0),
  history: (rid, room, since, limit) =>
    encodeFrame(OP.HISTORY, rid, 0, new BodyWriter().str(room).u64(since).u16(limit).bytes()),
  presence: (rid, room, after, limit) =>
    encodeFrame(OP.PRESENCE, rid, 0, new BodyWriter().str(room).str(after).u16(limit).bytes()),
};

/** Reads the fields of one frame body. */
class BodyReader {
  constructor(bytes) { this.bytes = bytes; this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length); this.at = 0; }
  need(n) { if (this.at + n > this.bytes.length) throw new RangeError("truncated frame"); }
  u8() { this.need(1); return this.view.getUint8(this.at++); }
  u16() { this.need(2); const v = this.view.getUint16(this.at); this.at += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.at); this.at += 4; return v; }
  /** u64 as a BigInt (seqs and stream positions use all 64 bits). */
  u64() { this.need(8); const v = this.view.getBigUint64(this.at); this.at += 8; return v; }
  str() { const n = this.u16(); this.need(n); const s = decoder.decode(this.bytes.subarray(this.at, this.at + n)); this.at += n; return s; }
  rest() { const r = this.bytes.subarray(this.at); this.at = this.bytes.length; return r; }
}

function decodeBody(op, body) {
  const r = new BodyReader(body);
  switch (op) {
    case OP.AUTH_OK: return { connId: r.u64(), shard: r.u16(), heartbeatMs: r.u32(), user: r.str() };
    case OP.PONG: case OP.OK: return {};
    case OP.JOINED: return { room: r.str(), position: r.u64(), recovered: r.u8() === 1 };
    case OP.HISTORY_END: return { room: r.str(), position: r.u64(), complete: r.u8() === 1 };
    case OP.PRESENCE_LIST: {
      const list = { room: r.str(), users: r.u32(), conns: r.u32(), members: [] };
      const count = r.u16();
      for (let i = 0; i < count; i++) list.members.push({ user: r.str(), devices: r.u16() });
      list.next = r.str();
      return list;
    }
    case OP.SENT: return { conv: r.str(), seq: r.u64(), tsMs: Number(r.u64()) };
    case OP.SYNC_END: return { conv: r.str(), lastSeq: r.u64(), more: r.u8() === 1, visibleSeq: r.u64() };
    case OP.UNREAD_LIST: {
      const count = r.u16();
      const entries = [];
      for (let i = 0; i < count; i++) entries.push({ conv: r.str(), lastSeq: r.u64(), readSeq: r.u64() });
      return { entries, more: r.u8() === 1 };
    }
    case OP.PUSH: {
      const push = { kind: PUSH_KINDS[r.u8()] || "unknown", conv: r.str(), from: r.str(), seq: r.u64(), tsMs: Number(r.u64()) };
      push.payload = r.rest().slice();
      push.text = () => decoder.decode(push.payload);
      return push;
    }
    case OP.CLOSE: return { code: r.u16(), reason: r.str(), reconnectAfterMs: r.u32() };
    case OP.ERROR: return { code: r.u16(), message: r.str() };
    default: return {};
  }
}

/**
 * Decodes the whole server frames at the start of `bytes`. Returns the frames
 * ({op, flags, rid, ...fields}) and the bytes of an incomplete last frame.
 */
export function decodeFrames(bytes) {
  const frames = [];
  let at = 0;
  while (bytes.length - at >= HEADER_LEN) {
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, HEADER_LEN);
    const len = view.getUint32(0);
    if (len < HEADER_LEN || len > MAX_FRAME || view.getUint8(4) !== 1) throw new RangeError("broken frame stream");
    if (bytes.length - at < len) break;
    const op = view.getUint8(5);
    const header = { op, flags: view.getUint16(6), rid: view.getUint32(8) };
    frames.push(Object.assign(header, decodeBody(op, bytes.subarray(at + HEADER_LEN, at + len))));
    at += len;
  }
  return { frames, rest: bytes.slice(at) };
}

function base64ToBytes(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** Errors the server answered with (code as in PROTOCOL.md §12). */
export class CorecastError extends Error {
  constructor(code, message) { super(`${code}: ${message}`); this.code = code; }
}

const DEFAULT_HINTS = { base_ms: 500, factor: 2.0, jitter: 0.5, max_ms: 30000 };

/** A corecast connection that reconnects by itself. */
export class CorecastClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.token   the JWT the client authenticates with
   * @param {string} [options.url]   ws://host:port/ws (transport "ws"); without it, dispatch chooses
   * @param {string} [options.sseUrl], [options.sendUrl]  fallback endpoints (transport "sse")
   * @param {"ws"|"sse"} [options.transport]
   * @param {string} [options.device]
   * @param {string} [options.dispatchUrl]  asked for a node before each reconnect (and before
   *   the first connect when no `url` is given)
   * @param {boolean} [options.reconnect]  default true
   * @param {Function} [options.WebSocket]  constructor, for runtimes without a global one
   */
  constructor(options) {
    super();
    this.options = { transport: "ws", device: "", reconnect: true, ...options };
    /** Joined rooms → position of the last message (BigInt; 0n in a room without history). */
    this.rooms = new Map();
    /** Rooms with a JOIN in flight → {replayed, recovery}: counts the PUSHes replayed before JOINED. */
    this.joining = new Map();
    this.pending = new Map();
    this.nextRid = 1;
    this.rest = new Uint8Array(0);
    this.hints = DEFAULT_HINTS;
    this.attempt = 0;
    this.closedByUser = false;
    /** Authenticated on the current transport. */
    this.up = false;
    this.heartbeat = null;
    /** rid of a SYNC or HISTORY in flight → its PUSHes so far. */
    this.collecting = new Map();
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  rid() {
    const rid = this.nextRid;
    this.nextRid = this.nextRid >= 0xfffffffe ? 1 : this.nextRid + 1;
    return rid;
  }

  /** Connects and authenticates; resolves with AUTH_OK's fields. */
  async connect() {
    this.closedByUser = false;
    if (!this.options.url && this.options.dispatchUrl) await this.dispatch();
    return this.open();
  }

  async open() {
    this.rest = new Uint8Array(0);
    const opened = this.options.transport === "sse" ? this.openSse() : this.openWs();
    await opened;
    const auth = await this.request((rid) => encode.auth(rid, this.options.token, this.options.device), true);
    this.attempt = 0;
    this.up = true;
    this.startHeartbeat(auth.heartbeatMs);
    for (const [room, position] of this.rooms) {
      // A position is only ever known in a room with history: only there is there anything to recover.
      this.joinRoom(room, position, position !== 0n).catch((e) => this.emit("error", e));
    }
    this.emit("auth", auth);
    return auth;
  }

  openWs() {
    const Ws = this.options.WebSocket || globalThis.WebSocket;
    return new Promise((resolve, reject) => {
      const ws = new Ws(this.options.url);
      ws.binaryType = "arraybuffer";
      this.transport = { send: (bytes) => ws.send(bytes), close: () => ws.close(1000) };
      ws.onopen = () => resolve();
      ws.onmessage = (event) => this.receive(new Uint8Array(event.data));
      ws.onerror = () => reject(new Error(`WebSocket to ${this.options.url} failed`));
      ws.onclose = (event) => this.lost({ code: event.code, reason: event.reason, reconnectAfterMs: 0 });
    });
  }

  openSse() {
    // The gateway authenticates the session itself with the token; the
    // client's own AUTH below would be refused, so it is answered locally.
    return new Promise((resolve, reject) => {
      const source = new EventSource(`${this.options.sseUrl}?token=${encodeURIComponent(this.options.token)}`);
      let session = null;
      this.transport = {
        send: (bytes) => {
          if (bytes[5] === OP.AUTH) return; // already authenticated by the gateway
          fetch(`${this.options.sendUrl}?session=${session}`, { method: "POST", body: bytes,
            headers: { "Content-Type": "application/octet-stream" } }).catch((e) => this.emit("error", e));
        },
        close: () => source.close(),
      };
      source.addEventListener("session", (event) => { session = event.data; resolve(); });
      source.addEventListener("frame", (event) => this.receive(base64ToBytes(event.data)));
      source.onerror = () => {
        if (session === null) reject(new Error("event stream failed"));
        source.close();
        this.lost({ code: 1006, reason: "event stream lost", reconnectAfterMs: 0 });
      };
    });
  }

  /** Sends a request and resolves with its reply (rejects on ERROR). */
  request(make, isAuth = false) {
    const rid = this.rid();
    const frame = make(rid);
    return new Promise((resolve, reject) => {
      this.pending.set(rid, { resolve, reject });
      if (isAuth && this.options.transport === "sse") this.pending.set(1, { resolve, reject });
      this.transport.send(frame);
    });
  }

  receive(bytes) {
    const joined = new Uint8Array(this.rest.length + bytes.length);
    joined.set(this.rest);
    joined.set(bytes, this.rest.length);
    let decoded;
    try {
      decoded = decodeFrames(joined);
    } catch (e) {
      this.emit("error", e);
      this.transport.close();
      return;
    }
    this.rest = decoded.rest;
    for (const frame of decoded.frames) this.handle(frame);
  }

  handle(frame) {
    const waiter = frame.rid ? this.pending.get(frame.rid) : undefined;
    switch (frame.op) {
      case OP.PUSH:
        if (frame.rid && this.collecting.has(frame.rid)) this.collecting.get(frame.rid).push(frame);
        else if (frame.kind === "presence") {
          this.emit("presence", { room: frame.conv, user: frame.from, joined: frame.payload[0] === 1, tsMs: frame.tsMs });
        } else {
          this.track(frame);
          this.emit("push", frame);
        }
        return;
      case OP.JOINED: {
        // Done here, not when join() resumes: live PUSHes right behind JOINED
        // in the same read are handled first and must neither be counted as
        // replayed nor have their positions overwritten by JOINED's.
        const join = this.joining.get(frame.room);
        this.joining.delete(frame.room);
        this.rooms.set(frame.room, frame.position);
        if (waiter) { this.pending.delete(frame.rid); waiter.resolve(frame); }
        if (join && join.recovery) {
          this.emit("recovered", { room: frame.room, recovered: frame.recovered, replayed: join.replayed, position: frame.position });
        }
        return;
      }
      case OP.CLOSE:
        this.serverClose = frame;
        return;
      case OP.ERROR:
        if (waiter) { this.pending.delete(frame.rid); this.collecting.delete(frame.rid); waiter.reject(new CorecastError(frame.code, frame.message)); }
        else this.emit("error", new CorecastError(frame.code, frame.message));
        return;
      case OP.SYNC_END: case OP.HISTORY_END: {
        const messages = this.collecting.get(frame.rid) || [];
        this.collecting.delete(frame.rid);
        const { op, flags, rid, ...end } = frame;
        if (waiter) { this.pending.delete(frame.rid); waiter.resolve({ messages, ...end }); }
        return;
      }
      default:
        if (waiter) { this.pending.delete(frame.rid); waiter.resolve(frame); }
    }
  }

  /** Keeps each room's last position, and counts the messages a JOIN in flight replays. */
  track(push) {
    if (push.kind !== "room" || push.seq === 0n) return;
    if (this.rooms.has(push.conv)) this.rooms.set(push.conv, push.seq);
    const join = this.joining.get(push.conv);
    if (join) join.replayed += 1;
  }

  startHeartbeat(ms) {
    clearInterval(this.heartbeat);
    const every = Math.max(1000, Math.floor((this.options.heartbeatMs || ms || 30000) * 0.8));
    this.heartbeat = setInterval(() => this.request((rid) => encode.ping(rid)).catch(() => {}), every);
  }

  lost(socketClose) {
    clearInterval(this.heartbeat);
    const close = this.serverClose || socketClose;
    this.serverClose = null;
    for (const waiter of this.pending.values()) waiter.reject(new CorecastError(close.code, close.reason || "connection closed"));
    this.pending.clear();
    this.collecting.clear();
    // Only a connection that was up is lost. A failed attempt is reported by
    // open() to its caller (connect(), or the retry below, which tries
    // again): retrying here too would start a second reconnect loop.
    if (!this.up) return;
    this.up = false;
    this.emit("close", close);
    if (this.closedByUser || !this.options.reconnect) return;
    this.scheduleReconnect(close.reconnectAfterMs || 0);
  }

  async scheduleReconnect(serverHint) {
    const h = this.hints;
    const backoff = Math.min(h.max_ms, h.base_ms * Math.pow(h.factor, this.attempt));
    const base = serverHint || backoff;
    const delayMs = Math.round(base * (1 - h.jitter / 2 + Math.random() * h.jitter));
    this.attempt += 1;
    this.emit("reconnecting", { attempt: this.attempt, delayMs });
    await new Promise((r) => setTimeout(r, delayMs));
    if (this.closedByUser) return;
    try {
      if (this.options.dispatchUrl) await this.dispatch();
      await this.open();
    } catch (e) {
      this.emit("error", e);
      this.scheduleReconnect(0);
    }
  }

  /** Asks dispatch where to connect (first node listed) and keeps its hints. */
  async dispatch() {
    const answer = await (await fetch(this.options.dispatchUrl)).json();
    if (answer.reconnect) this.hints = { ...DEFAULT_HINTS, ...answer.reconnect };
    const node = (answer.nodes || [])[0];
    if (!node) throw new Error("dispatch listed no node");
    if (!node.ws_url) throw new Error(`dispatch gave no WebSocket URL for node ${node.node}`);
    this.options.url = node.ws_url;
  }

  /** Closes for good (no reconnect). */
  close() {
    this.closedByUser = true;
    clearInterval(this.heartbeat);
    if (this.transport) this.transport.close();
  }

  /**
   * Joins a room (and rejoins it after every reconnect). In a room with
   * history, give `since` (a position, e.g. HISTORY's) to be sent every
   * message after it first. Resolves with {room, position, recovered,
   * replayed}: `recovered` is false when `since` was absent or no longer
   * covered (then nothing was replayed: load the backlog with history());
   * a room without history has position 0n and never recovers.
   */
  async join(room, { since = 0n } = {}) {
    const joined = await this.joinRoom(room, since, false);
    if (!this.rooms.has(room)) this.rooms.set(room, 0n); // a room without history: its OK carries no position
    return joined;
  }

  /** Sends JOIN; with `recovery`, JOINED is also announced as a `recovered` event. */
  async joinRoom(room, since, recovery) {
    const join = { replayed: 0, recovery };
    this.joining.set(room, join);
    try {
      const reply = await this.request((rid) => encode.join(rid, room, since));
      if (reply.op !== OP.JOINED) return { room, position: 0n, recovered: false, replayed: 0 };
      return { room, position: reply.position, recovered: reply.recovered, replayed: join.replayed };
    } finally {
      // JOINED took it off already; an OK or an ERROR did not.
      if (this.joining.get(room) === join) this.joining.delete(room);
    }
  }

  async leave(room) {
    this.rooms.delete(room);
    await this.request((rid) => encode.leave(rid, room));
  }

  /** Publishes to a room; with `noReply` nothing is awaited. */
  publish(room, payload, { excludeSelf = false, noReply = true } = {}) {
    const flags = (noReply ? PUBLISH_NO_REPLY : 0) | (excludeSelf ? PUBLISH_EXCLUDE_SELF : 0);
    if (noReply) { this.transport.send(encode.publish(0, room, payload, flags)); return Promise.resolve(); }
    return this.request((rid) => encode.publish(rid, room, payload, flags));
  }

  /** Stores and delivers a chat message; resolves with {conv, seq, tsMs}. */
  send(kind, to, payload, clientMsgId = BigInt.asUintN(64, BigInt(Date.now()) * 1000n + BigInt(Math.floor(Math.random() * 1000)))) {
    const code = SEND_KINDS[kind];
    if (!code) throw new TypeError("kind must be 'direct' or 'group'");
    return this.request((rid) => encode.send(rid, code, to, clientMsgId, payload));
  }

  /** Messages of `conv` after `afterSeq`: {messages, lastSeq, more, visibleSeq}. */
  sync(conv, afterSeq = 0n, limit = 100) {
    return this.request((rid) => { this.collecting.set(rid, []); return encode.sync(rid, conv, afterSeq, limit); });
  }

  /**
   * A room's stored messages (a room with history; no need to be a member):
   * the newest `limit`, or with `since` the first `limit` after it. Resolves
   * with {room, messages, position, complete}: `position` is the room's
   * current one (join from it to miss nothing), `complete` false when
   * messages before the first one returned were lost.
   */
  history(room, { since = 0n, limit = 100 } = {}) {
    return this.request((rid) => { this.collecting.set(rid, []); return encode.history(rid, room, since, limit); });
  }

  /**
   * Who is in a room with presence: {room, users, conns, members: [{user,
   * devices}], next}, users in id order after `after`; ask again after
   * `next` while it is not empty. `limit` 0 gives the totals only.
   */
  presence(room, { after = "", limit = 100 } = {}) {
    return this.request((rid) => encode.presence(rid, room, after, limit));
  }

  ack(conv, seq) { return this.request((rid) => encode.ack(rid, conv, seq)); }

  unread() { return this.request((rid) => encode.unread(rid)); }
}
