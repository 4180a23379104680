//! The message service: post, list (incrementally, for polling), edit and
//! delete messages. Only a message's sender may edit or delete it.

mod model;

use std::sync::Arc;

use anyhow::Result;
use common::auth::{self, Caller};
use common::http::{json, Request, Response};
use common::router::{Params, Router};
use common::server::{self, Handler, ServerConfig};
use common::{db, rfc3339, ApiError};
use hyper::{Method, StatusCode};
use model::{CreateMessage, ListQuery, Message, UpdateMessage};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};

const DEFAULT_PORT: u16 = 8083;

/// Most messages one list returns. Without `fetch_from_message_id` these are
/// the latest ones; with it, the oldest ones after that id, so a client that
/// polls with its last seen id pages forward until it has caught up.
const LIST_LIMIT: u32 = 500;

const SELECT_MESSAGE: &str = concat!(
    "SELECT m.id, m.chat_id, m.text, s.name, s.emoji, m.sender_id, ",
    rfc3339!("m.created_at"),
    ", ",
    rfc3339!("m.updated_at"),
    " FROM messages m JOIN sessions s ON s.id = m.sender_id"
);

type MessageRow = (u64, u64, String, String, String, u64, String, String);

#[derive(Clone, Copy)]
enum Route {
    List,
    Create,
    Update,
    Delete,
}

struct Service {
    pool: Pool,
    router: Router<Route>,
}

impl Handler for Service {
    async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        let (route, params) = self.router.resolve(&req.method, &req.path)?;
        let caller = auth::authenticate(&self.pool, &req.headers).await?;
        match route {
            Route::List => self.list(&caller, &req).await,
            Route::Create => self.create(&caller, req.json()?).await,
            Route::Update => self.update(&caller, req.json()?).await,
            Route::Delete => self.delete(&caller, &params).await,
        }
    }
}

fn to_message(caller: &Caller, row: MessageRow) -> Message {
    let (id, chat_id, text, sender_name, sender_emoji, sender_id, created_at, updated_at) = row;
    Message { id, chat_id, text, sender_name, sender_emoji, is_mine: sender_id == caller.id, created_at, updated_at }
}

fn not_sender() -> ApiError {
    ApiError::unauthorized("no such message, or you are not its sender")
}

impl Service {
    async fn list(&self, caller: &Caller, req: &Request) -> Result<Response, ApiError> {
        let query = ListQuery::parse(
            req.query_param("chat_id").as_deref(),
            req.query_param("fetch_from_message_id").as_deref(),
        )?;
        let mut conn = db::conn(&self.pool).await?;
        let mut rows: Vec<MessageRow> = match query.after {
            Some(after) => conn.exec(
                format!("{SELECT_MESSAGE} WHERE m.chat_id = ? AND m.id > ? ORDER BY m.id LIMIT {LIST_LIMIT}"),
                (query.chat_id, after),
            ),
            None => conn.exec(
                format!("{SELECT_MESSAGE} WHERE m.chat_id = ? ORDER BY m.id DESC LIMIT {LIST_LIMIT}"),
                (query.chat_id,),
            ),
        }
        .await
        .map_err(|e| db::error("listing messages", e))?;
        if query.after.is_none() {
            rows.reverse();
        }
        // An empty list is either "nothing new" or "no such chat"; only the
        // second is an error, and only an empty result needs the check.
        if rows.is_empty() && !chat_exists(&mut conn, query.chat_id).await? {
            return Err(ApiError::not_found("no such chat"));
        }
        let messages: Vec<Message> = rows.into_iter().map(|r| to_message(caller, r)).collect();
        json(StatusCode::OK, &messages)
    }

    async fn create(&self, caller: &Caller, body: CreateMessage) -> Result<Response, ApiError> {
        let (chat_id, text) = body.validate()?;
        let mut conn = db::conn(&self.pool).await?;
        let inserted = conn
            .exec_drop(
                "INSERT INTO messages (chat_id, sender_id, text, created_at, updated_at) \
                 VALUES (?, ?, ?, UTC_TIMESTAMP(), UTC_TIMESTAMP())",
                (chat_id, caller.id, &text),
            )
            .await;
        match inserted {
            Ok(()) => {}
            // The foreign key to chats: the chat does not exist (any more).
            Err(e) if db::server_code(&e) == Some(db::codes::NO_REFERENCED_ROW) => {
                return Err(ApiError::not_found("no such chat"))
            }
            Err(e) => return Err(db::error("inserting a message", e)),
        }
        let id = conn.last_insert_id().ok_or_else(|| ApiError::internal("inserting a message", &"no insert id"))?;
        let message = fetch(&mut conn, caller, id).await?.ok_or_else(|| ApiError::not_found("no such chat"))?;
        json(StatusCode::CREATED, &message)
    }

    async fn update(&self, caller: &Caller, body: UpdateMessage) -> Result<Response, ApiError> {
        let (id, text) = body.validate()?;
        let mut conn = db::conn(&self.pool).await?;
        db::exec_guarded(
            &mut conn,
            "UPDATE messages SET text = ?, updated_at = UTC_TIMESTAMP() WHERE id = ? AND sender_id = ?",
            (&text, id, caller.id),
            "updating a message",
            not_sender,
        )
        .await?;
        let message = fetch(&mut conn, caller, id).await?.ok_or_else(not_sender)?;
        json(StatusCode::OK, &message)
    }

    async fn delete(&self, caller: &Caller, params: &Params<'_>) -> Result<Response, ApiError> {
        let id = params.id(0, "message")?;
        let mut conn = db::conn(&self.pool).await?;
        db::exec_guarded(
            &mut conn,
            "DELETE FROM messages WHERE id = ? AND sender_id = ?",
            (id, caller.id),
            "deleting a message",
            not_sender,
        )
        .await?;
        json(StatusCode::OK, &serde_json::json!({ "deleted": id }))
    }
}

async fn fetch(conn: &mut Conn, caller: &Caller, id: u64) -> Result<Option<Message>, ApiError> {
    let row: Option<MessageRow> = conn
        .exec_first(format!("{SELECT_MESSAGE} WHERE m.id = ?"), (id,))
        .await
        .map_err(|e| db::error("reading a message", e))?;
    Ok(row.map(|r| to_message(caller, r)))
}

async fn chat_exists(conn: &mut Conn, chat_id: u64) -> Result<bool, ApiError> {
    let found: Option<u64> = conn
        .exec_first("SELECT id FROM chats WHERE id = ?", (chat_id,))
        .await
        .map_err(|e| db::error("looking up a chat", e))?;
    Ok(found.is_some())
}

fn main() -> Result<()> {
    common::logger::init("message");
    let env = common::config::from_process();
    let server_config = ServerConfig::from_env(&env, DEFAULT_PORT)?;
    let db_config = db::DbConfig::from_env(&env)?;
    server::run(async move {
        let pool = db::connect_and_migrate(&db_config).await?;
        let router = Router::new()
            .route(Method::GET, "/api/messages", Route::List)
            .route(Method::POST, "/api/messages", Route::Create)
            .route(Method::PUT, "/api/messages", Route::Update)
            .route(Method::DELETE, "/api/messages/{id}", Route::Delete);
        server::serve(server_config, Arc::new(Service { pool, router })).await
    })
}
