// The client against a real server (run by server/tests/demo.rs with
// CORECAST_WS_URL, CORECAST_WEB_URL and CORECAST_DISPATCH_URL of a
// demo-token node): two clients over WebSocket (the `ws` package, Node has
// no global WebSocket before 22) join a room and see each other's
// publishes, chat with SENT seqs and SYNC, a client whose connection is cut
// reconnects, re-joins and receives again, and a client given only the
// dispatch URL finds the node's WebSocket by itself. Prints "live test: ok".
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

  alice.close();
  bob.close();
  carol.close();
  clearTimeout(deadline);
  console.log("live test: ok");
} catch (e) {
  console.error(`live test: failed: ${e.stack || e}`);
  process.exit(1);
}
