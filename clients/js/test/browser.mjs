// Browser test of the live-room page (run by server/tests/demo.rs): headless
// Chromium (Debian's, driven by playwright-core) opens CORECAST_WEB_URL/demo
// twice as alice and bob in one demo-* room (history and presence on). Each
// must see the other's message, and both in the members list. Then two
// network blips on alice's page: it goes offline and its WebSocket is cut
// while bob publishes. After a short one alice must show "recovered 5
// messages" and every message exactly once, in order; after one longer than
// the room's history (100) "missed messages, reloaded" and the newest 100.
// Saves a screenshot of alice's page after the first to CORECAST_SCREENSHOT. Prints
// "browser test: ok" and exits 0, or says what failed and exits 1. Bounded
// by a 90 s deadline.
import { chromium } from "playwright-core";

const base = process.env.CORECAST_WEB_URL;
const screenshot = process.env.CORECAST_SCREENSHOT || "demo.png";
const room = "demo-browser-test";
const HISTORY_SIZE = 100; // the server's default rule for demo-* rooms
const deadline = setTimeout(() => { console.error("browser test: timed out after 90 s"); process.exit(1); }, 90_000);

async function joinAs(browser, name) {
  const context = await browser.newContext({ viewport: { width: 420, height: 760 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
  // Keeps the page's WebSockets where drop() can cut them.
  await page.addInitScript(() => {
    const Native = WebSocket;
    window.testSockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) { super(...args); window.testSockets.push(this); }
    };
  });
  await page.goto(`${base}/demo`);
  await page.fill("#name-input", name);
  await page.fill("#room-input", room);
  await page.click("#join-button");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "connected", null, { timeout: 20_000 });
  return { name, page, context };
}

async function say(user, text) {
  await user.page.fill("#message-input", text);
  await user.page.click("#send-button");
}

/** The messages the page shows, each as name + text. */
function messages(user) {
  return user.page.evaluate(() => [...document.querySelectorAll("#messages .message")].map((m) => m.textContent));
}

async function sees(user, line) {
  await user.page.waitForFunction(
    (line) => [...document.querySelectorAll("#messages .message")].some((m) => m.textContent === line),
    line,
    { timeout: 20_000 },
  );
}

async function notice(user, text) {
  await user.page.waitForFunction(
    (text) => [...document.querySelectorAll("#messages .notice")].some((m) => m.textContent === text),
    text,
    { timeout: 20_000 },
  );
}

async function members(user, names) {
  const want = `${names.length} online|${names.join(",")}`;
  try {
    await user.page.waitForFunction(
      (want) => `${document.querySelector("#member-count").textContent}|${[...document.querySelectorAll("#members li")].map((m) => m.textContent).join(",")}` === want,
      want,
      { timeout: 20_000 },
    );
  } catch (e) {
    throw new Error(`${user.name}'s members are not ${want}: ${e.message}`);
  }
}

/** A network blip: the page goes offline and its WebSocket is cut; it cannot reconnect until back(). */
async function drop(user) {
  await user.context.setOffline(true); // stops new connections, not open ones: hence the close
  await user.page.evaluate(() => { for (const socket of window.testSockets) socket.close(); });
  await user.page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("reconnecting"), null, { timeout: 20_000 });
}

async function back(user) {
  await user.context.setOffline(false);
}

function same(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${what}:\n  got  ${JSON.stringify(got)}\n  want ${JSON.stringify(want)}`);
  }
}

let browser;
try {
  if (!base) throw new Error("CORECAST_WEB_URL is not set");
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  const alice = await joinAs(browser, "alice");
  const bob = await joinAs(browser, "bob");
  await members(alice, ["alice", "bob"]);
  await members(bob, ["alice", "bob"]);
  await say(alice, "hello from alice");
  await sees(bob, "alicehello from alice");
  await say(bob, "hi alice, bob here");
  await sees(alice, "bobhi alice, bob here");
  const shown = ["alicehello from alice", "bobhi alice, bob here"];

  // A short blip: bob publishes while alice is away.
  await drop(alice);
  await notice(bob, "alice left");
  await members(bob, ["bob"]);
  const away = [1, 2, 3, 4, 5].map((i) => `away ${i}`);
  for (const text of away) await say(bob, text);
  await sees(bob, "bobaway 5");
  same(await messages(alice), shown, "alice got nothing while away");
  await back(alice);
  await notice(alice, "recovered 5 messages");
  await say(bob, "after the blip");
  await sees(alice, "bobafter the blip");
  await sees(bob, "bobafter the blip");
  shown.push(...away.map((text) => `bob${text}`), "bobafter the blip");
  same(await messages(alice), shown, "alice shows every message once, in order, after recovering");
  same(await messages(bob), shown, "bob shows the same");
  await members(alice, ["alice", "bob"]);
  await members(bob, ["alice", "bob"]);
  await alice.page.screenshot({ path: screenshot, fullPage: true });

  // A blip longer than the history: alice cannot recover and reloads the newest messages.
  await drop(alice);
  const lost = Array.from({ length: HISTORY_SIZE + 1 }, (_, i) => `lost ${i + 1}`);
  for (const text of lost) await say(bob, text);
  await sees(bob, `bob${lost.at(-1)}`);
  await back(alice);
  await notice(alice, "missed messages, reloaded");
  await say(bob, "after the long blip");
  await sees(alice, "bobafter the long blip");
  same(await messages(alice), [...lost.slice(-HISTORY_SIZE), "after the long blip"].map((text) => `bob${text}`),
    "alice shows the newest messages once, in order, after reloading");
  await members(alice, ["alice", "bob"]);

  console.log("browser test: ok");
  await browser.close();
  clearTimeout(deadline);
} catch (e) {
  console.error(`browser test: failed: ${e.stack || e}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
