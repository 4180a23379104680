// Typed client of the chat REST API (through the gateway, same origin).

export interface Session {
  session_id: string;
  name: string;
  emoji: string;
  expires_at: string;
  created_at: string;
}

export interface Chat {
  id: number;
  name: string;
  description: string;
  owner_name: string;
  owner_emoji: string;
  is_owner: boolean;
  created_at: string;
  updated_at: string;
}

export interface Message {
  id: number;
  chat_id: number;
  text: string;
  sender_name: string;
  sender_emoji: string;
  is_mine: boolean;
  created_at: string;
  updated_at: string;
}

export interface OnlineUser {
  name: string;
  emoji: string;
  last_seen_at: string;
  is_me: boolean;
}

/** An error answer of the API: status and its `{"error": …}` message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class Api {
  constructor(private sessionId: string | null = null) {}

  setSession(id: string | null): void {
    this.sessionId = id;
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.sessionId) headers["Session-Id"] = this.sessionId;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    let data: unknown = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON (e.g. a proxy's HTML error page): report the status.
    }
    if (!resp.ok) {
      const message =
        data && typeof data === "object" && "error" in data ? String((data as { error: unknown }).error) : `${resp.status} ${resp.statusText}`;
      throw new ApiError(resp.status, message);
    }
    return data as T;
  }

  createSession = () => this.call<Session>("GET", "/api/sessions");

  listChats = () => this.call<Chat[]>("GET", "/api/chats");
  createChat = (name: string, description: string) => this.call<Chat>("POST", "/api/chats", { name, description });
  updateChat = (id: number, name: string, description: string) =>
    this.call<Chat>("PUT", "/api/chats/", { id, name, description });
  deleteChat = (id: number) => this.call<unknown>("DELETE", `/api/chats/${id}`);

  listMessages = (chatId: number, after?: number) =>
    this.call<Message[]>(
      "GET",
      `/api/messages?chat_id=${chatId}` + (after === undefined ? "" : `&fetch_from_message_id=${after}`),
    );
  sendMessage = (chatId: number, text: string) => this.call<Message>("POST", "/api/messages", { chat_id: chatId, text });
  editMessage = (id: number, text: string) => this.call<Message>("PUT", "/api/messages/", { id, text });
  deleteMessage = (id: number) => this.call<unknown>("DELETE", `/api/messages/${id}`);

  markOnline = (refresh: boolean) => this.call<OnlineUser>(refresh ? "PUT" : "POST", "/api/users");
  listUsers = () => this.call<OnlineUser[]>("GET", "/api/users");
}
