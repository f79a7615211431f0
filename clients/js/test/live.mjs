// The client against a real server (run by server/tests/demo.rs with
// CORECAST_WS_URL, CORECAST_WEB_URL and CORECAST_DISPATCH_URL of a
// demo-token node): two clients over WebSocket (the `ws` package, Node has
// no global WebSocket before 22) join a room and see each other's
// publishes, chat with SENT seqs and SYNC, a client whose connection is cut
// reconnects, re-joins and receives again, and a client given only the
// dispatch URL finds the node's WebSocket by itself. In a demo-* room
// (history 100 and presence by the server's default rule): a client away
// while messages are published gets them back on reconnecting, exactly
// once and in order, and is told it recovered; away for longer than the
// history it is told it did not, and HISTORY gives the newest; PRESENCE
// lists both users and a join reaches the other member. Prints "live test: ok".
import WebSocket from "ws";
import { CorecastClient } from "../corecast.js";

const ws = process.env.CORECAST_WS_URL;
const web = process.env.CORECAST_WEB_URL;
const dispatchUrl = process.env.CORECAST_DISPATCH_URL;
const deadline = setTimeout(() => { console.error("live test: timed out"); process.exit(1); }, 30_000);

async function token(name) {
  const response = await fetch(`${web}/demo/token`, { method: "POST", body: JSON.stringify({ name }), headers: { "Content-Type": "application/json" } });
  return (await response.json()).token;
}

function next(client, type, filter = () => true) {
  return new Promise((resolve) => {
    const on = (e) => { if (filter(e.detail)) { client.removeEventListener(type, on); resolve(e.detail); } };
    client.addEventListener(type, on);
  });
}

function check(condition, what) { if (!condition) throw new Error(what); }

try {
  const alice = new CorecastClient({ url: ws, token: await token("alice"), WebSocket });
  const bob = new CorecastClient({ url: ws, token: await token("bob"), WebSocket });
  check((await alice.connect()).user === "alice", "alice authenticated");
  await bob.connect();
  await alice.join("live");
  await bob.join("live");
  const got = next(bob, "push", (p) => p.kind === "room");
  alice.publish("live", "hello room");
  check((await got).text() === "hello room", "bob got the room message");

  const direct = next(bob, "push", (p) => p.kind === "direct");
  const sent = await alice.send("direct", "bob", "hello bob");
  const push = await direct;
  check(push.seq === sent.seq && push.text() === "hello bob", "the direct message arrived with its seq");
  const synced = await bob.sync(sent.conv, 0n, 10);
  check(synced.messages.length === 1 && synced.lastSeq === sent.seq, "SYNC returns the stored message");
  await bob.ack(sent.conv, sent.seq);

  // Cut bob's connection: he reconnects, re-joins and receives again.
  const back = next(bob, "auth");
  bob.transport.close();
  await back;
  await new Promise((r) => setTimeout(r, 300));
  const again = next(bob, "push", (p) => p.kind === "room");
  alice.publish("live", "after the reconnect");
  check((await again).text() === "after the reconnect", "bob re-joined after reconnecting");

  // Carol knows only where dispatch is.
  const carol = new CorecastClient({ dispatchUrl, token: await token("carol"), WebSocket });
  check((await carol.connect()).user === "carol", "carol authenticated on the node dispatch chose");
  check(carol.options.url === ws, `dispatch gave the node's WebSocket URL (${carol.options.url})`);
  await carol.join("live");
  const toCarol = next(carol, "push", (p) => p.kind === "room");
  alice.publish("live", "hello carol");
  check((await toCarol).text() === "hello carol", "carol got the room message");

  // A room with history and presence.
  const room = "demo-live";
  await alice.join(room);
  const joinedBy = next(alice, "presence", (p) => p.room === room && p.user === "bob");
  const first = await bob.join(room);
  check(first.position !== 0n && !first.recovered, "JOINED gave bob the room's position");
  check((await joinedBy).joined, "alice got bob's join event");
  const listed = await alice.presence(room);
  check(listed.users === 2 && listed.members.map((m) => m.user).join() === "alice,bob", "PRESENCE lists alice and bob");

  /** Bob's connection is cut; alice publishes `texts` (each taken by the room's owner); bob reconnects. */
  async function whileBobIsAway(texts) {
    bob.options.reconnect = false;
    const closed = next(bob, "close");
    bob.transport.close();
    await closed;
    for (const text of texts) await alice.publish(room, text, { noReply: false });
    bob.options.reconnect = true;
    const pushes = [];
    const collect = (e) => { if (e.detail.conv === room) pushes.push(e.detail); };
    bob.addEventListener("push", collect);
    const recovered = next(bob, "recovered", (r) => r.room === room);
    await bob.connect();
    const result = await recovered;
    bob.removeEventListener("push", collect);
    return { result, pushes };
  }

  const live = next(bob, "push", (p) => p.conv === room);
  alice.publish(room, "before");
  check((await live).seq === bob.rooms.get(room), "bob keeps the position of the last message");
  const missed = ["m1", "m2", "m3"];
  const short = await whileBobIsAway(missed);
  check(short.result.recovered && short.result.replayed === 3, `bob recovered 3 messages (${JSON.stringify(short.result, (_, v) => String(v))})`);
  check(short.pushes.map((p) => p.text()).join() === missed.join(), "the missed messages, once each, in order");
  check(short.pushes.every((p, i) => i === 0 || p.seq === short.pushes[i - 1].seq + 1n), "at consecutive positions");
  check(short.result.position === short.pushes.at(-1).seq, "JOINED's position is the last one replayed");

  const gap = Array.from({ length: 101 }, (_, i) => `g${i + 1}`);
  const long = await whileBobIsAway(gap);
  check(!long.result.recovered && long.result.replayed === 0 && long.pushes.length === 0, "past the history: not recovered, nothing replayed");
  const backlog = await bob.history(room, { limit: 100 });
  check(!backlog.complete && backlog.position === long.result.position, "HISTORY: not complete, at the room's position");
  check(backlog.messages.map((p) => p.text()).join() === gap.slice(1).join(), "HISTORY gives the newest 100");

  alice.close();
  bob.close();
  carol.close();
  clearTimeout(deadline);
  console.log("live test: ok");
} catch (e) {
  console.error(`live test: failed: ${e.stack || e}`);
  process.exit(1);
}
