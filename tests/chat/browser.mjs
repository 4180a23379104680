// Browser test of the chat UI: Debian's chromium, driven by playwright-core
// (which downloads no browser), against a running stack.
//
//   node tests/chat/browser.mjs BASE_URL
//
// Opens the UI in a fresh profile and checks, each step with a deadline:
// a session is created and shown, the user sees itself online, a chat can be
// created, a message sent, edited and deleted, and a message posted by
// another client (through the API) appears without a reload. Prints one
// line per step and "N passed, M failed"; exits 1 on any failure.
// Talks to loopback only.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = (process.argv[2] ?? "").replace(/\/$/, "");
if (!/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?$/.test(base)) {
  console.error("usage: node browser.mjs http://127.0.0.1:PORT");
  process.exit(2);
}
const STEP_MS = 20_000;
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const args = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let passed = 0;
let failed = 0;
async function step(name, f) {
  const t0 = Date.now();
  try {
    await f();
    passed++;
    console.log(`PASS ${name} (${Date.now() - t0} ms)`);
    return true;
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${String(err?.message ?? err).split("\n")[0]}`);
    return false;
  }
}

async function api(method, path, session, body) {
  const headers = { "Content-Type": "application/json" };
  if (session) headers["Session-Id"] = session;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const profile = mkdtempSync(join(tmpdir(), "chat-browser-"));
let context;
const tag = `${process.pid}-${Date.now() % 100000}`;
try {
  // launchPersistentContext: the fresh --user-data-dir is this profile.
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args,
    timeout: 60_000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  let me = "";
  const ok = await step("UI loads and gets a session", async () => {
    await page.goto(base + "/", { waitUntil: "load" });
    await page.waitForFunction(() => /^You are /.test(document.getElementById("me")?.textContent ?? ""));
    me = (await page.textContent("#me")).replace(/^You are /, "");
    const stored = await page.evaluate(() => localStorage.getItem("wasm-chat.session"));
    if (!stored || !JSON.parse(stored).session_id) throw new Error("no session in localStorage");
  });
  if (!ok) throw new Error("the UI did not start; skipping the other steps");

  await step(`sees itself online (${me})`, async () => {
    await page.waitForSelector("#user-list li.user.me");
    const text = await page.textContent("#user-list li.user.me");
    if (!text.includes("(you)") || !text.includes(me)) throw new Error(`online entry is "${text}"`);
  });

  const chatName = `browser ${tag}`;
  await step("creates a chat", async () => {
    await page.fill("#new-chat-name", chatName);
    await page.fill("#new-chat-description", "made by tests/chat/browser.mjs");
    await page.click("#new-chat button[type=submit]");
    await page.waitForFunction((n) => document.getElementById("chat-title")?.textContent === n, chatName);
    await page.waitForSelector("#compose", { state: "visible" });
    await page.waitForSelector(`#chat-list li.chat.active >> text=${chatName}`);
  });

  const text = `hello from the browser ${tag}`;
  const mine = (t) => page.locator("#messages li.message.mine", { has: page.locator(".text", { hasText: t }) });
  await step("sends a message", async () => {
    await page.fill("#compose-text", text);
    await page.press("#compose-text", "Enter");
    await mine(text).waitFor();
  });

  const edited = `${text} (edited by the test)`;
  await step("edits the message", async () => {
    page.once("dialog", (d) => d.accept(edited));
    await mine(text).first().getByRole("button", { name: "Edit" }).click();
    await mine(edited).waitFor();
  });

  await step("deletes the message", async () => {
    page.once("dialog", (d) => d.accept());
    await mine(edited).first().getByRole("button", { name: "Delete" }).click();
    await mine(edited).waitFor({ state: "detached" });
  });

  await step("a message from another user appears without reload", async () => {
    const chatId = Number(/#chat=(\d+)/.exec(page.url())?.[1]);
    if (!chatId) throw new Error(`no chat id in ${page.url()}`);
    const other = await api("GET", "/api/sessions");
    const theirs = `hello from ${other.name} ${tag}`;
    await api("POST", "/api/messages", other.session_id, { chat_id: chatId, text: theirs });
    const navigations = [];
    page.on("framenavigated", (f) => f === page.mainFrame() && navigations.push(f.url()));
    await page
      .locator("#messages li.message:not(.mine)", { has: page.locator(".text", { hasText: theirs }) })
      .waitFor();
    if (navigations.length > 0) throw new Error(`the page navigated: ${navigations.join(", ")}`);
  });

  await step("no uncaught page errors", async () => {
    if (pageErrors.length > 0) throw new Error(pageErrors.join("; "));
  });
} catch (err) {
  failed++;
  console.log(`FAIL browser: ${String(err?.message ?? err).split("\n")[0]}`);
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
