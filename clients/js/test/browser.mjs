// Browser test of the live-room page (run by server/tests/demo.rs): headless
// Chromium (Debian's, driven by playwright-core) opens CORECAST_WEB_URL/demo
// twice as alice and bob in one room; each must see the other's message and
// a member count of 2. Saves a screenshot of bob's page to
// CORECAST_SCREENSHOT. Prints "browser test: ok" and exits 0, or says what
// failed and exits 1. Bounded by a 60 s deadline.
import { chromium } from "playwright-core";

const base = process.env.CORECAST_WEB_URL;
const screenshot = process.env.CORECAST_SCREENSHOT || "demo.png";
const deadline = setTimeout(() => { console.error("browser test: timed out after 60 s"); process.exit(1); }, 60_000);

async function joinAs(browser, name) {
  const context = await browser.newContext({ viewport: { width: 420, height: 760 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
  await page.goto(`${base}/demo`);
  await page.fill("#name-input", name);
  await page.fill("#room-input", "browser-test");
  await page.click("#join-button");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "connected", null, { timeout: 20_000 });
  return page;
}

async function say(page, text) {
  await page.fill("#message-input", text);
  await page.click("#send-button");
}

async function sees(page, who, text) {
  await page.waitForFunction(
    ([who, text]) => [...document.querySelectorAll("#messages .message")].some((m) => m.textContent === who + text),
    [who, text],
    { timeout: 20_000 },
  );
}

async function count(page, n) {
  await page.waitForFunction((n) => document.querySelector("#member-count").textContent.startsWith(`${n} `), n, { timeout: 20_000 });
}

let browser;
try {
  if (!base) throw new Error("CORECAST_WEB_URL is not set");
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  const alice = await joinAs(browser, "alice");
  const bob = await joinAs(browser, "bob");
  await count(alice, 2);
  await count(bob, 2);
  await say(alice, "hello from alice");
  await sees(bob, "alice", "hello from alice");
  await say(bob, "hi alice, bob here");
  await sees(alice, "bob", "hi alice, bob here");
  await bob.screenshot({ path: screenshot, fullPage: true });
  console.log("browser test: ok");
  await browser.close();
  clearTimeout(deadline);
} catch (e) {
  console.error(`browser test: failed: ${e.stack || e}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
