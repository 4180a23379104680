// The chat UI: session bootstrap, chat list, messages (polled incrementally
// with fetch_from_message_id), online users. Plain DOM; every user-supplied
// string goes through textContent, never innerHTML.

import "./style.css";
import { Api, ApiError, type Chat, type Message, type OnlineUser, type Session } from "./api";

const SESSION_KEY = "wasm-chat.session";
const MESSAGE_POLL_MS = 1500;
const LIST_POLL_MS = 5000;
const PRESENCE_REFRESH_MS = 30_000;

const api = new Api();
let session: Session | null = null;
let chats: Chat[] = [];
let currentChat: Chat | null = null;
let messages: Message[] = [];
let lastMessageId: number | undefined;
let pollingMessages = false;

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function showError(err: unknown): void {
  const box = $("error");
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
  window.setTimeout(() => (box.hidden = true), 5000);
}

function time(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// --- session -------------------------------------------------------------

function storedSession(): Session | null {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) ?? "null") as Session | null;
    return s && new Date(s.expires_at).getTime() > Date.now() + 60_000 ? s : null;
  } catch {
    return null;
  }
}

async function newSession(): Promise<void> {
  api.setSession(null);
  session = await api.createSession();
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  api.setSession(session.session_id);
  renderMe();
  await api.markOnline(false);
}

function renderMe(): void {
  $("me").textContent = session ? `You are ${session.emoji} ${session.name}` : "no session";
}

/** Runs `f`; if the session is gone (401, e.g. after a truncation), gets a new one and retries once. */
async function withSession<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401 && /session/i.test(err.message)) {
      await newSession();
      return await f();
    }
    throw err;
  }
}

// --- chats ---------------------------------------------------------------

async function refreshChats(): Promise<void> {
  chats = await withSession(api.listChats);
  if (currentChat) {
    const still = chats.find((c) => c.id === currentChat!.id);
    if (!still) selectChat(null);
    else currentChat = still;
  }
  renderChats();
  renderChatHeader();
}

function renderChats(): void {
  const list = $("chat-list");
  list.replaceChildren(
    ...chats.map((c) => {
      const li = el("li", c.id === currentChat?.id ? "chat active" : "chat");
      li.append(el("span", "chat-name", c.name), el("span", "chat-owner", `${c.owner_emoji} ${c.owner_name}`));
      li.tabIndex = 0;
      li.addEventListener("click", () => selectChat(c));
      li.addEventListener("keydown", (e) => e.key === "Enter" && selectChat(c));
      return li;
    }),
  );
  if (chats.length === 0) list.append(el("li", "muted", "No chats yet — create one below."));
}

function renderChatHeader(): void {
  $("chat-title").textContent = currentChat ? currentChat.name : "Pick or create a chat";
  $("chat-description").textContent = currentChat?.description ?? "";
  $("chat-actions").hidden = !currentChat?.is_owner;
  $("compose").hidden = !currentChat;
}

function selectChat(chat: Chat | null): void {
  currentChat = chat;
  // The open chat is in the URL (#chat=N), so a reload or a shared link opens it again.
  history.replaceState(null, "", chat ? `#chat=${chat.id}` : location.pathname);
  messages = [];
  lastMessageId = undefined;
  $("messages").replaceChildren();
  renderChats();
  renderChatHeader();
  if (chat) void pollMessages();
}

// --- messages ------------------------------------------------------------

async function pollMessages(): Promise<void> {
  if (!currentChat || pollingMessages) return;
  pollingMessages = true;
  const chatId = currentChat.id;
  try {
    const fresh = await withSession(() => api.listMessages(chatId, lastMessageId));
    if (currentChat?.id !== chatId) return; // switched chats meanwhile
    const known = new Set(messages.map((m) => m.id));
    const added = fresh.filter((m) => !known.has(m.id));
    if (added.length > 0) {
      messages.push(...added);
      lastMessageId = messages[messages.length - 1].id;
      renderMessages(true);
    } else if (lastMessageId === undefined) {
      lastMessageId = 0;
      renderMessages(false);
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      selectChat(null); // the chat was deleted
      void refreshChats();
    } else {
      showError(err);
    }
  } finally {
    pollingMessages = false;
  }
}

function renderMessages(scroll: boolean): void {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...messages.map(renderMessage));
  if (messages.length === 0) list.append(el("li", "muted", "No messages yet. Say hello!"));
  if (scroll && (atBottom || messages.length < 30)) list.scrollTop = list.scrollHeight;
}

