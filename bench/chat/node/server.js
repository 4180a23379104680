// The message service of the chat app (images/services/message) written the
// way the original app was: Node.js 20 + Express 4 + mysql2. It is the
// baseline of bench/chat/run.sh, so it mirrors the Wasm service query for
// query: the same session lookup, INSERT and SELECT back (prepared
// statements, as mysql_async's exec), the same pool size (DB_POOL_MAX,
// default 16) and connection setup (time_zone UTC), the same validation and
// the same JSON. Only the routes the benchmark drives are here:
// POST /api/messages and GET /api/messages?chat_id=N[&fetch_from_message_id=M].
//
// ACK_BEFORE_COMMIT=true answers 201 as soon as the session is found and the
// body is valid, and runs the INSERT afterwards without waiting for it, as
// the prototype's Node code did. An acknowledged message can then be lost
// (e.g. a crash, or a chat deleted meanwhile): that mode is NOT durable and
// is measured only to show what it costs to be durable.
'use strict';

const express = require('express');
const mysql = require('mysql2/promise');

const LIST_LIMIT = 500;
const MAX_TEXT_CHARS = 4000;
const NO_REFERENCED_ROW = 1452;
const ULID = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

// Same text as common::rfc3339! and message's SELECT_MESSAGE.
const rfc3339 = (col) => `DATE_FORMAT(${col}, '%Y-%m-%dT%H:%i:%sZ')`;
const SELECT_MESSAGE =
  'SELECT m.id, m.chat_id, m.text, s.name, s.emoji, m.sender_id, ' +
  `${rfc3339('m.created_at')}, ${rfc3339('m.updated_at')}` +
  ' FROM messages m JOIN sessions s ON s.id = m.sender_id';
