// Unit tests of the client's room stream handling against a scripted fake
// server (a stand-in WebSocket): positions kept from PUSH and JOINED, rooms
// re-joined from them after a reconnect, the `recovered` event, HISTORY,
// PRESENCE and presence events.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CorecastClient, encodeFrame, OP } from "../corecast.js";

const pos = (epoch, offset) => (BigInt(epoch) << 40n) | BigInt(offset);

// Server frame bodies, field by field.
const str = (s) => { const b = Buffer.from(s); return Buffer.concat([u16(b.length), b]); };
const u8 = (v) => Buffer.from([v]);
const u16 = (v) => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; };
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; };
const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(v)); return b; };
const out = (op, rid, ...fields) => encodeFrame(op, rid, 0, Buffer.concat(fields));

const authOk = (rid) => out(OP.AUTH_OK, rid, u64(1), u16(0), u32(30000), str("me"));
const push = (room, seq, text, rid = 0, kind = 1) => out(OP.PUSH, rid, u8(kind), str(room), str("bob"), u64(seq), u64(0), Buffer.from(text));
const joined = (rid, room, position, recovered) => out(OP.JOINED, rid, str(room), u64(position), u8(recovered ? 1 : 0));

/** What the client sent: op, rid and, for JOIN, room and since (null when absent). */
function request(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const req = { op: view.getUint8(5), rid: view.getUint32(8) };
  if (req.op === OP.JOIN) {
    const n = view.getUint16(12);
    req.room = Buffer.from(bytes.subarray(14, 14 + n)).toString();
    req.since = bytes.length > 14 + n ? view.getBigUint64(14 + n) : null;
  }
  return req;
}

/**
 * The WebSocket the client is given: answers AUTH itself and hands every
 * other request to `FakeSocket.serve(socket, request)`.
 */
class FakeSocket {
  static sockets = [];
  static serve = () => {};
  /** How many connection attempts to come fail, as a browser reports it: error, then close. */
  static refuse = 0;
  constructor() {
    FakeSocket.sockets.push(this);
    if (FakeSocket.refuse > 0) {
      FakeSocket.refuse -= 1;
      setTimeout(() => { this.onerror(); this.onclose({ code: 1006, reason: "" }); }, 0);
    } else setTimeout(() => this.onopen(), 0);
  }
  send(bytes) {
    const req = request(bytes);
    if (req.op === OP.AUTH) this.deliver(authOk(req.rid));
    else FakeSocket.serve(this, req);
  }
  /** One WebSocket message holding these frames. */
  deliver(...frames) { this.onmessage({ data: new Uint8Array(Buffer.concat(frames)).buffer }); }
  close() { this.onclose({ code: 1000, reason: "" }); }
  /** The server goes away, asking for a reconnect right now. */
  drop() {
    this.deliver(out(OP.CLOSE, 0, u16(4000), str("restart"), u32(1)));
    this.close();
  }
}

/** Every event of these types, in order, as [type, detail]. */
function record(client, ...types) {
  const log = [];
  for (const type of types) client.addEventListener(type, (e) => log.push([type, e.detail]));
  return log;
}

function next(client, type) {
  return new Promise((resolve) => client.addEventListener(type, (e) => resolve(e.detail), { once: true }));
}

// A failure must not hang the run waiting for an answer the fake never sends.
const LIMIT = { timeout: 5000 };

/** A connected client, closed when the test ends however it ends (its heartbeat timer would keep node alive). */
async function connected(t) {
  const client = new CorecastClient({ url: "ws://fake", token: "t", WebSocket: FakeSocket });
  t.after(() => client.close());
  await client.connect();
  return client;
}