function renderMessage(m: Message): HTMLLIElement {
  const li = el("li", m.is_mine ? "message mine" : "message");
  const meta = el("div", "meta");
  meta.append(el("span", "sender", `${m.sender_emoji} ${m.sender_name}`), el("time", "when", time(m.created_at)));
  if (m.updated_at !== m.created_at) meta.append(el("span", "edited", "(edited)"));
  li.append(meta, el("div", "text", m.text));
  if (m.is_mine) {
    const actions = el("div", "message-actions");
    const edit = el("button", undefined, "Edit");
    edit.type = "button";
    edit.addEventListener("click", () => void editMessage(m));
    const del = el("button", "danger", "Delete");
    del.type = "button";
    del.addEventListener("click", () => void deleteMessage(m));
    actions.append(edit, del);
    li.append(actions);
  }
  return li;
}

async function editMessage(m: Message): Promise<void> {
  const text = window.prompt("Edit message", m.text);
  if (text === null || text.trim() === "" || text === m.text) return;
  try {
    const updated = await withSession(() => api.editMessage(m.id, text));
    messages = messages.map((x) => (x.id === m.id ? updated : x));
    renderMessages(false);
  } catch (err) {
    showError(err);
  }
}

async function deleteMessage(m: Message): Promise<void> {
  if (!window.confirm("Delete this message?")) return;
  try {
    await withSession(() => api.deleteMessage(m.id));
    messages = messages.filter((x) => x.id !== m.id);
    renderMessages(false);
  } catch (err) {
    showError(err);
  }
}

// --- users ---------------------------------------------------------------

async function refreshUsers(): Promise<void> {
  const users: OnlineUser[] = await withSession(api.listUsers);
  const list = $("user-list");
  list.replaceChildren(
    ...users.map((u) => {
      const li = el("li", u.is_me ? "user me" : "user", `${u.emoji} ${u.name}${u.is_me ? " (you)" : ""}`);
      li.title = `last seen ${time(u.last_seen_at)}`;
      return li;
    }),
  );
}

// --- wiring --------------------------------------------------------------

function wireForms(): void {
  $("new-chat").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("new-chat-name") as HTMLInputElement;
    const description = $("new-chat-description") as HTMLInputElement;
    try {
      const chat = await withSession(() => api.createChat(name.value, description.value));
      name.value = "";
      description.value = "";
      await refreshChats();
      selectChat(chat);
    } catch (err) {
      showError(err);
    }
  });

  const text = $("compose-text") as HTMLTextAreaElement;
  const send = async () => {
    if (!currentChat || text.value.trim() === "") return;
    try {
      await withSession(() => api.sendMessage(currentChat!.id, text.value));
      text.value = "";
      await pollMessages();
    } catch (err) {
      showError(err);
    }
  };
  $("compose").addEventListener("submit", (e) => {
    e.preventDefault();
    void send();
  });
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      void send();
    }
  });

  $("rename-chat").addEventListener("click", async () => {
    if (!currentChat) return;
    const name = window.prompt("Chat name", currentChat.name);
    if (name === null) return;
    const description = window.prompt("Description", currentChat.description);
    if (description === null) return;
    try {
      currentChat = await withSession(() => api.updateChat(currentChat!.id, name, description));
      await refreshChats();
    } catch (err) {
      showError(err);
    }
  });

  $("delete-chat").addEventListener("click", async () => {
    if (!currentChat || !window.confirm(`Delete "${currentChat.name}" and all its messages?`)) return;
    try {
      await withSession(() => api.deleteChat(currentChat!.id));
      selectChat(null);
      await refreshChats();
    } catch (err) {
      showError(err);
    }
  });
}

function every(ms: number, f: () => Promise<void>): void {
  window.setInterval(() => {
    if (document.visibilityState === "visible") f().catch(showError);
  }, ms);
}

async function start(): Promise<void> {
  wireForms();
  session = storedSession();
  if (session) {
    api.setSession(session.session_id);
    renderMe();
    await withSession(() => api.markOnline(false));
  } else {
    await newSession();
  }
  await Promise.all([refreshChats(), refreshUsers()]);
  const linked = /^#chat=(\d+)$/.exec(location.hash);
  const chat = linked ? chats.find((c) => c.id === Number(linked[1])) : undefined;
  if (chat) selectChat(chat);
  every(MESSAGE_POLL_MS, pollMessages);
  every(LIST_POLL_MS, refreshChats);
  every(LIST_POLL_MS, refreshUsers);
  every(PRESENCE_REFRESH_MS, () => withSession(() => api.markOnline(true)).then(() => undefined));
}

start().catch((err) => {
  renderMe();
  showError(err);
});