const SQL = {
  session: 'SELECT id, name, emoji FROM sessions WHERE session_id = ? AND expires_at > UTC_TIMESTAMP()',
  insert:
    'INSERT INTO messages (chat_id, sender_id, text, created_at, updated_at) ' +
    'VALUES (?, ?, ?, UTC_TIMESTAMP(), UTC_TIMESTAMP())',
  byId: `${SELECT_MESSAGE} WHERE m.id = ?`,
  latest: `${SELECT_MESSAGE} WHERE m.chat_id = ? ORDER BY m.id DESC LIMIT ${LIST_LIMIT}`,
  after: `${SELECT_MESSAGE} WHERE m.chat_id = ? AND m.id > ? ORDER BY m.id LIMIT ${LIST_LIMIT}`,
  chatExists: 'SELECT id FROM chats WHERE id = ?',
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function config(env) {
  const url = new URL(env.DATABASE_URL || '');
  if (url.protocol !== 'mysql:') throw new Error('DATABASE_URL must be mysql://user:pass@host:port/db');
  return {
    port: Number(env.LISTEN_PORT || 8093),
    host: env.LISTEN_ADDR || '127.0.0.1',
    ackBeforeCommit: env.ACK_BEFORE_COMMIT === 'true',
    db: {
      host: url.hostname,
      port: Number(url.port || 3306),
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: url.pathname.replace(/^\//, ''),
      connectionLimit: Number(env.DB_POOL_MAX || 16),
      // The Wasm service keeps idle connections for 60 s (mysql2's default
      // idleTimeout too) and waits at most 5 s for one.
      idleTimeout: 60000,
      connectTimeout: 5000,
      charset: 'utf8mb4',
    },
  };
}

// A positive integer id, as message's required_id / parse_id.
function requiredId(value, field) {
  if (value === undefined || value === null) throw new ApiError(400, `${field} is required`);
  if (!Number.isSafeInteger(value) || value < 0) throw new ApiError(400, 'invalid JSON body: wrong type');
  if (value === 0) throw new ApiError(400, `${field} must be a positive integer`);
  return value;
}

function validateText(text) {
  if (text === undefined || text === null) throw new ApiError(400, 'text is required');
  if (typeof text !== 'string') throw new ApiError(400, 'invalid JSON body: wrong type');
  const trimmed = text.trim();
  if (trimmed === '') throw new ApiError(400, 'text must not be empty');
  if ([...trimmed].length > MAX_TEXT_CHARS) {
    throw new ApiError(400, `text is longer than ${MAX_TEXT_CHARS} characters`);
  }
  return trimmed;
}

function parseId(s) {
  return /^[0-9]+$/.test(s) && Number(s) > 0 && Number.isSafeInteger(Number(s)) ? Number(s) : null;
}

function toMessage(caller, row) {
  const [id, chatId, text, senderName, senderEmoji, senderId, createdAt, updatedAt] = row;
  return {
    id: Number(id), chat_id: Number(chatId), text, sender_name: senderName, sender_emoji: senderEmoji,
    is_mine: Number(senderId) === caller.id, created_at: createdAt, updated_at: updatedAt,
  };
}

function makeApp(pool, cfg) {
  // Rows as arrays, like the Rust tuples.
  const exec = (conn, sql, params) => conn.execute({ sql, rowsAsArray: true }, params);

  // The caller's session, looked up on a pooled connection of its own, as
  // common::auth::authenticate does.
  async function authenticate(req) {
    const values = req.headersDistinct['session-id'];
    if (!values) throw new ApiError(401, 'missing Session-Id header');
    if (values.length > 1) throw new ApiError(401, 'more than one Session-Id header');
    const sessionId = values[0].trim();
    if (!ULID.test(sessionId)) throw new ApiError(401, 'invalid or expired session');
    const [rows] = await exec(pool, SQL.session, [sessionId]);
    if (rows.length === 0) throw new ApiError(401, 'invalid or expired session');
    const [id, name, emoji] = rows[0];
    return { id: Number(id), name, emoji };
  }

  async function create(req, res) {
    const caller = await authenticate(req);
    const body = req.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new ApiError(400, 'invalid JSON body: expected an object');
    }
    const chatId = requiredId(body.chat_id, 'chat_id');
    const text = validateText(body.text);
    if (cfg.ackBeforeCommit) {
      // NOT durable: the client hears 201 before the row exists.
      res.status(201).json({ chat_id: chatId, text, sender_name: caller.name, sender_emoji: caller.emoji, is_mine: true });
      exec(pool, SQL.insert, [chatId, caller.id, text]).catch((e) => console.error(`inserting a message: ${e.message}`));
      return;
    }
    const conn = await pool.getConnection();
    try {
      let result;
      try {
        [result] = await exec(conn, SQL.insert, [chatId, caller.id, text]);
      } catch (e) {
        if (e.errno === NO_REFERENCED_ROW) throw new ApiError(404, 'no such chat');
        throw e;
      }
      const [rows] = await exec(conn, SQL.byId, [result.insertId]);
      if (rows.length === 0) throw new ApiError(404, 'no such chat');
      res.status(201).json(toMessage(caller, rows[0]));
    } finally {
      conn.release();
    }
  }

  async function list(req, res) {
    const caller = await authenticate(req);
    const rawChat = req.query.chat_id;
    if (rawChat === undefined) throw new ApiError(400, 'query parameter chat_id is required');
    const chatId = parseId(String(rawChat));
    if (chatId === null) throw new ApiError(400, 'chat_id must be a positive integer');
    const rawFrom = req.query.fetch_from_message_id;
    let after = null;
    if (rawFrom !== undefined && rawFrom !== '') {
      after = rawFrom === '0' ? 0 : parseId(String(rawFrom));
      if (after === null) throw new ApiError(400, 'fetch_from_message_id must be a non-negative integer');
    }
    const conn = await pool.getConnection();
    try {
      let [rows] = after === null
        ? await exec(conn, SQL.latest, [chatId])
        : await exec(conn, SQL.after, [chatId, after]);
      if (after === null) rows = rows.slice().reverse();
      if (rows.length === 0) {
        const [found] = await exec(conn, SQL.chatExists, [chatId]);
        if (found.length === 0) throw new ApiError(404, 'no such chat');
      }
      res.status(200).json(rows.map((r) => toMessage(caller, r)));
    } finally {
      conn.release();
    }
  }

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use((req, res, next) => {
    res.set('Cache-Control', 'no-store');
    next();
  });
  // The Wasm service reads any body as JSON, up to 64 KiB.
  app.use(express.json({ limit: '64kb', type: () => true, strict: false }));
  const wrap = (fn) => (req, res, next) => fn(req, res).catch(next);
  app.route(['/api/messages', '/api/messages/'])
    .get(wrap(list))
    .post(wrap(create))
    .all((req, res) => res.status(405).set('Allow', 'GET, POST').json({ error: 'method not allowed' }));
  app.use((req, res) => res.status(404).json({ error: 'not found' }));
  // eslint-disable-next-line no-unused-vars
  app.use((err, req, res, next) => {
    if (err instanceof ApiError) return res.status(err.status).json({ error: err.message });
    if (err.type === 'entity.parse.failed') return res.status(400).json({ error: 'invalid JSON body' });
    if (err.type === 'entity.too.large') return res.status(413).json({ error: 'request body too large' });
    console.error(err);
    const down = err.code === 'ECONNREFUSED' || err.code === 'PROTOCOL_CONNECTION_LOST' || err.fatal;
    return res.status(down ? 503 : 500).json({ error: down ? 'database unavailable' : 'internal server error' });
  });
  return app;
}

function main() {
  const cfg = config(process.env);
  const pool = mysql.createPool(cfg.db);
  // As the Wasm service's connection init: all DATETIMEs are UTC.
  pool.pool.on('connection', (conn) => conn.query("SET time_zone = '+00:00'"));
  const server = makeApp(pool, cfg).listen(cfg.port, cfg.host, () => {
    console.error(`listening on ${cfg.host}:${cfg.port}, pool ${cfg.db.connectionLimit}, ` +
      `ack ${cfg.ackBeforeCommit ? 'BEFORE the INSERT (not durable)' : 'after the commit'}`);
  });
  const stop = () => server.close(() => pool.end().then(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