test("rooms with history are re-joined from their last position and report the recovery", LIMIT, async (t) => {
  const joins = [];
  // "s" has history: at 1:5 when first joined. "p" is a plain room.
  FakeSocket.serve = (socket, req) => {
    if (req.op !== OP.JOIN) return;
    joins.push([req.room, req.since]);
    if (req.room === "p") return socket.deliver(out(OP.OK, req.rid));
    if (req.since === null) return socket.deliver(joined(req.rid, "s", pos(1, 5), false));
    if (req.since === pos(1, 7)) {
      // Two missed messages, JOINED, and a live one in the same WebSocket message.
      return socket.deliver(push("s", pos(1, 8), "m8"), push("s", pos(1, 9), "m9"), joined(req.rid, "s", pos(1, 9), true), push("s", pos(1, 10), "m10"));
    }
    // The history has moved on to a new epoch.
    socket.deliver(joined(req.rid, "s", pos(2, 3), false));
  };
  const client = await connected(t);
  assert.deepEqual(await client.join("s"), { room: "s", position: pos(1, 5), recovered: false, replayed: 0 });
  assert.deepEqual(await client.join("p"), { room: "p", position: 0n, recovered: false, replayed: 0 });
  const log = record(client, "push", "recovered");

  let socket = FakeSocket.sockets.at(-1);
  socket.deliver(push("s", pos(1, 6), "m6"), push("s", pos(1, 7), "m7"), push("p", 0n, "plain"));
  assert.equal(client.rooms.get("s"), pos(1, 7));
  assert.equal(client.rooms.get("p"), 0n);

  let recovered = next(client, "recovered");
  socket.drop();
  assert.deepEqual(await recovered, { room: "s", recovered: true, replayed: 2, position: pos(1, 9) });
  // The plain room is re-joined without a since and reports nothing.
  assert.deepEqual(joins.slice(2), [["s", pos(1, 7)], ["p", null]]);
  // Replayed messages, then the recovery, then the live message behind it.
  assert.deepEqual(log.map(([type, d]) => (type === "push" ? d.text() : type)), ["m6", "m7", "plain", "m8", "m9", "recovered", "m10"]);
  assert.equal(client.rooms.get("s"), pos(1, 10));

  recovered = next(client, "recovered");
  socket = FakeSocket.sockets.at(-1);
  socket.drop();
  assert.deepEqual(await recovered, { room: "s", recovered: false, replayed: 0, position: pos(2, 3) });
  assert.equal(client.rooms.get("s"), pos(2, 3));
});

test("join from a position counts only what came before JOINED and emits no recovered event", LIMIT, async (t) => {
  FakeSocket.serve = (socket, req) => {
    assert.deepEqual([req.room, req.since], ["t", pos(4, 1)]);
    socket.deliver(push("t", pos(4, 2), "missed"), joined(req.rid, "t", pos(4, 2), true), push("t", pos(4, 3), "live"));
  };
  const client = await connected(t);
  const log = record(client, "push", "recovered");
  assert.deepEqual(await client.join("t", { since: pos(4, 1) }), { room: "t", position: pos(4, 2), recovered: true, replayed: 1 });
  assert.deepEqual(log.map(([type, d]) => (type === "push" ? d.text() : type)), ["missed", "live"]);
  assert.equal(client.rooms.get("t"), pos(4, 3));
});

test("failed reconnect attempts are retried by one loop, ending in one connection", LIMIT, async (t) => {
  FakeSocket.serve = (socket, req) => socket.deliver(joined(req.rid, req.room, req.since ?? pos(1, 1), req.since !== null));
  const client = await connected(t);
  client.hints = { base_ms: 1, factor: 1, jitter: 0, max_ms: 1 };
  await client.join("s");
  const log = record(client, "close", "reconnecting", "auth");
  const before = FakeSocket.sockets.length;
  FakeSocket.refuse = 2;
  const recovered = next(client, "recovered");
  FakeSocket.sockets.at(-1).drop();
  assert.equal((await recovered).recovered, true);
  // One close, one retry per failed attempt, one connection made.
  assert.deepEqual(log.map(([type]) => type), ["close", "reconnecting", "reconnecting", "reconnecting", "auth"]);
  assert.equal(FakeSocket.sockets.length - before, 3);
});

test("history collects its PUSHes, presence lists members, presence events are not pushes", LIMIT, async (t) => {
  FakeSocket.serve = (socket, req) => {
    if (req.op === OP.HISTORY) {
      // A live PUSH of the room (rid 0) arrives in the middle: not part of the history.
      socket.deliver(push("s", pos(1, 1), "h1", req.rid), push("s", pos(1, 3), "live"), push("s", pos(1, 2), "h2", req.rid),
        out(OP.HISTORY_END, req.rid, str("s"), u64(pos(1, 2)), u8(1)));
    } else if (req.op === OP.PRESENCE) {
      socket.deliver(out(OP.PRESENCE_LIST, req.rid, str("s"), u32(1), u32(2), u16(1), str("bob"), u16(2), str("")));
    }
  };
  const client = await connected(t);
  const log = record(client, "push", "presence");

  const history = await client.history("s", { limit: 10 });
  assert.deepEqual(history.messages.map((m) => [m.text(), m.seq]), [["h1", pos(1, 1)], ["h2", pos(1, 2)]]);
  assert.deepEqual([history.room, history.position, history.complete], ["s", pos(1, 2), true]);

  const list = await client.presence("s");
  assert.deepEqual([list.users, list.conns, list.members, list.next], [1, 2, [{ user: "bob", devices: 2 }], ""]);

  FakeSocket.sockets.at(-1).deliver(push("s", 0n, "\x01", 0, 5), push("s", 0n, "\x00", 0, 5));
  assert.deepEqual(log.map(([type, d]) => (type === "push" ? d.text() : [d.room, d.user, d.joined])),
    ["live", ["s", "bob", true], ["s", "bob", false]]);
});
