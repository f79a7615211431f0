// Unit tests of the codec against bytes worked out by hand from
// docs/PROTOCOL.md (12-byte header: len u32, ver 1, op, flags u16, rid u32).
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeFrames, encode, encodeFrame, OP } from "../corecast.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex");

test("client frames match the protocol's layout", () => {
  assert.equal(hex(encode.ping(7)), "0000000c" + "01" + "02" + "0000" + "00000007");
  // JOIN "r": str = u16 length 1, then "r".
  assert.equal(hex(encode.join(1, "r")), "0000000f" + "0103" + "0000" + "00000001" + "0001" + "72");
  // AUTH without a device has no second string; with one it does.
  assert.equal(hex(encode.auth(2, "t")), "0000000f" + "0101" + "0000" + "00000002" + "0001" + "74");
  assert.equal(hex(encode.auth(2, "t", "d")), "00000012" + "0101" + "0000" + "00000002" + "0001" + "74" + "0001" + "64");
  // PUBLISH flags and a raw payload after the room.
  assert.equal(hex(encode.publish(3, "r", new Uint8Array([9, 8]), 3)), "00000011" + "0105" + "0003" + "00000003" + "000172" + "0908");
  // SEND: kind u8, to str, client_msg_id u64, payload.
  assert.equal(hex(encode.send(4, 2, "b", 1n, "x")),
    "00000019" + "0106" + "0000" + "00000004" + "02" + "000162" + "0000000000000001" + "78");
  // SYNC: conv str, after_seq u64, limit u16.
  assert.equal(hex(encode.sync(5, "c", 2n ** 41n, 50)),
    "00000019" + "0107" + "0000" + "00000005" + "000163" + "0000020000000000" + "0032");
  assert.equal(hex(encode.ack(6, "c", 9n)), "00000017" + "0108" + "0000" + "00000006" + "000163" + "0000000000000009");
  assert.equal(hex(encode.unread(8)), "0000000c" + "0109" + "0000" + "00000008");
});

// A stream position (epoch << 40 | offset) past 2^53: a Number would round it.
const BIG = (0xfffffen << 40n) | 0x2an;

test("room stream requests: JOIN since, HISTORY, PRESENCE", () => {
  // JOIN with a since appends it as a u64; a 0 since is left out.
  assert.equal(hex(encode.join(1, "r", BIG)), "00000017" + "0103" + "0000" + "00000001" + "000172" + "fffffe000000002a");
  assert.equal(hex(encode.join(1, "r", 0n)), hex(encode.join(1, "r")));
  // HISTORY: room str, since u64, limit u16.
  assert.equal(hex(encode.history(2, "r", BIG, 50)), "00000019" + "010a" + "0000" + "00000002" + "000172" + "fffffe000000002a" + "0032");
  // PRESENCE: room str, after str, limit u16.
  assert.equal(hex(encode.presence(3, "r", "bob", 100)), "00000016" + "010b" + "0000" + "00000003" + "000172" + "0003626f62" + "0064");
});

function frame(op, rid, bodyHex) {
  return encodeFrame(op, rid, 0, Uint8Array.from(Buffer.from(bodyHex, "hex")));
}

test("server frames decode, two in a buffer, a partial one is kept", () => {
  const authOk = frame(OP.AUTH_OK, 1, "0000000000000005" + "0001" + "00007530" + "0005" + Buffer.from("alice").toString("hex"));
  const push = frame(OP.PUSH, 0, "01" + "00016c" + "000162" + "0000000000000000" + "0000019000000000" + Buffer.from("hi").toString("hex"));
  const joined = new Uint8Array([...authOk, ...push, ...push.subarray(0, 5)]);
  const { frames, rest } = decodeFrames(joined);
  assert.equal(frames.length, 2);
  assert.deepEqual({ ...frames[0] }, { op: OP.AUTH_OK, flags: 0, rid: 1, connId: 5n, shard: 1, heartbeatMs: 30000, user: "alice" });
  assert.equal(frames[1].kind, "room");
  assert.equal(frames[1].conv, "l");
  assert.equal(frames[1].from, "b");
  assert.equal(frames[1].text(), "hi");
  assert.equal(rest.length, 5);
});

test("replies, lists, closes and errors decode", () => {
  const sent = decodeFrames(frame(OP.SENT, 3, "000163" + "0000010000000001" + "0000000000000064")).frames[0];
  assert.deepEqual([sent.conv, sent.seq, sent.tsMs], ["c", 2n ** 40n + 1n, 100]);
  const end = decodeFrames(frame(OP.SYNC_END, 4, "000163" + "0000000000000002" + "01" + "0000000000000005")).frames[0];
  assert.deepEqual([end.lastSeq, end.more, end.visibleSeq], [2n, true, 5n]);
  const list = decodeFrames(frame(OP.UNREAD_LIST, 5, "0001" + "000163" + "0000000000000009" + "0000000000000003" + "00")).frames[0];
  assert.deepEqual(list.entries, [{ conv: "c", lastSeq: 9n, readSeq: 3n }]);
  const close = decodeFrames(frame(OP.CLOSE, 0, "0fa1" + "0002" + "6279" + "000003e8")).frames[0];
  assert.deepEqual([close.code, close.reason, close.reconnectAfterMs], [4001, "by", 1000]);
  const error = decodeFrames(frame(OP.ERROR, 6, "0bb9" + "0001" + "78")).frames[0];
  assert.deepEqual([error.code, error.message], [3001, "x"]);
  assert.throws(() => decodeFrames(Uint8Array.from([0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0])));
});

test("room stream replies and presence events decode, positions exactly", () => {
  const joined = decodeFrames(frame(OP.JOINED, 1, "000172" + "fffffe000000002a" + "01")).frames[0];
  assert.deepEqual([joined.room, joined.position, joined.recovered], ["r", BIG, true]);
  const end = decodeFrames(frame(OP.HISTORY_END, 2, "000172" + "0000030000000011" + "00")).frames[0];
  assert.deepEqual([end.room, end.position, end.complete], ["r", (3n << 40n) | 17n, false]);
  // 2 users on 3 connections, one listed, then where to continue.
  const list = decodeFrames(frame(OP.PRESENCE_LIST, 3, "000172" + "00000002" + "00000003" + "0001" + "0005616c696365" + "0002" + "0005616c696365")).frames[0];
  assert.deepEqual([list.room, list.users, list.conns, list.members, list.next], ["r", 2, 3, [{ user: "alice", devices: 2 }], "alice"]);
  const last = decodeFrames(frame(OP.PRESENCE_LIST, 3, "000172" + "00000000" + "00000000" + "0000" + "0000")).frames[0];
  assert.deepEqual([last.members, last.next], [[], ""]);
  // A room message carries its position in seq.
  const push = decodeFrames(frame(OP.PUSH, 0, "01" + "000172" + "000162" + "fffffe000000002a" + "0000000000000064" + "78")).frames[0];
  assert.deepEqual([push.kind, push.seq, push.text()], ["room", BIG, "x"]);
  // Kind 5: user b left room r (payload 0x00).
  const left = decodeFrames(frame(OP.PUSH, 0, "05" + "000172" + "000162" + "0000000000000000" + "0000000000000064" + "00")).frames[0];
  assert.deepEqual([left.kind, left.conv, left.from, [...left.payload]], ["presence", "r", "b", [0]]);
});
